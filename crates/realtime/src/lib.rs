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

mod connection;
mod handshake;

use bytes::Bytes;
use nimbus_core::realtime::SocketSpec;
use nimbus_runtime::{ActiveApp, Function, ResponseBody, Runtime};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// nothing (not even a pong) for two of these is dropped.
    pub ping_interval: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            max_connections: 20_000,
            max_app_connections: 10_000,
            send_buffer_bytes: 1 << 20,
            ping_interval: Duration::from_secs(30),
        }
    }
}

/// One WebSocket route of an active revision, with its functions.
pub struct SocketRoute {
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
    pub fn new(app: &ActiveApp, spec: &SocketSpec) -> Result<SocketRoute, String> {
        let function = |name: &str| {
            app.functions.get(name).cloned().ok_or_else(|| {
                format!(
                    "websocket route {:?} points at unknown function {name:?}",
                    spec.path
                )
            })
        };
        Ok(SocketRoute {
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
    app: Arc<str>,
    route: Arc<str>,
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
            route: self.route.to_string(),
            path: self.path.clone(),
            opened_at_ms: self.opened_at_ms,
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
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
    /// admitted it): 101 and the connection, or the refusal (the connect
    /// function's non-2xx answer, 426 for a request that is not a
    /// WebSocket upgrade, 503 past a connection cap).
    pub async fn upgrade<B>(
        self: &Arc<Self>,
        route: &Arc<SocketRoute>,
        req: http::Request<B>,
        params: Vec<(String, String)>,
        caller: Option<nimbus_runtime::Caller>,
    ) -> http::Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        connection::upgrade(self, route, req, params, caller).await
    }

    /// Reserves a place for a new connection of `app`, or says which cap
    /// refuses it.
    fn reserve(&self, app: &Arc<str>) -> Result<(), String> {
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
        Ok(())
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

    fn list_conn(&self, conn: Arc<Conn>) {
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

    /// Closes every connection of `app` (it was deleted): 1001.
    pub fn close_app(&self, app: &str) {
        for c in self.open.lock().by_id.values() {
            if &*c.app == app {
                c.close(CloseCode::Away, "the app was deleted".into());
            }
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
