//! WebSocket routes, in the shape of API Gateway's WebSocket APIs: the
//! gateway holds the connection, and each event on it invokes a function
//! on a fresh instance, with plain HTTP request semantics.
//!
//! - **connect**: the upgrade request itself (`GET`, its headers, route
//!   parameters, the caller the route's policy verified) plus the trusted
//!   `nimbus-connection-id` header. A non-2xx answer refuses the upgrade
//!   with that answer; a 2xx one may pick a subprotocol
//!   (`Sec-WebSocket-Protocol`).
//! - **message**: each text or binary message, in order, one at a time per
//!   connection (`POST` to the connection's path, the message as the body,
//!   `nimbus-message-type: text|binary`). A 2xx answer with a body is sent
//!   back on the connection.
//! - **disconnect**: once the connection has ended, whichever side closed
//!   it (`DELETE`, `nimbus-close-code` and `nimbus-close-reason`).
//!
//! [`Realtime`] is a node's registry of open connections: it sends to one
//! ([`Realtime::send`]), closes one, lists an app's, subscribes one to a
//! **channel** and publishes to a channel (every subscribed connection of
//! the app gets the message), and closes them all at the node's stop
//! ([`Realtime::shutdown`]). Functions reach the same operations through
//! the `nimbus:realtime` host interface ([`Sockets`]), the control API
//! through `nimbus-control`.
//!
//! On PostgreSQL, several nodes share the apps, each holding its own
//! connections: [`Realtime::join_cluster`] records which node holds each
//! one, relays an operation on a connection held elsewhere to its node,
//! and every publish to every node (`relay.rs`).
//!
//! Invariants:
//! - A connection belongs to one app; every operation names the app and
//!   finds nothing of another's.
//! - Memory per connection is bounded: a client may send at most
//!   `max_message_kb` per message (a larger one closes with 1009), its next
//!   message is not read until the function has answered the last one, and
//!   at most `send_buffer_bytes` wait to be written to it; a client that
//!   reads too slowly for that is cut off with 1008, and the sender is told.
//! - The node holds at most `max_connections`, an app at most
//!   `max_app_connections`; an upgrade past either is refused with 503.
//!   A place is given back when its connection's task ends, however.
//! - A connection belongs to the revision it connected to: when the app is
//!   served by another (a deploy, a rollback, a deletion, a new app of the
//!   same name), it closes with 1012 and the client connects again.
//! - No write waits on a client for longer than the ping interval.
//! - A message sent or published is at most `send_buffer_bytes`; a
//!   connection is in at most [`MAX_CHANNELS_PER_CONNECTION`] channels, and
//!   a channel reaches the connections of its own app only.

mod connection;
mod guest;
mod guest3;
mod handshake;
mod relay;

pub use guest::Sockets;

use bytes::Bytes;
use nimbus_core::realtime::SocketSpec;
use nimbus_runtime::{ActiveApp, Function, ResponseBody, Runtime};
use nimbus_store::{RecordWriter, SocketUsage};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use connection::CloseCode;
pub use nimbus_api::ConnectionInfo;
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

/// How often open connections' time and messages are metered.
pub const METER_EVERY: Duration = Duration::from_secs(60);

/// The channels one connection may be subscribed to at once.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 64;

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_NAME: usize = 128;

/// A node's limits on WebSocket connections.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// Open connections on the node, all apps together.
    pub max_connections: usize,
    /// Open connections of one app on the node.
    pub max_app_connections: usize,
    /// Bytes that may wait to be written to one connection.
    pub send_buffer_bytes: usize,
    /// How often an idle connection is pinged; a connection that has sent
    /// nothing (not even a pong) for two of these is dropped, and so is
    /// one whose client has not taken a write for one of these.
    pub ping_interval: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            max_connections: 20_000,
            max_app_connections: 5_000,
            send_buffer_bytes: 256 << 10,
            ping_interval: Duration::from_secs(30),
        }
    }
}

/// One WebSocket route of an active revision, with its functions.
pub struct SocketRoute {
    /// The revision it belongs to: its connections close when the app is
    /// served by another (a deploy, a rollback, a deletion, a new app of
    /// the same name).
    owner: Weak<ActiveApp>,
    /// The pattern as the user wrote it.
    pub pattern: Arc<str>,
    /// Invoked at the upgrade.
    pub connect: Option<Arc<Function>>,
    /// Invoked with each message.
    pub message: Arc<Function>,
    /// Invoked when the connection has ended.
    pub disconnect: Option<Arc<Function>>,
    /// Largest message a client may send.
    pub max_message_bytes: usize,
    /// Closed after this long without a message either way.
    pub idle_timeout: Duration,
}

impl SocketRoute {
    /// The route `spec` of `app`, its functions looked up in the revision.
    pub fn new(app: &Arc<ActiveApp>, spec: &SocketSpec) -> Result<SocketRoute, String> {
        let function = |name: &str| {
            app.functions.get(name).cloned().ok_or_else(|| {
                format!(
                    "websocket route {:?} points at unknown function {name:?}",
                    spec.path
                )
            })
        };
        Ok(SocketRoute {
            owner: Arc::downgrade(app),
            pattern: spec.path.as_str().into(),
            connect: spec.connect.as_deref().map(function).transpose()?,
            message: function(&spec.message)?,
            disconnect: spec.disconnect.as_deref().map(function).transpose()?,
            max_message_bytes: spec.max_message_bytes as usize,
            idle_timeout: Duration::from_millis(spec.idle_timeout_ms),
        })
    }

    /// The app it belongs to.
    pub fn app(&self) -> &Arc<str> {
        self.message.app_name()
    }

    /// Whether `current` (the app's entry in the route table now) is the
    /// revision this route belongs to.
    pub fn is_current(&self, current: Option<&Arc<ActiveApp>>) -> bool {
        current.is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), self.owner.as_ptr()))
    }
}

/// A message to send on a connection (cheap to clone: a publish hands
/// one to every subscriber).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Outgoing {
    /// A text message.
    pub fn text(t: impl Into<String>) -> Outgoing {
        Outgoing::Text(t.into().into())
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Outgoing::Text(t) => t.len(),
            Outgoing::Binary(b) => b.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a send or close did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No such open connection of this app on this node.
    #[error(
        "connection {id:?} of app {app:?} is not open (it closed, or never existed): list the open ones with GET /v1/apps/{app}/connections"
    )]
    NotOpen {
        /// The app named.
        app: String,
        /// The connection named.
        id: String,
    },
    /// The connection's send buffer was full: it is being closed.
    #[error(
        "connection {id:?} was cut off: its client reads too slowly (more than {limit} bytes waited to be sent to it)"
    )]
    SlowConsumer {
        /// The connection.
        id: String,
        /// The node's send buffer per connection, in bytes.
        limit: usize,
    },
    /// The message is larger than a connection may have waiting.
    #[error(
        "the message is {len} bytes, over the {limit} bytes a connection may have waiting: send smaller messages"
    )]
    TooLarge {
        /// The message's size.
        len: usize,
        /// The node's send buffer per connection, in bytes.
        limit: usize,
    },
    /// A close code, reason or channel name that is not allowed, or one
    /// channel too many.
    #[error("{0}")]
    Invalid(String),
    /// The node holding the connection could not be reached.
    #[error("{0}")]
    Unavailable(String),
}

/// The registry's side of one open connection.
struct Conn {
    id: Arc<str>,
    /// Its route, which knows the revision it belongs to.
    route: Arc<SocketRoute>,
    app: Arc<str>,
    path: String,
    opened_at_ms: u64,
    /// Messages waiting to be written (a plain queue: no channel's
    /// preallocated block per idle connection), and its wake-up.
    outbox: Mutex<std::collections::VecDeque<Outgoing>>,
    ready: tokio::sync::Notify,
    /// Bytes in `outbox` and being written.
    queued: AtomicUsize,
    /// Cancelled when the connection must close, with `close_with` set.
    closing: CancellationToken,
    close_with: Mutex<Option<(CloseCode, String)>>,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    /// The channels it is subscribed to (under `Realtime::open`'s lock).
    channels: Mutex<Vec<Arc<str>>>,
    /// What was last metered: when, and its message counts then (`None`
    /// until its connect function accepted it: a refused upgrade is not a
    /// connection).
    metered: Mutex<Option<(std::time::Instant, u64, u64)>>,
}

impl Conn {
    /// Asks the connection to close (the first reason given wins).
    fn close(&self, code: CloseCode, reason: String) {
        let mut with = self.close_with.lock();
        if with.is_none() {
            *with = Some((code, reason));
        }
        drop(with);
        self.closing.cancel();
    }

    fn send(&self, msg: Outgoing, limit: usize) -> Result<(), SendError> {
        let not_open = || SendError::NotOpen {
            app: self.app.to_string(),
            id: self.id.to_string(),
        };
        if self.closing.is_cancelled() {
            return Err(not_open());
        }
        let len = msg.len();
        let queued = self.queued.fetch_add(len, Ordering::SeqCst) + len;
        if queued > limit {
            self.queued.fetch_sub(len, Ordering::SeqCst);
            self.close(
                CloseCode::Policy,
                "the client reads too slowly: its send buffer is full".into(),
            );
            metrics::counter!("nimbus_websocket_slow_consumers_total", "app" => self.app.to_string())
                .increment(1);
            return Err(SendError::SlowConsumer {
                id: self.id.to_string(),
                limit,
            });
        }
        self.outbox.lock().push_back(msg);
        self.ready.notify_one();
        Ok(())
    }

    /// Its time and messages since they were last metered.
    fn unmetered(&self) -> SocketUsage {
        let mut last = self.metered.lock();
        let Some((at, was_in, was_out)) = *last else {
            return SocketUsage::default();
        };
        // Read under the lock: two callers cannot meter the same messages.
        let (now, m_in, m_out) = (
            std::time::Instant::now(),
            self.messages_in.load(Ordering::SeqCst),
            self.messages_out.load(Ordering::SeqCst),
        );
        *last = Some((now, m_in.max(was_in), m_out.max(was_out)));
        SocketUsage {
            connection_ms: now.duration_since(at).as_millis() as u64,
            messages_in: m_in.saturating_sub(was_in),
            messages_out: m_out.saturating_sub(was_out),
        }
    }

    fn info(&self, node: &str) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id.to_string(),
            node: node.to_string(),
            route: self.route.pattern.to_string(),
            path: self.path.clone(),
            opened_at_ms: self.opened_at_ms,
            messages_in: Some(self.messages_in.load(Ordering::Relaxed)),
            messages_out: Some(self.messages_out.load(Ordering::Relaxed)),
            channels: Some(self.channels.lock().iter().map(|c| c.to_string()).collect()),
        }
    }
}

/// A place under the connection caps, given back when dropped (with the
/// connection's listing, once it has one), however its task ends.
struct Place {
    realtime: Arc<Realtime>,
    app: Arc<str>,
    id: Option<Arc<str>>,
    /// Whether the cluster was told this node holds it.
    recorded: bool,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.realtime.release(&self.app, self.id.as_ref());
        if self.recorded
            && let (Some(id), Some(relay)) = (&self.id, self.realtime.relay.get())
        {
            relay.forget(id.clone());
        }
    }
}

/// A node's open WebSocket connections.
pub struct Realtime {
    runtime: Arc<Runtime>,
    config: RealtimeConfig,
    open: Mutex<Open>,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The other nodes, once joined (PostgreSQL).
    relay: OnceLock<relay::Relay>,
    /// Where connections' time and messages are metered.
    meter: OnceLock<RecordWriter>,
}

#[derive(Default)]
struct Open {
    by_id: HashMap<Arc<str>, Arc<Conn>>,
    per_app: HashMap<Arc<str>, usize>,
    /// The subscribed connections of each channel, by (app, channel).
    channels: HashMap<ChannelKey, HashSet<Arc<str>>>,
}

/// A channel: its app and its name.
type ChannelKey = (Arc<str>, Arc<str>);

impl Open {
    /// The open connection `id`, if it is `app`'s.
    fn conn(&self, app: &str, id: &str) -> Result<Arc<Conn>, SendError> {
        self.by_id
            .get(id)
            .filter(|c| &*c.app == app)
            .cloned()
            .ok_or_else(|| not_open(app, id))
    }
}

impl Realtime {
    /// An empty registry whose connections invoke functions on `runtime`.
    pub fn new(runtime: Arc<Runtime>, config: RealtimeConfig) -> Arc<Realtime> {
        Arc::new(Realtime {
            runtime,
            config,
            open: Mutex::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            relay: OnceLock::new(),
            meter: OnceLock::new(),
        })
    }

    /// Meters connections' time and messages into `records` from now on:
    /// a connection's when it ends, and every open one's each
    /// [`METER_EVERY`] (so a long connection counts in the hours it
    /// spans).
    pub fn meter_into(self: &Arc<Self>, records: RecordWriter) {
        if self.meter.set(records).is_err() {
            return;
        }
        let weak = Arc::downgrade(self);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(METER_EVERY) => {}
                }
                let Some(rt) = weak.upgrade() else { return };
                let conns: Vec<Arc<Conn>> = rt.open.lock().by_id.values().cloned().collect();
                let mut per_app: HashMap<Arc<str>, SocketUsage> = HashMap::new();
                for c in conns {
                    per_app.entry(c.app.clone()).or_default().add(c.unmetered());
                }
                if let Some(records) = rt.meter.get() {
                    for (app, u) in per_app {
                        records.meter_sockets(&app, u);
                    }
                }
            }
        });
    }

    /// Joins the nodes sharing `store` (PostgreSQL; on the embedded
    /// database this node holds every connection and nothing is done):
    /// forgets the connections it was recorded to hold before (it may have
    /// stopped without forgetting them), then records each it holds and
    /// listens for operations relayed to it.
    pub async fn join_cluster(self: &Arc<Self>, store: nimbus_store::Store) -> anyhow::Result<()> {
        if store.backend() != nimbus_store::Backend::Postgres {
            return Ok(());
        }
        relay::Relay::join(self, store).await
    }

    /// This node's id, as connection lists name it.
    fn node(&self) -> &str {
        self.relay.get().map_or("local", |r| r.node())
    }

    /// Its limits.
    pub fn config(&self) -> &RealtimeConfig {
        &self.config
    }

    /// Answers an upgrade request for `route` (after the route's policy
    /// admitted it): 101 and the new connection's id, or the refusal (the
    /// connect function's non-2xx answer, 426 for a request that is not a
    /// WebSocket upgrade, 503 past a connection cap).
    pub async fn upgrade<B>(
        self: &Arc<Self>,
        route: &Arc<SocketRoute>,
        req: http::Request<B>,
        params: Vec<(String, String)>,
        caller: Option<nimbus_runtime::Caller>,
    ) -> (http::Response<ResponseBody>, Option<Arc<str>>)
    where
        B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        connection::upgrade(self, route, req, params, caller).await
    }

    /// Reserves a place for a new connection of `app`, or says which cap
    /// refuses it.
    fn reserve(self: &Arc<Self>, app: &Arc<str>) -> Result<Place, String> {
        let mut open = self.open.lock();
        let total: usize = open.per_app.values().sum();
        if total >= self.config.max_connections {
            return Err(format!(
                "this node holds its maximum of {} WebSocket connections: retry later, or on another node",
                self.config.max_connections
            ));
        }
        let n = open.per_app.entry(app.clone()).or_default();
        if *n >= self.config.max_app_connections {
            return Err(format!(
                "app {app:?} holds its maximum of {} WebSocket connections on this node: close some, or retry later",
                self.config.max_app_connections
            ));
        }
        *n += 1;
        metrics::gauge!("nimbus_websocket_connections", "app" => app.to_string()).increment(1.0);
        Ok(Place {
            realtime: self.clone(),
            app: app.clone(),
            id: None,
            recorded: false,
        })
    }

    /// Gives back a place reserved for `app` (its connection ended or
    /// never opened), and forgets the connection `id` if it was listed.
    fn release(&self, app: &Arc<str>, id: Option<&Arc<str>>) {
        let mut open = self.open.lock();
        if let Some(conn) = id.and_then(|id| open.by_id.remove(id)) {
            let u = conn.unmetered();
            if let Some(records) = self.meter.get()
                && u != SocketUsage::default()
            {
                records.meter_sockets(app, u);
            }
            for channel in conn.channels.lock().drain(..) {
                let key = (app.clone(), channel);
                if let Some(subs) = open.channels.get_mut(&key) {
                    subs.remove(&conn.id);
                    if subs.is_empty() {
                        open.channels.remove(&key);
                    }
                }
            }
        }
        if let Some(n) = open.per_app.get_mut(app) {
            *n -= 1;
            if *n == 0 {
                open.per_app.remove(app);
            }
        }
        metrics::gauge!("nimbus_websocket_connections", "app" => app.to_string()).decrement(1.0);
    }

    /// Lists `conn` under its place, which now also unlists it.
    fn list_conn(&self, place: &mut Place, conn: Arc<Conn>) {
        place.id = Some(conn.id.clone());
        self.open.lock().by_id.insert(conn.id.clone(), conn);
    }

    fn find(&self, app: &str, id: &str) -> Result<Arc<Conn>, SendError> {
        check_id(app, id)?;
        self.open.lock().conn(app, id)
    }

    /// Refuses a message no connection could take.
    fn check_size(&self, msg: &Outgoing) -> Result<(), SendError> {
        let limit = self.config.send_buffer_bytes;
        if msg.len() > limit {
            return Err(SendError::TooLarge {
                len: msg.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Queues `msg` for the connection `id` of `app`, on whichever node
    /// holds it.
    pub async fn send(&self, app: &str, id: &str, msg: Outgoing) -> Result<(), SendError> {
        self.check_size(&msg)?;
        match self.find(app, id) {
            Ok(c) => c.send(msg, self.config.send_buffer_bytes),
            Err(not_open) => {
                self.forward(app, id, not_open, relay::Op::send(id, &msg))
                    .await
            }
        }
    }

    /// Closes the connection `id` of `app` with `code` (1000 or 3000–4999)
    /// and `reason` (at most 123 bytes); its disconnect function runs
    /// once it has closed.
    pub async fn close(
        &self,
        app: &str,
        id: &str,
        code: u16,
        reason: &str,
    ) -> Result<(), SendError> {
        if code != 1000 && !(3000..=4999).contains(&code) {
            return Err(SendError::Invalid(format!(
                "close code {code} is not one an app may send: use 1000, or 3000-4999"
            )));
        }
        if reason.len() > 123 {
            return Err(SendError::Invalid(format!(
                "the close reason is {} bytes; a close frame carries at most 123",
                reason.len()
            )));
        }
        match self.find(app, id) {
            Ok(c) => {
                c.close(CloseCode::from(code), reason.to_string());
                Ok(())
            }
            Err(not_open) => {
                let op = relay::Op::Close {
                    id: id.to_string(),
                    code,
                    reason: reason.to_string(),
                };
                self.forward(app, id, not_open, op).await
            }
        }
    }

    /// Subscribes the connection `id` of `app` to `channel` (of `app`):
    /// it gets every message published there until it closes or
    /// unsubscribes. Subscribing twice is once.
    pub async fn subscribe(&self, app: &str, id: &str, channel: &str) -> Result<(), SendError> {
        check_channel(channel)?;
        match self.subscribe_local(app, id, channel) {
            Err(not_open @ SendError::NotOpen { .. }) => {
                let op = relay::Op::Subscribe {
                    id: id.to_string(),
                    channel: channel.to_string(),
                };
                self.forward(app, id, not_open, op).await
            }
            r => r,
        }
    }

    /// Unsubscribes the connection `id` of `app` from `channel` (not
    /// subscribed: nothing to do).
    pub async fn unsubscribe(&self, app: &str, id: &str, channel: &str) -> Result<(), SendError> {
        check_channel(channel)?;
        match self.unsubscribe_local(app, id, channel) {
            Err(not_open) => {
                let op = relay::Op::Unsubscribe {
                    id: id.to_string(),
                    channel: channel.to_string(),
                };
                self.forward(app, id, not_open, op).await
            }
            Ok(()) => Ok(()),
        }
    }

    /// Queues `msg` for every connection of `app` subscribed to `channel`,
    /// on every node. A subscriber too slow to take it is cut off (1008);
    /// the others get it.
    pub async fn publish(&self, app: &str, channel: &str, msg: Outgoing) -> Result<(), SendError> {
        check_channel(channel)?;
        self.check_size(&msg)?;
        let op = self.relay.get().map(|_| relay::Op::publish(channel, &msg));
        self.publish_local(app, channel, msg);
        if let (Some(relay), Some(op)) = (self.relay.get(), op) {
            relay.send(None, app, op).await.map_err(|e| {
                SendError::Unavailable(format!("{e} (this node's subscribers got it)"))
            })?;
        }
        Ok(())
    }

    /// Relays `op` on the connection `id` of `app`, which this node does
    /// not hold, to the node that does (`not_open` if none does).
    async fn forward(
        &self,
        app: &str,
        id: &str,
        not_open: SendError,
        op: relay::Op,
    ) -> Result<(), SendError> {
        let Some(relay) = self.relay.get() else {
            return Err(not_open);
        };
        check_id(app, id)?;
        match relay.holder(app, id).await {
            Ok(Some(node)) if node != relay.node() => relay
                .send(Some(node), app, op)
                .await
                .map_err(SendError::Unavailable),
            Ok(_) => Err(not_open),
            Err(e) => Err(SendError::Unavailable(e)),
        }
    }

    fn subscribe_local(&self, app: &str, id: &str, channel: &str) -> Result<(), SendError> {
        check_id(app, id)?;
        let mut open = self.open.lock();
        let conn = open.conn(app, id)?;
        let mut channels = conn.channels.lock();
        if channels.iter().any(|c| &**c == channel) {
            return Ok(());
        }
        if channels.len() >= MAX_CHANNELS_PER_CONNECTION {
            return Err(SendError::Invalid(format!(
                "connection {id:?} is already subscribed to {MAX_CHANNELS_PER_CONNECTION} channels, the most one may be: unsubscribe it from one first"
            )));
        }
        let channel: Arc<str> = channel.into();
        channels.push(channel.clone());
        open.channels
            .entry((conn.app.clone(), channel))
            .or_default()
            .insert(conn.id.clone());
        Ok(())
    }

    fn unsubscribe_local(&self, app: &str, id: &str, channel: &str) -> Result<(), SendError> {
        check_id(app, id)?;
        let mut open = self.open.lock();
        let conn = open.conn(app, id)?;
        conn.channels.lock().retain(|c| &**c != channel);
        let key: ChannelKey = (conn.app.clone(), channel.into());
        if let Some(subs) = open.channels.get_mut(&key) {
            subs.remove(&conn.id);
            if subs.is_empty() {
                open.channels.remove(&key);
            }
        }
        Ok(())
    }

    /// Queues `msg` for this node's subscribers to `channel` of `app`;
    /// returns how many took it.
    fn publish_local(&self, app: &str, channel: &str, msg: Outgoing) -> usize {
        let subscribers: Vec<Arc<Conn>> = {
            let open = self.open.lock();
            match open.channels.get(&(Arc::from(app), Arc::from(channel))) {
                None => return 0,
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| open.by_id.get(id).cloned())
                    .collect(),
            }
        };
        let limit = self.config.send_buffer_bytes;
        subscribers
            .iter()
            .filter(|c| c.send(msg.clone(), limit).is_ok())
            .count()
    }

    /// The open connections of `app`, oldest first: this node's, and on
    /// PostgreSQL the other live nodes' (at most `limit` of those).
    pub async fn list(&self, app: &str, limit: usize) -> Result<Vec<ConnectionInfo>, SendError> {
        let mut out = self.list_local(app);
        if let Some(relay) = self.relay.get() {
            out.extend(
                relay
                    .listed(app, limit)
                    .await
                    .map_err(SendError::Unavailable)?,
            );
        }
        out.sort_by(|a, b| (a.opened_at_ms, &a.id).cmp(&(b.opened_at_ms, &b.id)));
        out.truncate(limit);
        Ok(out)
    }

    /// The open connections of `app` on this node.
    fn list_local(&self, app: &str) -> Vec<ConnectionInfo> {
        // The node-wide lock is held only to take the app's connections.
        let conns: Vec<Arc<Conn>> = self
            .open
            .lock()
            .by_id
            .values()
            .filter(|c| &*c.app == app)
            .cloned()
            .collect();
        let node = self.node();
        conns.iter().map(|c| c.info(node)).collect()
    }

    /// Open connections on this node, all apps together.
    pub fn count(&self) -> usize {
        self.open.lock().per_app.values().sum()
    }

    /// Closes (1012) every connection whose app is no longer served by
    /// the revision it connected to: `current` gives each app's entry in
    /// the route table now. Called after every table swap.
    pub fn close_stale(&self, current: impl Fn(&str) -> Option<Arc<ActiveApp>>) {
        for c in self.open.lock().by_id.values() {
            if !c.route.is_current(current(&c.app).as_ref()) {
                c.close(
                    CloseCode::Restart,
                    "the app was redeployed or deleted: connect again".into(),
                );
            }
        }
    }

    /// Closes (1012) the connection `id` of `route` unless `current` is
    /// still its revision (it may have been swapped out while the
    /// connection was being set up).
    pub fn close_if_stale(&self, route: &SocketRoute, id: &str, current: Option<&Arc<ActiveApp>>) {
        if !route.is_current(current)
            && let Ok(c) = self.find(route.app(), id)
        {
            c.close(
                CloseCode::Restart,
                "the app was redeployed or deleted: connect again".into(),
            );
        }
    }

    /// Closes every connection (1001, the node is stopping) and waits up
    /// to `drain` for their disconnect functions.
    pub async fn shutdown(&self, drain: Duration) {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(drain, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.count(),
                "WebSocket connections still closing after {drain:?}: left"
            );
        }
    }
}

fn not_open(app: &str, id: &str) -> SendError {
    SendError::NotOpen {
        app: app.to_string(),
        id: short(id).to_string(),
    }
}

/// Refuses, as not open, what is not a connection id (32 lowercase hex
/// digits), before any lookup.
fn check_id(app: &str, id: &str) -> Result<(), SendError> {
    let ok = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok { Ok(()) } else { Err(not_open(app, id)) }
}

/// At most 64 bytes of what a caller named, cut at a character boundary
/// (for errors and op spans).
pub(crate) fn short(s: &str) -> &str {
    connection::truncate(s, 64)
}

/// Refuses a channel name that is empty, too long, or not made of
/// letters, digits and `-_.:/@`.
fn check_channel(channel: &str) -> Result<(), SendError> {
    let ok = !channel.is_empty()
        && channel.len() <= MAX_CHANNEL_NAME
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SendError::Invalid(format!(
            "{:?} is not a channel name: use 1 to {MAX_CHANNEL_NAME} letters, digits and -_.:/@",
            short(channel)
        )))
    }
}
