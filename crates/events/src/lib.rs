//! Nimbus events: durable queues, topics, schedules and async invocations.
//!
//! One model serves them all. A message is stored (durably, before anyone is
//! told it was accepted) in a *channel* of its app — a queue, a function's
//! async invocations, a topic subscription, a schedule — and a consumer task
//! delivers it to the channel's function as an HTTP request in CloudEvents
//! binary mode: `ce-id`, `ce-source`, `ce-type`, `ce-specversion`,
//! `ce-time` (and extensions) as headers, the payload as the body. A 2xx
//! answer acknowledges; anything else, a trap or a timeout is a failure.
//!
//! * Delivery is at-least-once: a delivery holds a lease; if its worker dies
//!   the lease runs out (or, on a single node, start-up releases it) and the
//!   message is delivered again.
//! * Retries follow the consumer's [`RetryPolicy`]; after the last failure
//!   the message is dead-lettered (state `dead`), kept with its last error
//!   until redriven or purged.
//! * Messages of one FIFO group are delivered one at a time, in order.
//! * An idempotency key drops a second send within the queue's window.
//! * Back-pressure: consumers take bounded batches and wait for admission;
//!   a flood of events waits in the database, never in memory.
//!
//! [`Events::send`], [`Events::publish`] and [`Events::invoke_async`] build
//! the stored message (its CloudEvents headers fixed at send time) and
//! return once it is committed, so a `202` means stored. Storage events are
//! built by [`Events::storage_messages`] and stored by the object change's
//! own transaction. [`Events::sync`] makes consumer and schedule tasks
//! match the active apps; the control plane calls it on every route-table
//! swap. A maintenance task puts expired leases back every second and
//! prunes old succeeded events. At start-up a node releases its own leases
//! from before (`Store::release_own_leases`).
//!
//! Events live in the SQL store rather than a separate broker: one durable
//! store to operate, and the same tables on PostgreSQL in a cluster, where
//! nodes lease from the same channels. The `nimbus:events` WIT is Nimbus's
//! own: `wasi:messaging` is still a draft whose shape (connect to a named
//! client, then send) does not fit an app's declared queues.
//!
//! [`RetryPolicy`]: nimbus_core::events::RetryPolicy

mod deliver;
mod guest;
mod guest3;
mod schedule;
mod writer;

pub use guest::Producer;

use arc_swap::ArcSwap;
use deliver::ConsumerHandle;
use http::HeaderMap;
use nimbus_core::events::Channel;
use nimbus_runtime::{ActiveApp, Caller, Function, Runtime};
use nimbus_store::{Enqueued, EventOp, EventResult, NewMessage, Store, now_us};
use parking_lot::Mutex;
use schedule::ScheduleHandle;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use writer::Writer;

/// Settings of the events engine.
#[derive(Debug, Clone, Copy)]
pub struct EventsConfig {
    /// Largest message body accepted (a queue may set a lower limit).
    pub max_message_bytes: u64,
    /// How long succeeded messages are kept (to answer status queries).
    pub keep_succeeded: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max_message_bytes: 1 << 20,
            keep_succeeded: Duration::from_secs(3600),
        }
    }
}

/// A message was refused. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No such app, queue or topic.
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// Something else about the message is wrong.
    #[error("{0}")]
    Invalid(String),
    /// It could not be stored.
    #[error("{0}")]
    Unavailable(String),
}

/// A message to send, as a client or a guest describes it.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// Payload.
    pub body: Vec<u8>,
    /// Media type of the payload.
    pub content_type: Option<String>,
    /// CloudEvents `type` (a default per trigger kind otherwise).
    pub ce_type: Option<String>,
    /// CloudEvents `source` (the channel's path otherwise).
    pub ce_source: Option<String>,
    /// CloudEvents `time` (now otherwise).
    pub ce_time: Option<SystemTime>,
    /// Further CloudEvents attributes (`subject`, extensions), by name.
    pub extensions: Vec<(String, String)>,
    /// FIFO group.
    pub group: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// The sender's trace position (a W3C `traceparent`); the delivery
    /// becomes a child span of it.
    pub traceparent: Option<String>,
}

/// Longest group or idempotency key.
pub const MAX_KEY_LEN: usize = 256;

impl Outgoing {
    /// Reads CloudEvents attributes and Nimbus options from request headers:
    /// `ce-type`, `ce-source`, other `ce-*` attributes, `content-type`,
    /// `idempotency-key` and `nimbus-message-group`.
    pub fn from_headers(headers: &HeaderMap, body: Vec<u8>) -> Result<Outgoing, EventError> {
        let mut out = Outgoing {
            body,
            ..Default::default()
        };
        for (name, value) in headers {
            let name = name.as_str();
            let value = || {
                value
                    .to_str()
                    .map(str::to_string)
                    .map_err(|_| EventError::Invalid(format!("header {name} is not valid text")))
            };
            match name {
                "content-type" => out.content_type = Some(value()?),
                "idempotency-key" => out.idempotency_key = Some(value()?),
                "nimbus-message-group" => out.group = Some(value()?),
                "traceparent" => {
                    out.traceparent =
                        nimbus_core::trace::TraceContext::parse(&value()?).map(|t| t.header())
                }
                "ce-type" => out.ce_type = Some(value()?),
                "ce-source" => out.ce_source = Some(value()?),
                // Set by Nimbus.
                "ce-id" | "ce-specversion" | "ce-time" => {}
                _ => {
                    if let Some(attr) = name.strip_prefix("ce-") {
                        out.extensions.push((attr.to_string(), value()?));
                    }
                }
            }
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), EventError> {
        for (what, v) in [
            ("message group", &self.group),
            ("idempotency key", &self.idempotency_key),
        ] {
            if let Some(v) = v
                && (v.is_empty() || v.len() > MAX_KEY_LEN)
            {
                return Err(EventError::Invalid(format!(
                    "the {what} must be 1-{MAX_KEY_LEN} bytes long"
                )));
            }
        }
        for (name, _) in &self.extensions {
            let ok = !name.is_empty()
                && name.len() <= 20
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !ok {
                return Err(EventError::Invalid(format!(
                    "CloudEvents attribute {name:?} is invalid: names are 1-20 lowercase letters or digits"
                )));
            }
        }
        Ok(())
    }
}

/// The request an async invocation stores.
pub struct AsyncRequest<'a> {
    /// Method.
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Headers (hop-by-hop, `prefer`, `ce-*`, `nimbus-*` and credentials —
    /// `authorization`, `cookie`, `proxy-authorization`, `x-api-key` — are
    /// dropped: none is stored).
    pub headers: &'a HeaderMap,
    /// The route pattern that matched, if it came through one.
    pub route: Option<&'a str>,
    /// Its path parameters.
    pub params: &'a [(String, String)],
    /// The caller the route's policy verified.
    pub caller: Option<&'a Caller>,
}

/// Percent-encodes what a header value cannot carry (CloudEvents HTTP
/// binding: non-ASCII, controls, `%` and `"`).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' '..=b'~' if b != b'%' && b != b'"' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    /// Message (event) id.
    pub id: String,
    /// The idempotency key was seen recently: this is the first message's id
    /// and nothing new was stored.
    pub duplicate: bool,
}

/// State shared with the consumer and schedule tasks.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) writer: Writer,
    runtime: Arc<Runtime>,
    config: EventsConfig,
    apps: ArcSwap<HashMap<String, Arc<ActiveApp>>>,
    consumers: Mutex<HashMap<(String, String), ConsumerHandle>>,
    /// One wake-up per channel, kept across consumer replacements.
    notifiers: Mutex<HashMap<(String, String), Arc<tokio::sync::Notify>>>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

impl Shared {
    /// Builds the row of a message: the delivery's method, path and headers
    /// (CloudEvents binary mode) and body.
    pub(crate) fn message(
        &self,
        app: &str,
        channel: &Channel,
        method: &str,
        path: &str,
        mut headers: Vec<(String, String)>,
        msg: Outgoing,
    ) -> NewMessage {
        let id = uuid::Uuid::now_v7().to_string();
        let (default_type, source) = match channel {
            Channel::Queue(q) => (
                "dev.nimbus.queue.message",
                format!("/apps/{app}/queues/{q}"),
            ),
            Channel::Async(f) => (
                "dev.nimbus.invocation.async",
                format!("/apps/{app}/functions/{f}"),
            ),
            Channel::Topic { topic, .. } => (
                "dev.nimbus.topic.message",
                format!("/apps/{app}/topics/{topic}"),
            ),
            Channel::Schedule(s) => (
                "dev.nimbus.schedule.tick",
                format!("/apps/{app}/schedules/{s}"),
            ),
            Channel::Storage { bucket, .. } => (
                "dev.nimbus.storage.object",
                format!("/apps/{app}/buckets/{bucket}"),
            ),
        };
        headers.push(("ce-specversion".into(), "1.0".into()));
        headers.push(("ce-id".into(), id.clone()));
        headers.push(("ce-source".into(), msg.ce_source.unwrap_or(source)));
        headers.push((
            "ce-type".into(),
            msg.ce_type.unwrap_or_else(|| default_type.into()),
        ));
        headers.push((
            "ce-time".into(),
            rfc3339(msg.ce_time.unwrap_or_else(SystemTime::now)),
        ));
        if let Some(ct) = msg.content_type {
            headers.push(("content-type".into(), ct));
        }
        if let Some(g) = &msg.group {
            headers.push(("ce-partitionkey".into(), g.clone()));
        }
        for (k, v) in msg.extensions {
            headers.push((format!("ce-{k}"), v));
        }
        if let Some(tp) = msg.traceparent
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
        {
            headers.push(("traceparent".into(), tp));
        }
        let apps = self.apps.load();
        let spec = apps.get(app).map(|a| &a.spec);
        let dedup = spec
            .and_then(|s| match channel {
                Channel::Queue(q) => s.queues.get(q).map(|q| q.dedup_window_ms),
                _ => None,
            })
            .unwrap_or(nimbus_core::events::QueueSpec::DEFAULT_DEDUP_WINDOW_MS);
        let function = match channel {
            Channel::Async(f)
            | Channel::Topic { function: f, .. }
            | Channel::Storage { function: f, .. } => Some(f.clone()),
            Channel::Queue(q) => spec.and_then(|s| {
                s.queue_triggers
                    .iter()
                    .find(|t| &t.queue == q)
                    .map(|t| t.function.clone())
            }),
            Channel::Schedule(n) => spec.and_then(|s| {
                s.schedules
                    .iter()
                    .find(|t| &t.name == n)
                    .map(|t| t.function.clone())
            }),
        };
        NewMessage {
            id,
            app: app.to_string(),
            channel: channel.to_string(),
            function,
            group_key: msg.group,
            idempotency: msg
                .idempotency_key
                .map(|k| (k, now_us() + dedup as i64 * 1000)),
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body: msg.body,
            available_at_us: 0,
        }
    }

    /// Wakes the consumer of a channel, if it has one on this node.
    pub(crate) fn notify(&self, app: &str, channel: &Channel) {
        if let Some(n) = self
            .notifiers
            .lock()
            .get(&(app.to_string(), channel.to_string()))
        {
            n.notify_one();
        }
    }

    fn notify_app(&self, app: &str) {
        for ((a, _), h) in self.consumers.lock().iter() {
            if a == app {
                h.notify.notify_one();
            }
        }
    }

    fn app(&self, app: &str) -> Result<Arc<ActiveApp>, EventError> {
        self.apps.load().get(app).cloned().ok_or_else(|| {
            EventError::NotFound(format!("app {app:?} is not deployed: deploy it first"))
        })
    }

    fn size_check(&self, limit: Option<u64>, what: &str, len: usize) -> Result<(), EventError> {
        let limit = limit.unwrap_or(u64::MAX).min(self.config.max_message_bytes);
        if len as u64 > limit {
            return Err(EventError::TooLarge(format!(
                "the message is {len} bytes, over the limit of {limit} bytes for {what}: send a smaller payload (or store it in object storage and send its key)"
            )));
        }
        Ok(())
    }

    async fn store_messages(&self, msgs: Vec<NewMessage>) -> Result<Vec<Receipt>, EventError> {
        let channels: Vec<(String, String)> = msgs
            .iter()
            .map(|m| (m.app.clone(), m.channel.clone()))
            .collect();
        let result = self
            .writer
            .call(EventOp::Enqueue(msgs))
            .await
            .map_err(|e| {
                EventError::Unavailable(format!("the message could not be stored: {e}"))
            })?;
        nimbus_store::fault_point("after-event-commit");
        let EventResult::Enqueued(done) = result else {
            unreachable!("enqueue answered {result:?}")
        };
        {
            let consumers = self.consumers.lock();
            for key in &channels {
                if let Some(h) = consumers.get(key) {
                    h.notify.notify_one();
                }
            }
        }
        Ok(done
            .into_iter()
            .map(|e| match e {
                Enqueued::New(id) => Receipt {
                    id,
                    duplicate: false,
                },
                Enqueued::Duplicate(id) => Receipt {
                    id,
                    duplicate: true,
                },
            })
            .collect())
    }

    async fn send(&self, app: &str, queue: &str, msg: Outgoing) -> Result<Receipt, EventError> {
        msg.check()?;
        let active = self.app(app)?;
        let Some(q) = active.spec.queues.get(queue) else {
            let known: Vec<&str> = active.spec.queues.keys().map(String::as_str).collect();
            return Err(EventError::NotFound(format!(
                "app {app:?} has no queue {queue:?} (queues: {}); declare it in nimbus.toml as [queues.{queue}]",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        self.size_check(
            q.max_message_bytes,
            &format!("queue {queue:?}"),
            msg.body.len(),
        )?;
        let m = self.message(
            app,
            &Channel::Queue(queue.into()),
            "POST",
            "/",
            Vec::new(),
            msg,
        );
        Ok(self.store_messages(vec![m]).await?.remove(0))
    }

    async fn publish(
        &self,
        app: &str,
        topic: &str,
        msg: Outgoing,
    ) -> Result<Vec<Receipt>, EventError> {
        msg.check()?;
        let active = self.app(app)?;
        if !active.spec.topics.contains(topic) {
            let known: Vec<&str> = active.spec.topics.iter().map(String::as_str).collect();
            return Err(EventError::NotFound(format!(
                "app {app:?} has no topic {topic:?} (topics: {}); declare it in nimbus.toml as [topics.{topic}]",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        let channels = active.spec.topic_channels(topic);
        let mut msgs = Vec::with_capacity(channels.len());
        for channel in channels {
            let limit = match &channel {
                Channel::Queue(q) => active.spec.queues.get(q).and_then(|q| q.max_message_bytes),
                _ => None,
            };
            self.size_check(limit, &format!("topic {topic:?}"), msg.body.len())?;
            let mut copy = msg.clone();
            if copy.ce_type.is_none() {
                copy.ce_type = Some("dev.nimbus.topic.message".into());
            }
            if copy.ce_source.is_none() {
                copy.ce_source = Some(format!("/apps/{app}/topics/{topic}"));
            }
            msgs.push(self.message(app, &channel, "POST", "/", Vec::new(), copy));
        }
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        self.store_messages(msgs).await
    }
}

/// The events engine.
pub struct Events {
    shared: Arc<Shared>,
    schedules: Mutex<HashMap<(String, String), ScheduleHandle>>,
    stop: CancellationToken,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How often lease expiries are checked and old messages pruned.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);

impl Events {
    /// Starts the engine: releases the leases of a previous process (this
    /// node is the only one), starts the writer and maintenance, and
    /// connects the guests' `nimbus:events/producer` interface (`producer`,
    /// the guest capability `runtime` was built with).
    pub async fn start(
        store: Store,
        runtime: Arc<Runtime>,
        config: EventsConfig,
        producer: &Producer,
    ) -> Result<Arc<Events>, EventError> {
        // This node's leases from before a crash; in a cluster, other
        // nodes' leases are alive, or (a dead node's) run out (`maintain`).
        let released = store
            .release_own_leases()
            .await
            .map_err(|e| EventError::Unavailable(e.to_string()))?;
        if released > 0 {
            tracing::info!(
                released,
                "messages in flight at the last stop will be delivered again"
            );
        }
        let shared = Arc::new(Shared {
            writer: Writer::spawn(store.clone()),
            store,
            runtime: runtime.clone(),
            config,
            apps: ArcSwap::from_pointee(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            notifiers: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        tokio::spawn(maintain(Arc::downgrade(&shared), stop.clone()));
        producer.connect(&shared);
        Ok(Arc::new(Events {
            shared,
            schedules: Mutex::new(HashMap::new()),
            stop,
        }))
    }

    /// The store (for status and dead-letter queries).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The engine's settings.
    pub fn config(&self) -> &EventsConfig {
        &self.shared.config
    }

    /// Makes the consumers and schedules match the active apps: starts
    /// what is new, stops what is gone, restarts what changed.
    pub fn sync(&self, apps: impl IntoIterator<Item = Arc<ActiveApp>>) {
        let apps: HashMap<String, Arc<ActiveApp>> =
            apps.into_iter().map(|a| (a.spec.name.clone(), a)).collect();
        let mut wanted = HashMap::new();
        let mut wanted_schedules = HashMap::new();
        for (name, app) in &apps {
            for c in app.spec.consumers() {
                if let Some(f) = app.functions.get(&c.function) {
                    wanted.insert((name.clone(), c.channel.to_string()), (c, f.clone()));
                }
            }
            for s in &app.spec.schedules {
                wanted_schedules.insert((name.clone(), s.name.clone()), s.clone());
            }
        }
        self.shared.apps.store(Arc::new(apps));
        {
            let mut consumers = self.shared.consumers.lock();
            consumers.retain(|k, h| wanted.get(k).is_some_and(|(c, f)| deliver::same(h, c, f)));
            for (key, (c, f)) in wanted {
                if consumers.contains_key(&key) {
                    continue;
                }
                let notify = self
                    .shared
                    .notifiers
                    .lock()
                    .entry(key.clone())
                    .or_default()
                    .clone();
                let h = deliver::start(
                    &key.0,
                    c,
                    f,
                    self.shared.runtime.clone(),
                    self.shared.store.clone(),
                    self.shared.writer.clone(),
                    notify,
                );
                consumers.insert(key, h);
            }
        }
        let mut schedules = self.schedules.lock();
        schedules.retain(|k, h| wanted_schedules.get(k) == Some(&h.spec));
        for (key, spec) in wanted_schedules {
            if schedules.contains_key(&key) {
                continue;
            }
            let h = schedule::start(&key.0, spec, self.shared.clone());
            schedules.insert(key, h);
        }
    }

    /// Stops every consumer and schedule (at shutdown): no new deliveries
    /// start; running ones finish and settle.
    pub fn stop_consumers(&self) {
        self.shared.consumers.lock().clear();
        self.schedules.lock().clear();
    }

    /// Waits until every write submitted so far (settlements included) is
    /// committed.
    pub async fn flush(&self) {
        let _ = self.shared.writer.call(EventOp::Settle(Vec::new())).await;
    }

    /// Sends a message to a queue of an app.
    pub async fn send(&self, app: &str, queue: &str, msg: Outgoing) -> Result<Receipt, EventError> {
        self.shared.send(app, queue, msg).await
    }

    /// Publishes a message to a topic: one copy per subscriber.
    pub async fn publish(
        &self,
        app: &str,
        topic: &str,
        msg: Outgoing,
    ) -> Result<Vec<Receipt>, EventError> {
        self.shared.publish(app, topic, msg).await
    }

    /// Largest body an async invocation may carry.
    pub fn max_message_bytes(&self) -> u64 {
        self.shared.config.max_message_bytes
    }

    /// Stores an async invocation of `f`: the request as it came (method,
    /// path, headers, body), delivered later with CloudEvents headers added.
    pub async fn invoke_async(
        &self,
        f: &Function,
        req: AsyncRequest<'_>,
        body: Vec<u8>,
    ) -> Result<Receipt, EventError> {
        let AsyncRequest {
            method,
            path,
            headers,
            route,
            params,
            caller,
        } = req;
        self.shared
            .size_check(None, "an async invocation", body.len())?;
        let mut kept = Vec::new();
        // Kept as pseudo-headers (never sent as headers) for the delivery.
        if let Some(r) = route {
            kept.push((":route".to_string(), r.to_string()));
        }
        for (k, v) in params {
            kept.push((format!(":param:{k}"), v.clone()));
        }
        if let Some(c) = caller {
            kept.push((":auth-kind".to_string(), c.kind.to_string()));
            kept.push((":auth-subject".to_string(), c.subject.clone()));
            if let Some(claims) = &c.claims {
                kept.push((":auth-claims".to_string(), claims.clone()));
            }
        }
        let mut msg = Outgoing {
            body,
            ..Default::default()
        };
        for (name, value) in headers {
            let n = name.as_str();
            let hop = matches!(
                n,
                "connection"
                    | "keep-alive"
                    | "transfer-encoding"
                    | "te"
                    | "trailer"
                    | "upgrade"
                    | "content-length"
                    | "prefer"
                    | "proxy-connection"
            );
            // Caller credentials are never stored: a route's policy has
            // verified them already and passes the caller (above) instead.
            if hop || n.starts_with("ce-") || nimbus_core::record::is_credential_header(n) {
                continue;
            }
            if n == "idempotency-key" {
                msg.idempotency_key = value.to_str().ok().map(String::from);
            }
            if let Ok(v) = value.to_str() {
                kept.push((n.to_string(), v.to_string()));
            }
        }
        msg.check()?;
        let m = self.shared.message(
            &f.app,
            &Channel::Async(f.name.clone()),
            method,
            path,
            kept,
            msg,
        );
        Ok(self.shared.store_messages(vec![m]).await?.remove(0))
    }

    /// The storage events an object change causes (one per matching
    /// trigger of the bucket's app), to store in the change's own
    /// transaction (`Store::put_object`, `Store::delete_object`); then
    /// [`Events::stored`] wakes their consumers.
    pub fn storage_messages(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        kind: &str,
        size: u64,
        etag: &str,
    ) -> Vec<NewMessage> {
        let Some(active) = self.shared.apps.load().get(app).cloned() else {
            return Vec::new();
        };
        let mut msgs = Vec::new();
        for t in active
            .spec
            .storage_triggers
            .iter()
            .filter(|t| t.bucket == bucket && t.wants(kind, key))
        {
            let body = serde_json::json!({
                "bucket": bucket, "key": key, "event": kind, "size": size, "etag": etag,
            });
            let msg = Outgoing {
                body: body.to_string().into_bytes(),
                content_type: Some("application/json".into()),
                ce_type: Some(format!("dev.nimbus.storage.object.{kind}")),
                extensions: vec![("subject".into(), percent_encode(key))],
                ..Default::default()
            };
            let channel = Channel::Storage {
                bucket: bucket.to_string(),
                function: t.function.clone(),
            };
            msgs.push(
                self.shared
                    .message(app, &channel, "POST", "/", Vec::new(), msg),
            );
        }
        msgs
    }

    /// Wakes the consumers of messages just committed by another writer
    /// (storage events stored with their object change).
    pub fn stored(&self, msgs: &[NewMessage]) {
        let consumers = self.shared.consumers.lock();
        for m in msgs {
            if let Some(h) = consumers.get(&(m.app.clone(), m.channel.clone())) {
                h.notify.notify_one();
            }
        }
    }

    /// Puts dead-lettered messages of a function (all, or `ids`) back in
    /// their queues for a fresh round of attempts.
    pub async fn redrive(
        &self,
        app: &str,
        function: &str,
        ids: Option<&[String]>,
    ) -> Result<u64, EventError> {
        let n = self
            .shared
            .store
            .redrive(app, function, ids)
            .await
            .map_err(|e| EventError::Unavailable(e.to_string()))?;
        self.shared.notify_app(app);
        Ok(n)
    }
}

async fn maintain(shared: std::sync::Weak<Shared>, stop: CancellationToken) {
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(MAINTENANCE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        ticks += 1;
        match shared.store.expire_leases().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    messages = n,
                    "leases ran out; the messages will be delivered again"
                );
                for h in shared.consumers.lock().values() {
                    h.notify.notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "expiring leases failed"),
        }
        if ticks.is_multiple_of(60) {
            let before = now_us() - shared.config.keep_succeeded.as_micros() as i64;
            if let Err(e) = shared.store.prune_messages(before).await {
                tracing::error!(error = %e, "pruning messages failed");
            }
        }
    }
}
