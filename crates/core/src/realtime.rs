//! WebSocket routes (`[[triggers.websocket]]`), resolved: the gateway holds
//! the connection, and each connect, message and disconnect invokes a
//! function on a fresh instance.

use serde::{Deserialize, Serialize};

/// Default largest message a client may send, in KiB.
pub const DEFAULT_MAX_MESSAGE_KB: u32 = 64;
/// Largest `max_message_kb` a route may ask for.
pub const MAX_MESSAGE_KB: u32 = 1024;
/// Default time a connection may stay without a message either way, in seconds.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 600;
/// Largest `idle_timeout_s` a route may ask for (two hours, API Gateway's
/// ceiling for a connection's whole life).
pub const MAX_IDLE_TIMEOUT_S: u64 = 7_200;

/// One WebSocket route of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketSpec {
    /// Path pattern as the user wrote it (validated).
    pub path: String,
    /// Invoked at the upgrade (`GET`); a non-2xx answer refuses it.
    #[serde(default)]
    pub connect: Option<String>,
    /// Invoked with each message (`POST`, the message as the body).
    pub message: String,
    /// Invoked once the connection has ended (`DELETE`).
    #[serde(default)]
    pub disconnect: Option<String>,
    /// The named policy it uses over the app's `[gateway]` policy.
    #[serde(default)]
    pub policy: Option<String>,
    /// Largest message a client may send; a larger one closes the
    /// connection with 1009.
    pub max_message_bytes: u32,
    /// A connection without a message either way for this long is closed
    /// (pings do not count).
    pub idle_timeout_ms: u64,
}
