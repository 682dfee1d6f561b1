//! Invocation records and guest logs, written in batches off the hot path.
//!
//! * `writer`: [`RecordWriter`], a bounded channel and one task. `submit`
//!   and `meter` never block: if the writer is `queue_capacity` records
//!   behind, the record is dropped and counted. Under load the task
//!   gathers a batch for ~20 ms and writes it in one transaction as
//!   multi-row inserts ([`batches`]), with the batch summed per function
//!   and hour into `usage_hourly`, its operation spans and its failed
//!   invocations' inputs. A failed write is retried once, then dropped.
//! * `sampler`: which plain successes are stored (a per-function budget
//!   per second); the rest only add to usage sums. Failures, logging,
//!   event-triggered and data-using invocations are always stored.
//! * `usage`: the hourly sums (`usage_hourly`) and their reports; pruning
//!   never touches them, so reports outlive the raw records.
//! * `retention`: pruning, app by app, so one app's flood never evicts
//!   another's history.
//! * `queries`: invocations, traces, spans, failed inputs and logs as the
//!   control API reads them.

mod queries;
mod retention;
mod sampler;
mod usage;
mod writer;

pub use writer::{CLIENT_OPS, RecordWriter, RecordWriterConfig, SocketUsage, WEBSOCKETS};

/// A stored invocation, without its logs (the type is the API's).
pub use nimbus_api::InvocationRow;

/// Usage over a period, for one group (a function, a day or an app).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    /// The group: `APP/FUNCTION`, a day (`YYYY-MM-DD`, UTC) or an app.
    pub key: String,
    /// Invocations.
    pub invocations: i64,
    /// Invocations that failed (trap, timeout, memory limit, platform
    /// error) or answered a 5xx.
    pub errors: i64,
    /// Summed duration, µs.
    pub duration_us: i64,
    /// Summed memory limit × duration, MiB·µs (÷ 1024 ÷ 10⁶: GB-seconds).
    pub mb_us: i64,
    /// Request bytes.
    pub bytes_in: i64,
    /// Response bytes.
    pub bytes_out: i64,
    /// Invocations whose code had to be loaded.
    pub cold_starts: i64,
    /// Key-value operations.
    pub kv_ops: i64,
    /// Document operations.
    pub doc_ops: i64,
    /// Object storage operations.
    pub object_ops: i64,
    /// Messages sent or published (by functions; clients' sends are
    /// invocations of the consumers).
    pub event_ops: i64,
    /// Operations on WebSocket connections and channels (by functions and
    /// through the control API).
    pub realtime_ops: i64,
    /// Time WebSocket connections were open, in milliseconds.
    pub ws_connection_ms: i64,
    /// Messages WebSocket clients sent.
    pub ws_messages_in: i64,
    /// Messages sent to WebSocket clients.
    pub ws_messages_out: i64,
}

impl UsageRow {
    /// Adds `other`'s counts to these (the key stays).
    pub fn add(&mut self, other: &UsageRow) {
        self.invocations += other.invocations;
        self.errors += other.errors;
        self.duration_us += other.duration_us;
        self.mb_us += other.mb_us;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.cold_starts += other.cold_starts;
        self.kv_ops += other.kv_ops;
        self.doc_ops += other.doc_ops;
        self.object_ops += other.object_ops;
        self.event_ops += other.event_ops;
        self.realtime_ops += other.realtime_ops;
        self.ws_connection_ms += other.ws_connection_ms;
        self.ws_messages_in += other.ws_messages_in;
        self.ws_messages_out += other.ws_messages_out;
    }
}

/// A span of a guest's operation, as stored (the type is the API's).
pub use nimbus_api::OpSpanRow;

/// How usage is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageBy {
    /// Per function.
    Function,
    /// Per day (UTC).
    Day,
    /// Per hour (UTC).
    Hour,
    /// Per app.
    App,
}

pub(crate) const HOUR_US: i64 = 3_600_000_000;

/// The start of the hour containing `at_us` (µs since the epoch).
pub(crate) fn hour_start(at_us: i64) -> i64 {
    at_us - at_us.rem_euclid(HOUR_US)
}

/// Which log entries to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// App name.
    pub app: String,
    /// Only this function.
    pub function: Option<String>,
    /// Only this invocation.
    pub invocation: Option<String>,
    /// Only entries with `seq` greater than this.
    pub after_seq: i64,
    /// Only entries at or after this time (µs since epoch).
    pub since_us: i64,
    /// Only entries whose text contains this (case-insensitive).
    pub grep: Option<String>,
    /// At most this many (oldest first).
    pub limit: i64,
}

/// Largest multi-row insert (16 parameters a row stays far below SQLite's
/// and PostgreSQL's limits).
const MAX_ROWS_PER_STATEMENT: usize = 64;

/// Splits rows into statements of 64, 32, 16, ... 1 rows. Every size is one
/// statement text, prepared once and cached: seven shapes per table, instead
/// of a new (large) statement to parse or cache for every batch size.
pub(crate) fn batches<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let n = if rows.len() >= MAX_ROWS_PER_STATEMENT {
            MAX_ROWS_PER_STATEMENT
        } else {
            1 << rows.len().ilog2()
        };
        let (head, tail) = rows.split_at(n);
        rows = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use nimbus_core::{InvocationRecord, Outcome, StoredInput};
    use std::time::Duration;

    /// A record of invocation `i` of `a/function` (a test fixture).
    pub(super) fn record(i: usize, function: &str) -> InvocationRecord {
        InvocationRecord {
            id: format!("inv-{i:05}"),
            app: "a".into(),
            function: function.into(),
            revision: 1,
            trigger: "http".into(),
            method: "GET".into(),
            path: "/".into(),
            started_at_us: 1_000 + i as i64,
            duration_us: 10,
            status: 200,
            outcome: Outcome::Ok,
            error: None,
            bytes_in: 0,
            bytes_out: 5,
            event_id: None,
            attempt: 0,
            memory_mb: 128,
            peak_memory_bytes: 1 << 20,
            cold: i == 0,
            ops: Default::default(),
            op_spans: Vec::new(),
            input: (i == 3).then(|| {
                Box::new(StoredInput {
                    method: "POST".into(),
                    path: "/x".into(),
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: b"payload".to_vec(),
                    complete: true,
                })
            }),
            trace_id: "t".repeat(32),
            span_id: format!("{i:016x}"),
            parent_span_id: (i > 0).then(|| format!("{:016x}", i - 1)),
            stdout: format!("line {i}\n"),
            stderr: String::new(),
        }
    }

    #[test]
    fn batch_sizes() {
        let sizes = |n: usize| batches(&vec![0u8; n]).map(|b| b.len()).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(7), vec![4, 2, 1]);
        assert_eq!(sizes(64), vec![64]);
        assert_eq!(sizes(200), vec![64, 64, 64, 8]);
    }

    #[tokio::test]
    async fn plain_successes_beyond_the_budget_are_counted_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let writer = RecordWriter::spawn(
            store.clone(),
            RecordWriterConfig {
                keep_successes_per_sec: 10,
                ..Default::default()
            },
        );
        // 50 in one second: record 3 keeps its input (it failed), the rest
        // are plain successes without logs.
        for i in 0..50 {
            let mut r = record(i, "f");
            r.stdout.clear();
            if i == 3 {
                r.status = 500;
            }
            writer.submit(r);
        }
        writer.flush().await;
        let stored = store.invocations("a", None, None, 1000).await.unwrap();
        assert_eq!(stored.len(), 11, "10 plain successes and the failure");
        assert!(stored.iter().any(|r| r.status == 500));
        let usage = store.usage(Some("a"), 0, UsageBy::Function).await.unwrap();
        assert_eq!(usage[0].invocations, 50, "usage counts every invocation");
        assert_eq!(usage[0].errors, 1);
        assert_eq!(usage[0].duration_us, 500);
    }

    /// One app's flood of failures and logs leaves another app's records,
    /// failed inputs and logs where they were: retention is per app.
    #[tokio::test]
    async fn retention_is_per_app() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let writer = RecordWriter::spawn(store.clone(), RecordWriterConfig::default());
        let mut quiet = record(3, "f");
        quiet.app = "quiet".into();
        quiet.id = "inv-00000-quiet".into();
        quiet.outcome = Outcome::Trap;
        writer.submit(quiet);
        for i in 0..200 {
            let mut r = record(i, "f");
            r.app = "noisy".into();
            r.id = format!("inv-{:05}-noisy", i + 1);
            r.outcome = Outcome::Trap;
            r.input = record(3, "f").input;
            writer.submit(r);
        }
        writer.flush().await;
        store
            .prune_records(&RecordWriterConfig {
                keep_invocations: 20,
                keep_log_entries: 20,
                keep_logs_for: Duration::MAX,
                ..Default::default()
            })
            .await
            .unwrap();
        let count = |app: &'static str| {
            let store = store.clone();
            async move {
                store
                    .invocations(app, None, None, 1000)
                    .await
                    .unwrap()
                    .len()
            }
        };
        assert_eq!(count("noisy").await, 20);
        assert_eq!(count("quiet").await, 1, "the quiet app keeps its record");
        assert!(
            store
                .failed_input("quiet", "inv-00000-quiet")
                .await
                .unwrap()
                .is_some()
        );
        let logs = |app: &str| LogQuery {
            app: app.into(),
            limit: 1000,
            ..Default::default()
        };
        assert_eq!(store.logs(&logs("quiet")).await.unwrap().len(), 1);
        assert_eq!(store.logs(&logs("noisy")).await.unwrap().len(), 20);
    }

    #[tokio::test]
    async fn writer_batches_and_queries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let writer = RecordWriter::spawn(store.clone(), RecordWriterConfig::default());
        for i in 0..50 {
            writer.submit(record(i, if i % 2 == 0 { "even" } else { "odd" }));
        }
        writer.flush().await;
        assert_eq!(
            store.invocations("a", None, None, 100).await.unwrap().len(),
            50
        );
        let input = store.failed_input("a", "inv-00003").await.unwrap().unwrap();
        assert_eq!(
            (input.method.as_str(), input.body.as_slice()),
            ("POST", &b"payload"[..])
        );
        assert!(
            store
                .failed_input("b", "inv-00003")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .failed_input("a", "inv-00004")
                .await
                .unwrap()
                .is_none()
        );
        let trace = store.trace(&"t".repeat(32)).await.unwrap();
        assert_eq!(trace.len(), 50);
        assert_eq!(
            trace[1].parent_span_id.as_deref(),
            Some(trace[0].span_id.as_str())
        );
        let odd = store
            .invocations("a", Some("odd"), None, 100)
            .await
            .unwrap();
        assert_eq!(odd.len(), 25);
        assert_eq!(odd[0].id, "inv-00049", "newest first");
        let logs = store
            .logs(&LogQuery {
                app: "a".into(),
                function: Some("even".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(logs.len(), 10);
        assert_eq!(logs[0].text, "line 0\n");
        let after = store
            .logs(&LogQuery {
                app: "a".into(),
                after_seq: logs[9].seq,
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(after.len(), 50 - 19);
        store
            .prune_records(&RecordWriterConfig {
                keep_invocations: 10,
                keep_log_entries: 5,
                keep_logs_for: Duration::MAX,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            store.invocations("a", None, None, 100).await.unwrap().len(),
            10
        );
        // Usage survives pruning: it was summed as the records were written.
        let by_fn = store.usage(Some("a"), 0, UsageBy::Function).await.unwrap();
        assert_eq!(by_fn.len(), 2);
        let even = by_fn.iter().find(|u| u.key == "a/even").unwrap();
        assert_eq!(
            (
                even.invocations,
                even.duration_us,
                even.mb_us,
                even.bytes_out,
                even.cold_starts
            ),
            (25, 250, 128 * 250, 125, 1)
        );
        let by_day = store.usage(None, 0, UsageBy::Day).await.unwrap();
        assert_eq!(by_day.len(), 1);
        assert_eq!(by_day[0].key, "1970-01-01");
        assert_eq!(by_day[0].invocations, 50);
        let by_hour = store.usage(None, 0, UsageBy::Hour).await.unwrap();
        assert_eq!(by_hour.len(), 1);
        assert_eq!(by_hour[0].key, "1970-01-01T00:00Z");
        assert_eq!(by_hour[0].invocations, 50);
        assert!(
            store
                .usage(Some("b"), 0, UsageBy::App)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .usage(None, HOUR_US, UsageBy::App)
                .await
                .unwrap()
                .is_empty()
        );
        let all = store
            .logs(&LogQuery {
                app: "a".into(),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 5);
        let grep = |g: &str| LogQuery {
            app: "a".into(),
            limit: 100,
            grep: Some(g.into()),
            ..Default::default()
        };
        assert_eq!(store.logs(&grep("LINE 4")).await.unwrap().len(), 5);
        assert_eq!(store.logs(&grep("ine 47")).await.unwrap().len(), 1);
        assert_eq!(
            store.logs(&grep("%")).await.unwrap().len(),
            0,
            "% is literal"
        );
        // Retention by size: the newest entries within the budget stay
        // (each is 8 bytes).
        let keep = |bytes: i64, age: Duration| RecordWriterConfig {
            keep_log_bytes: bytes,
            keep_logs_for: age,
            ..Default::default()
        };
        store.prune_records(&keep(20, Duration::MAX)).await.unwrap();
        let left = store.logs(&grep("line")).await.unwrap();
        assert_eq!(
            left.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
            ["line 48\n", "line 49\n"]
        );
        // Retention by age: these entries are from 1970.
        store
            .prune_records(&keep(1 << 30, Duration::from_secs(86_400)))
            .await
            .unwrap();
        assert!(store.logs(&grep("line")).await.unwrap().is_empty());
        assert_eq!(writer.dropped(), 0);
    }
}
