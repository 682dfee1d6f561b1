//! The record writer: a bounded queue and one task that writes batches.

use super::sampler::{PendingUsage, Sampler, add_record};
use super::usage::add_usage;
use super::{UsageRow, batches, hour_start};
use crate::builder::QueryBuilder;
use crate::{Result, Store};
use nimbus_core::{InvocationRecord, OpCounts, OpSpan, Service, StoredInput};
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
    /// An app's WebSocket connections' time and messages.
    Sockets(Box<str>, SocketUsage),
    Flush(oneshot::Sender<()>),
}

/// The `usage_hourly` function name of operations made by clients (the
/// REST data API, the S3 endpoint) rather than by functions; parentheses
/// keep it apart from every function name.
pub const CLIENT_OPS: &str = "(api)";

/// The `usage_hourly` function name of WebSocket connections' own time and
/// messages (their functions' invocations are metered as theirs).
pub const WEBSOCKETS: &str = "(websockets)";

/// WebSocket connections' time and messages, over some period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketUsage {
    /// Time connections were open, in milliseconds.
    pub connection_ms: u64,
    /// Messages their clients sent.
    pub messages_in: u64,
    /// Messages sent to their clients.
    pub messages_out: u64,
}

impl SocketUsage {
    /// Adds `other` to these.
    pub fn add(&mut self, other: SocketUsage) {
        self.connection_ms += other.connection_ms;
        self.messages_in += other.messages_in;
        self.messages_out += other.messages_out;
    }
}

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
        let sampler = Arc::new(parking_lot::Mutex::new(Sampler::new(
            config.keep_successes_per_sec,
        )));
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

    /// Meters `app`'s WebSocket connections' time and messages. Never
    /// blocks: dropped and counted if the writer is behind.
    pub fn meter_sockets(&self, app: &str, usage: SocketUsage) {
        if self.tx.try_send(Msg::Sockets(app.into(), usage)).is_err() {
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
        let mut sockets: std::collections::BTreeMap<Box<str>, SocketUsage> = Default::default();
        for msg in buf.drain(..) {
            match msg {
                Msg::Record(r) => records.push(r),
                Msg::Ops(app, service, n) => client_ops.entry(app).or_default().add(service, n),
                Msg::Sockets(app, u) => sockets.entry(app).or_default().add(u),
                Msg::Flush(tx) => flushes.push(tx),
            }
        }
        if !client_ops.is_empty()
            && let Err(e) = store.add_client_ops(&client_ops).await
        {
            tracing::error!(error = %e, "metering client operations failed");
        }
        if !sockets.is_empty()
            && let Err(e) = store.add_socket_usage(&sockets).await
        {
            tracing::error!(error = %e, "metering WebSocket connections failed");
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

impl Store {
    /// Writes records and their logs in one transaction, as multi-row
    /// inserts: one statement per few hundred rows, not one per row; adds
    /// them and `pending` (sums of records not stored) to the hourly usage.
    pub(super) async fn insert_records(
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
}
