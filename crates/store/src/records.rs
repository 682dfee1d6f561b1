//! Invocation records and guest logs, written in batches off the hot path.

use crate::builder::QueryBuilder;
use crate::{Result, Store};
use nimbus_core::{InvocationRecord, LogEntry, OpCounts, OpSpan, Outcome, Service, StoredInput};
use sqlx::Row;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Retention and buffering of the record writer.
#[derive(Debug, Clone, Copy)]
pub struct RecordWriterConfig {
    /// Records waiting to be written before new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// Invocation records kept per app; older ones are pruned.
    pub keep_invocations: i64,
    /// Log entries kept per app; older ones are pruned.
    pub keep_log_entries: i64,
    /// Log entries older than this are pruned.
    pub keep_logs_for: Duration,
    /// Text of log entries kept per app, in bytes; the oldest go first.
    pub keep_log_bytes: i64,
    /// Plain successful invocations stored per function and second; beyond
    /// it they are only counted (usage stays exact). Failed, logging,
    /// event-triggered and data-using invocations are always stored.
    pub keep_successes_per_sec: u32,
}

impl Default for RecordWriterConfig {
    fn default() -> Self {
        RecordWriterConfig {
            queue_capacity: 65_536,
            keep_invocations: 10_000,
            keep_log_entries: 10_000,
            keep_logs_for: Duration::from_secs(7 * 86_400),
            keep_log_bytes: 64 << 20,
            keep_successes_per_sec: 100,
        }
    }
}

enum Msg {
    Record(Box<InvocationRecord>),
    /// Operations of clients (REST, S3) on an app's services.
    Ops(Box<str>, Service, u64),
    Flush(oneshot::Sender<()>),
}

/// The `usage_hourly` function name of operations made by clients (the
/// REST data API, the S3 endpoint) rather than by functions; parentheses
/// keep it apart from every function name.
pub const CLIENT_OPS: &str = "(api)";

/// Sends records to the background writer. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct RecordWriter {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
    sampler: Arc<parking_lot::Mutex<Sampler>>,
}

impl RecordWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn spawn(store: Store, config: RecordWriterConfig) -> RecordWriter {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let sampler = Arc::new(parking_lot::Mutex::new(Sampler {
            per_sec: config.keep_successes_per_sec,
            hasher: Default::default(),
            seen: Default::default(),
            pending: Default::default(),
            sampled_out: 0,
        }));
        tokio::spawn(run(store, config, rx, sampler.clone()));
        RecordWriter {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            sampler,
        }
    }

    /// Queues a record. If the writer is `queue_capacity` records behind,
    /// the record is dropped and counted rather than slowing the caller.
    pub fn submit(&self, record: InvocationRecord) {
        if !self.sampler.lock().admit(&record) {
            return;
        }
        if self.tx.try_send(Msg::Record(Box::new(record))).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "invocation record writer is behind; records dropped"
                );
            }
        }
    }

    /// Meters `n` operations of a client (REST or S3, not a function) on
    /// one of `app`'s services. Like records, never blocks: dropped and
    /// counted if the writer is behind.
    pub fn meter(&self, app: &str, service: Service, n: u64) {
        metrics::counter!(
            "nimbus_store_operations_total",
            "app" => app.to_string(),
            "service" => service.as_str(),
            "source" => "client"
        )
        .increment(n);
        if self.tx.try_send(Msg::Ops(app.into(), service, n)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record submitted before this call is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Whether a record must be stored whatever the load: it failed, wrote
/// logs, handled an event, or used Nimbus's services (its spans).
fn always_kept(r: &InvocationRecord) -> bool {
    r.failed()
        || r.input.is_some()
        || r.event_id.is_some()
        || !r.stdout.is_empty()
        || !r.stderr.is_empty()
        || !r.op_spans.is_empty()
}

/// Decides, as records are submitted, which plain successes are stored: a
/// per-function budget per second (a reservoir, as tracing systems sample).
/// Under light load every invocation is stored; under heavy load the first
/// `per_sec` of each second, and the rest only add to `pending` usage sums,
/// which the writer drains into `usage_hourly` — so they cost a hash and an
/// addition, not an allocation, a channel send and a row.
struct Sampler {
    per_sec: u32,
    hasher: std::collections::hash_map::RandomState,
    /// By a hash of (app, function): the second and the count stored in it.
    seen: std::collections::HashMap<u64, (i64, u32)>,
    /// Sums of records not stored, by a hash of (app, function) and hour.
    pending: std::collections::HashMap<(u64, i64), (String, String, UsageRow)>,
    /// Records not stored since the last drain.
    sampled_out: u64,
}

impl Sampler {
    /// Whether `r` goes to the writer; if not, it was added to `pending`.
    fn admit(&mut self, r: &InvocationRecord) -> bool {
        use std::hash::BuildHasher;
        if self.per_sec == u32::MAX || always_kept(r) {
            return true;
        }
        let sec = r.started_at_us.div_euclid(1_000_000);
        if self.seen.len() > 100_000 {
            self.seen.clear();
        }
        let key = self.hasher.hash_one((&r.app, &r.function));
        let slot = self.seen.entry(key).or_insert((sec, 0));
        // A late record of an earlier second counts against the current one.
        if sec > slot.0 {
            *slot = (sec, 0);
        }
        slot.1 += 1;
        if slot.1 <= self.per_sec {
            return true;
        }
        let hour = hour_start(r.started_at_us);
        let (app, function, u) = self
            .pending
            .entry((key, hour))
            .or_insert_with(|| (r.app.clone(), r.function.clone(), UsageRow::default()));
        if *app != r.app || *function != r.function {
            return true; // a hash collision: store this one instead
        }
        add_record(u, r);
        self.sampled_out += 1;
        false
    }
}

/// Adds one invocation to a usage sum.
fn add_record(u: &mut UsageRow, r: &InvocationRecord) {
    u.invocations += 1;
    u.errors += i64::from(r.failed());
    u.duration_us += r.duration_us;
    u.mb_us += i64::from(r.memory_mb) * r.duration_us;
    u.bytes_in += r.bytes_in as i64;
    u.bytes_out += r.bytes_out as i64;
    u.cold_starts += i64::from(r.cold);
    u.kv_ops += r.ops.kv as i64;
    u.doc_ops += r.ops.docs as i64;
    u.object_ops += r.ops.objects as i64;
    u.event_ops += r.ops.events as i64;
}

/// Usage sums of records that were not stored, keyed by app, function, hour.
type PendingUsage = Vec<((String, String, i64), UsageRow)>;

async fn run(
    store: Store,
    config: RecordWriterConfig,
    mut rx: mpsc::Receiver<Msg>,
    sampler: Arc<parking_lot::Mutex<Sampler>>,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut written_since_prune = 0usize;
    let mut last_prune = std::time::Instant::now();
    loop {
        // Wake at least every second: sampled-out usage waits for no record.
        let received = tokio::time::timeout(Duration::from_secs(1), rx.recv_many(&mut buf, 1024));
        if let Ok(0) = received.await {
            return; // every sender is gone
        }
        // Let a batch build up: one transaction per ~20 ms under load, not
        // one per record (each statement is a round trip to SQLite's thread).
        if buf.len() < 1024 && !buf.iter().any(|m| matches!(m, Msg::Flush(_))) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            while buf.len() < 4096 {
                match rx.try_recv() {
                    Ok(m) => buf.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut records = Vec::with_capacity(buf.len());
        let mut flushes = Vec::new();
        let mut client_ops: std::collections::BTreeMap<Box<str>, OpCounts> = Default::default();
        for msg in buf.drain(..) {
            match msg {
                Msg::Record(r) => records.push(r),
                Msg::Ops(app, service, n) => client_ops.entry(app).or_default().add(service, n),
                Msg::Flush(tx) => flushes.push(tx),
            }
        }
        if !client_ops.is_empty()
            && let Err(e) = store.add_client_ops(&client_ops).await
        {
            tracing::error!(error = %e, "metering client operations failed");
        }
        let (pending, sampled_out) = {
            let mut s = sampler.lock();
            let pending: PendingUsage = s
                .pending
                .drain()
                .map(|((_, hour), (app, function, u))| ((app, function, hour), u))
                .collect();
            (pending, std::mem::take(&mut s.sampled_out))
        };
        if sampled_out > 0 {
            metrics::counter!("nimbus_records_sampled_out_total").increment(sampled_out);
        }
        if !records.is_empty() || !pending.is_empty() {
            // A failing disk must not take the server down; retry once, then drop.
            let mut attempt = 0;
            while let Err(e) = store.insert_records(&records, &pending).await {
                attempt += 1;
                tracing::error!(error = %e, records = records.len(), attempt, "writing invocation records failed");
                if attempt >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            written_since_prune += records.len();
            // Prune every 10,000 records, and at least once a minute while
            // records come in (retention by age).
            if written_since_prune >= 10_000 || last_prune.elapsed() >= Duration::from_secs(60) {
                written_since_prune = 0;
                last_prune = std::time::Instant::now();
                if let Err(e) = store.prune_records(&config).await {
                    tracing::error!(error = %e, "pruning invocation records failed");
                }
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// A stored invocation (without its logs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvocationRow {
    /// Invocation id.
    pub id: String,
    /// App name.
    pub app: String,
    /// Function name.
    pub function: String,
    /// Revision that served it.
    pub revision: i64,
    /// `http` or `invoke`.
    pub trigger: String,
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Start (µs since epoch).
    pub started_at_us: i64,
    /// Duration (µs).
    pub duration_us: i64,
    /// HTTP status answered.
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// Error, if it failed.
    pub error: Option<String>,
    /// Request bytes.
    pub bytes_in: u64,
    /// Response bytes.
    pub bytes_out: u64,
    /// Event delivered, for event-triggered invocations.
    pub event_id: Option<String>,
    /// Attempt number of that event (0 for plain requests).
    pub attempt: u32,
    /// Memory limit (MiB).
    pub memory_mb: u32,
    /// Peak linear memory (bytes).
    pub peak_memory_bytes: u64,
    /// Whether its code was loaded for it.
    pub cold: bool,
    /// Its trace.
    pub trace_id: String,
    /// Its span in the trace.
    pub span_id: String,
    /// The span that caused it.
    pub parent_span_id: Option<String>,
}

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
    }
}

/// A span of a guest's operation, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpSpanRow {
    /// The invocation that made it (its span is the parent).
    pub invocation_id: String,
    /// Its span id.
    pub span_id: String,
    /// `kv`, `docs`, `objects` or `events`.
    pub service: String,
    /// The operation.
    pub op: String,
    /// Store, collection, bucket, queue or topic.
    pub target: String,
    /// Start (µs since epoch).
    pub started_at_us: i64,
    /// Duration (µs).
    pub duration_us: i64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Adds per-function hourly sums to `usage_hourly` in one upsert per 64 rows.
async fn add_usage(
    tx: &mut sqlx::AnyConnection,
    sums: &[((&str, &str, i64), UsageRow)],
) -> Result<()> {
    for chunk in batches(sums) {
        let mut q = QueryBuilder::new(
            crate::Backend::of(tx),
            "INSERT INTO usage_hourly (app, function, hour, invocations, errors, duration_us,
                mb_us, bytes_in, bytes_out, cold_starts, kv_ops, doc_ops, object_ops, event_ops) ",
        );
        q.push_values(chunk, |mut b, ((app, function, hour), u)| {
            b.push_bind(*app)
                .push_bind(*function)
                .push_bind(*hour)
                .push_bind(u.invocations)
                .push_bind(u.errors)
                .push_bind(u.duration_us)
                .push_bind(u.mb_us)
                .push_bind(u.bytes_in)
                .push_bind(u.bytes_out)
                .push_bind(u.cold_starts)
                .push_bind(u.kv_ops)
                .push_bind(u.doc_ops)
                .push_bind(u.object_ops)
                .push_bind(u.event_ops);
        });
        q.push(
            " ON CONFLICT (app, function, hour) DO UPDATE SET
                invocations = usage_hourly.invocations + excluded.invocations,
                errors = usage_hourly.errors + excluded.errors,
                duration_us = usage_hourly.duration_us + excluded.duration_us,
                mb_us = usage_hourly.mb_us + excluded.mb_us,
                bytes_in = usage_hourly.bytes_in + excluded.bytes_in,
                bytes_out = usage_hourly.bytes_out + excluded.bytes_out,
                cold_starts = usage_hourly.cold_starts + excluded.cold_starts,
                kv_ops = usage_hourly.kv_ops + excluded.kv_ops,
                doc_ops = usage_hourly.doc_ops + excluded.doc_ops,
                object_ops = usage_hourly.object_ops + excluded.object_ops,
                event_ops = usage_hourly.event_ops + excluded.event_ops",
        );
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

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

const INVOCATION_COLUMNS: &str = "id, app, function, revision, trigger, method, path, started_at,
    duration_us, status, outcome, error, bytes_in, bytes_out, event_id, attempt, memory_mb,
    peak_memory, cold, trace_id, span_id, parent_span_id";

fn invocation_row(row: &sqlx::any::AnyRow) -> Result<InvocationRow> {
    let outcome: String = row.try_get("outcome")?;
    Ok(InvocationRow {
        id: row.try_get("id")?,
        app: row.try_get("app")?,
        function: row.try_get("function")?,
        revision: row.try_get("revision")?,
        trigger: row.try_get("trigger")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        started_at_us: row.try_get("started_at")?,
        duration_us: row.try_get("duration_us")?,
        status: row.try_get::<i64, _>("status")? as u16,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("unknown outcome {outcome:?}")))?,
        error: row.try_get("error")?,
        bytes_in: row.try_get::<i64, _>("bytes_in")? as u64,
        bytes_out: row.try_get::<i64, _>("bytes_out")? as u64,
        event_id: row.try_get("event_id")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        memory_mb: row.try_get::<i64, _>("memory_mb")? as u32,
        peak_memory_bytes: row.try_get::<i64, _>("peak_memory")? as u64,
        cold: row.try_get::<i64, _>("cold")? != 0,
        trace_id: row.try_get("trace_id")?,
        span_id: row.try_get("span_id")?,
        parent_span_id: row.try_get("parent_span_id")?,
    })
}

impl Store {
    /// Writes records and their logs in one transaction, as multi-row
    /// inserts: one statement per few hundred rows, not one per row; adds
    /// them and `pending` (sums of records not stored) to the hourly usage.
    async fn insert_records(
        &self,
        records: &[Box<InvocationRecord>],
        pending: &PendingUsage,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in batches(records) {
            let mut q = QueryBuilder::new(self.backend,
                "INSERT INTO invocations (id, app, function, revision, trigger, method, path, started_at,
                    duration_us, status, outcome, error, bytes_in, bytes_out, event_id, attempt,
                    memory_mb, peak_memory, cold, trace_id, span_id, parent_span_id) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(&r.id)
                    .push_bind(&r.app)
                    .push_bind(&r.function)
                    .push_bind(r.revision)
                    .push_bind(&r.trigger)
                    .push_bind(&r.method)
                    .push_bind(&r.path)
                    .push_bind(r.started_at_us)
                    .push_bind(r.duration_us)
                    .push_bind(i64::from(r.status))
                    .push_bind(r.outcome.as_str())
                    .push_bind(&r.error)
                    .push_bind(r.bytes_in as i64)
                    .push_bind(r.bytes_out as i64)
                    .push_bind(&r.event_id)
                    .push_bind(i64::from(r.attempt))
                    .push_bind(i64::from(r.memory_mb))
                    .push_bind(r.peak_memory_bytes as i64)
                    .push_bind(i64::from(r.cold))
                    .push_bind(&r.trace_id)
                    .push_bind(&r.span_id)
                    .push_bind(&r.parent_span_id);
            });
            q.push(" ON CONFLICT (id) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        let inputs: Vec<(&InvocationRecord, &StoredInput)> = records
            .iter()
            .filter_map(|r| r.input.as_deref().map(|i| (&**r, i)))
            .collect();
        for chunk in batches(&inputs) {
            let mut q = QueryBuilder::new(
                self.backend,
                "INSERT INTO failed_inputs (invocation_id, app, method, path, headers, body, complete, created_at) ",
            );
            q.push_values(chunk, |mut b, (r, i)| {
                b.push_bind(&r.id)
                    .push_bind(&r.app)
                    .push_bind(&i.method)
                    .push_bind(&i.path)
                    .push_bind(serde_json::to_string(&i.headers).expect("strings serialize"))
                    .push_bind(&i.body)
                    .push_bind(i64::from(i.complete))
                    .push_bind(r.started_at_us);
            });
            q.push(" ON CONFLICT (invocation_id) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        // The hourly aggregates, summed here first: one upsert per function
        // and hour in the batch, not one per record.
        let mut sums: std::collections::BTreeMap<(&str, &str, i64), UsageRow> =
            std::collections::BTreeMap::new();
        for r in records {
            let hour = hour_start(r.started_at_us);
            add_record(sums.entry((&r.app, &r.function, hour)).or_default(), r);
        }
        for ((app, function, hour), p) in pending {
            sums.entry((app.as_str(), function.as_str(), *hour))
                .or_default()
                .add(p);
        }
        let sums: Vec<_> = sums.into_iter().collect();
        add_usage(&mut tx, &sums).await?;
        let spans: Vec<(&InvocationRecord, &OpSpan)> = records
            .iter()
            .flat_map(|r| r.op_spans.iter().map(move |s| (&**r, s)))
            .collect();
        for chunk in batches(&spans) {
            let mut q = QueryBuilder::new(
                self.backend,
                "INSERT INTO op_spans (invocation_id, trace_id, span_id, service, op, target,
                    started_at, duration_us, ok) ",
            );
            q.push_values(chunk, |mut b, (r, s)| {
                b.push_bind(&r.id)
                    .push_bind(&r.trace_id)
                    .push_bind(&s.span_id)
                    .push_bind(s.service.as_str())
                    .push_bind(&s.op)
                    .push_bind(&s.target)
                    .push_bind(s.started_at_us)
                    .push_bind(s.duration_us)
                    .push_bind(i64::from(s.ok));
            });
            q.build().execute(&mut *tx).await?;
        }
        let logs: Vec<(&InvocationRecord, &str, &String)> = records
            .iter()
            .flat_map(|r| [(&**r, "stdout", &r.stdout), (&**r, "stderr", &r.stderr)])
            .filter(|(_, _, text)| !text.is_empty())
            .collect();
        for chunk in batches(&logs) {
            let mut q = QueryBuilder::new(
                self.backend,
                "INSERT INTO logs (invocation_id, app, function, at, stream, text) ",
            );
            q.push_values(chunk, |mut b, (r, stream, text)| {
                b.push_bind(&r.id)
                    .push_bind(&r.app)
                    .push_bind(&r.function)
                    .push_bind(r.started_at_us)
                    .push_bind(*stream)
                    .push_bind(*text);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The kept input of a failed invocation of `app`.
    pub async fn failed_input(&self, app: &str, id: &str) -> Result<Option<StoredInput>> {
        let row = sqlx::query(
            "SELECT method, path, headers, body, complete FROM failed_inputs
             WHERE app = $1 AND invocation_id = $2",
        )
        .bind(app)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let headers: String = r.try_get("headers")?;
            Ok(StoredInput {
                method: r.try_get("method")?,
                path: r.try_get("path")?,
                headers: serde_json::from_str(&headers)
                    .map_err(|e| crate::StoreError::Corrupt(format!("stored headers: {e}")))?,
                body: r.try_get("body")?,
                complete: r.try_get::<i64, _>("complete")? != 0,
            })
        })
        .transpose()
    }

    /// Usage from the hour containing `since_us` on, of one app or all,
    /// grouped by `by`, largest GB-seconds first.
    pub async fn usage(
        &self,
        app: Option<&str>,
        since_us: i64,
        by: UsageBy,
    ) -> Result<Vec<UsageRow>> {
        let key = match by {
            UsageBy::Function => "app || '/' || function",
            UsageBy::App => "app",
            // Days are grouped by number; the caller names them.
            UsageBy::Day => "CAST(hour / 86400000000 AS TEXT)",
            UsageBy::Hour => "CAST(hour AS TEXT)",
        };
        let since = hour_start(since_us);
        let mut q = QueryBuilder::new(
            self.backend,
            format!(
                "SELECT {key} AS k, CAST(SUM(invocations) AS BIGINT) AS invocations,
                CAST(SUM(errors) AS BIGINT) AS errors,
                CAST(SUM(duration_us) AS BIGINT) AS duration_us,
                CAST(SUM(mb_us) AS BIGINT) AS mb_us,
                CAST(SUM(bytes_in) AS BIGINT) AS bytes_in,
                CAST(SUM(bytes_out) AS BIGINT) AS bytes_out,
                CAST(SUM(cold_starts) AS BIGINT) AS cold_starts,
                CAST(SUM(kv_ops) AS BIGINT) AS kv_ops,
                CAST(SUM(doc_ops) AS BIGINT) AS doc_ops,
                CAST(SUM(object_ops) AS BIGINT) AS object_ops,
                CAST(SUM(event_ops) AS BIGINT) AS event_ops
             FROM usage_hourly WHERE hour >= "
            ),
        );
        q.push_bind(since);
        if let Some(app) = app {
            q.push(" AND app = ").push_bind(app.to_string());
        }
        q.push(" GROUP BY k ORDER BY SUM(mb_us) DESC, k");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let mut key: String = r.try_get("k")?;
                match by {
                    UsageBy::Day => {
                        let day: i64 = key.parse().unwrap_or(0);
                        key = crate::metering::day(day.saturating_mul(86_400_000_000));
                    }
                    UsageBy::Hour => key = crate::metering::hour(key.parse().unwrap_or(0)),
                    _ => {}
                }
                Ok(UsageRow {
                    key,
                    invocations: r.try_get("invocations")?,
                    errors: r.try_get("errors")?,
                    duration_us: r.try_get("duration_us")?,
                    mb_us: r.try_get("mb_us")?,
                    bytes_in: r.try_get("bytes_in")?,
                    bytes_out: r.try_get("bytes_out")?,
                    cold_starts: r.try_get("cold_starts")?,
                    kv_ops: r.try_get("kv_ops")?,
                    doc_ops: r.try_get("doc_ops")?,
                    object_ops: r.try_get("object_ops")?,
                    event_ops: r.try_get("event_ops")?,
                })
            })
            .collect()
    }

    /// Adds clients' operations on each app's services to this hour's usage.
    async fn add_client_ops(
        &self,
        ops: &std::collections::BTreeMap<Box<str>, OpCounts>,
    ) -> Result<()> {
        let hour = hour_start(crate::now_us());
        let rows: Vec<((&str, &str, i64), UsageRow)> = ops
            .iter()
            .map(|(app, ops)| {
                let u = UsageRow {
                    kv_ops: ops.kv as i64,
                    doc_ops: ops.docs as i64,
                    object_ops: ops.objects as i64,
                    event_ops: ops.events as i64,
                    ..Default::default()
                };
                ((&**app, CLIENT_OPS, hour), u)
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        add_usage(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The spans of guests' operations in a trace, oldest first.
    pub async fn trace_ops(&self, trace_id: &str) -> Result<Vec<OpSpanRow>> {
        let rows = sqlx::query(
            "SELECT invocation_id, span_id, service, op, target, started_at, duration_us, ok
             FROM op_spans WHERE trace_id = $1 ORDER BY started_at LIMIT 10000",
        )
        .bind(trace_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OpSpanRow {
                    invocation_id: r.try_get("invocation_id")?,
                    span_id: r.try_get("span_id")?,
                    service: r.try_get("service")?,
                    op: r.try_get("op")?,
                    target: r.try_get("target")?,
                    started_at_us: r.try_get("started_at")?,
                    duration_us: r.try_get("duration_us")?,
                    ok: r.try_get::<i64, _>("ok")? != 0,
                })
            })
            .collect()
    }

    /// Applies the retention of `config`, app by app, so that one app's
    /// flood of records or logs never evicts another's: of each app, all
    /// but its newest `keep_invocations` records (with their failed
    /// inputs and spans); its log entries beyond `keep_log_entries` or
    /// beyond `keep_log_bytes` of text; and everyone's entries older than
    /// `keep_logs_for`.
    pub async fn prune_records(&self, config: &RecordWriterConfig) -> Result<()> {
        for app in self.apps_in("invocations").await? {
            // Ids are UUIDv7 (time-ordered): (app, id) orders an app's
            // invocations by start, so the cut is an index seek.
            let cut: Option<String> = sqlx::query_scalar(
                "SELECT id FROM invocations WHERE app = $1 ORDER BY id DESC LIMIT 1 OFFSET $2",
            )
            .bind(&app)
            .bind(config.keep_invocations)
            .fetch_optional(&self.pool)
            .await?;
            let Some(cut) = cut else { continue };
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "DELETE FROM op_spans WHERE invocation_id IN (
                    SELECT id FROM invocations WHERE app = $1 AND id <= $2)",
            )
            .bind(&app)
            .bind(&cut)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM failed_inputs WHERE app = $1 AND invocation_id <= $2")
                .bind(&app)
                .bind(&cut)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM invocations WHERE app = $1 AND id <= $2")
                .bind(&app)
                .bind(&cut)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        let cutoff =
            crate::now_us() - config.keep_logs_for.as_micros().min(i64::MAX as u128) as i64;
        sqlx::query("DELETE FROM logs WHERE at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        for app in self.apps_in("logs").await? {
            sqlx::query(
                "DELETE FROM logs WHERE app = $1 AND seq <= (
                    SELECT seq FROM logs WHERE app = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
            )
            .bind(&app)
            .bind(config.keep_log_entries)
            .execute(&self.pool)
            .await?;
            // The app's newest entries whose text adds up to the budget stay.
            sqlx::query(
                "DELETE FROM logs WHERE app = $1 AND seq <= (
                    SELECT seq FROM (
                        SELECT seq, SUM(LENGTH(text)) OVER (ORDER BY seq DESC) AS newer_bytes
                        FROM logs WHERE app = $1
                    ) AS sized WHERE newer_bytes > $2 ORDER BY seq DESC LIMIT 1)",
            )
            .bind(&app)
            .bind(config.keep_log_bytes)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// The apps with rows in `table` (which has an index led by `app`),
    /// found by skipping from one app to the next in that index rather
    /// than reading every row.
    async fn apps_in(&self, table: &'static str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(&format!(
            "WITH RECURSIVE a(app) AS (
                SELECT MIN(app) FROM {table}
                UNION ALL
                SELECT (SELECT MIN(app) FROM {table} WHERE app > a.app) FROM a WHERE a.app IS NOT NULL
            ) SELECT app FROM a WHERE app IS NOT NULL"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Newest invocations of an app (optionally of one function, or the
    /// attempts of one event), newest first.
    pub async fn invocations(
        &self,
        app: &str,
        function: Option<&str>,
        event: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InvocationRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS}
             FROM invocations WHERE app = $1 AND ($2 IS NULL OR function = $2)
               AND ($3 IS NULL OR event_id = $3)
             ORDER BY started_at DESC LIMIT $4"
        ))
        .bind(app)
        .bind(function)
        .bind(event)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invocation_row).collect()
    }

    /// Every invocation of a trace, oldest first.
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<InvocationRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE trace_id = $1 ORDER BY started_at LIMIT 10000"
        ))
        .bind(trace_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invocation_row).collect()
    }

    /// An invocation of any app.
    pub async fn invocation_anywhere(&self, id: &str) -> Result<Option<InvocationRow>> {
        let row = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invocation_row).transpose()
    }

    /// One invocation of an app.
    pub async fn invocation(&self, app: &str, id: &str) -> Result<Option<InvocationRow>> {
        let row = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE app = $1 AND id = $2"
        ))
        .bind(app)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invocation_row).transpose()
    }

    /// Log entries matching `q`, oldest first.
    pub async fn logs(&self, q: &LogQuery) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, invocation_id, app, function, at, stream, text FROM logs
             WHERE app = $1 AND seq > $2 AND at >= $3
               AND ($4 IS NULL OR function = $4) AND ($5 IS NULL OR invocation_id = $5)
               AND ($7 IS NULL OR LOWER(text) LIKE $7 ESCAPE '\\')
             ORDER BY seq LIMIT $6",
        )
        .bind(&q.app)
        .bind(q.after_seq)
        .bind(q.since_us)
        .bind(&q.function)
        .bind(&q.invocation)
        .bind(q.limit)
        .bind(q.grep.as_ref().map(|g| {
            let escaped = g
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        }))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LogEntry {
                    seq: row.try_get("seq")?,
                    invocation_id: row.try_get("invocation_id")?,
                    app: row.try_get("app")?,
                    function: row.try_get("function")?,
                    at_us: row.try_get("at")?,
                    stream: row.try_get("stream")?,
                    text: row.try_get("text")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize, function: &str) -> InvocationRecord {
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
