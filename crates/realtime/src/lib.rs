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
//! ([`Realtime::send`]), closes one, lists an app's, and closes them all at
//! the node's stop ([`Realtime::shutdown`]).
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

mod connection;
mod handshake;

use bytes::Bytes;
use nimbus_core::realtime::SocketSpec;
use nimbus_runtime::{ActiveApp, Function, ResponseBody, Runtime};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use connection::CloseCode;

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

/// A message to send on a connection.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Outgoing::Text(t) => t.len(),
            Outgoing::Binary(b) => b.len(),
        }
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
}

/// An open connection, as listed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Its id (`nimbus-connection-id`).
    pub id: String,
    /// The route pattern it came through.
    pub route: String,
    /// The path it asked for.
    pub path: String,
    /// When it opened, in milliseconds since the Unix epoch.
    pub opened_at_ms: u64,
    /// Messages received from the client.
    pub messages_in: u64,
    /// Messages sent to the client.
    pub messages_out: u64,
}

/// The registry's side of one open connection.
struct Conn {
    id: Arc<str>,
    /// Its route, which knows the revision it belongs to.
    route: Arc<SocketRoute>,
    app: Arc<str>,
    path: String,
    opened_at_ms: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Bytes sent to `tx` and not written to the socket yet.
    queued: AtomicUsize,
    /// Cancelled when the connection must close, with `close_with` set.
    closing: CancellationToken,
    close_with: Mutex<Option<(CloseCode, String)>>,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
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
        self.tx.send(msg).map_err(|_| not_open())
    }

    fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id.to_string(),
            route: self.route.pattern.to_string(),
            path: self.path.clone(),
            opened_at_ms: self.opened_at_ms,
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
        }
    }
}

/// A place under the connection caps, given back when dropped (with the
/// connection's listing, once it has one), however its task ends.
struct Place {
    realtime: Arc<Realtime>,
    app: Arc<str>,
    id: Option<Arc<str>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.realtime.release(&self.app, self.id.as_ref());
    }
}

/// A node's open WebSocket connections.
pub struct Realtime {
    runtime: Arc<Runtime>,
    config: RealtimeConfig,
    open: Mutex<Open>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Default)]
struct Open {
    by_id: HashMap<Arc<str>, Arc<Conn>>,
    per_app: HashMap<Arc<str>, usize>,
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
        })
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
        })
    }

    /// Gives back a place reserved for `app` (its connection ended or
    /// never opened), and forgets the connection `id` if it was listed.
    fn release(&self, app: &Arc<str>, id: Option<&Arc<str>>) {
        let mut open = self.open.lock();
        if let Some(id) = id {
            open.by_id.remove(id);
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
        self.open
            .lock()
            .by_id
            .get(id)
            .filter(|c| &*c.app == app)
            .cloned()
            .ok_or_else(|| SendError::NotOpen {
                app: app.to_string(),
                id: id.to_string(),
            })
    }

    /// Queues `msg` for the connection `id` of `app`.
    pub fn send(&self, app: &str, id: &str, msg: Outgoing) -> Result<(), SendError> {
        self.find(app, id)?.send(msg, self.config.send_buffer_bytes)
    }

    /// Closes the connection `id` of `app` with `code` and `reason` (its
    /// disconnect function runs once it has closed).
    pub fn close(&self, app: &str, id: &str, code: u16, reason: &str) -> Result<(), SendError> {
        self.find(app, id)?
            .close(CloseCode::from(code), reason.to_string());
        Ok(())
    }

    /// The open connections of `app` on this node, oldest first.
    pub fn list(&self, app: &str) -> Vec<ConnectionInfo> {
        let mut out: Vec<ConnectionInfo> = self
            .open
            .lock()
            .by_id
            .values()
            .filter(|c| &*c.app == app)
            .map(|c| c.info())
            .collect();
        out.sort_by(|a, b| (a.opened_at_ms, &a.id).cmp(&(b.opened_at_ms, &b.id)));
        out
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
