//! The bodies of WebSocket connections' endpoints
//! (`/v1/apps/{app}/connections`).

use serde::{Deserialize, Serialize};

/// `GET /v1/apps/{app}/connections`: one open connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Its id (`nimbus-connection-id`).
    pub id: String,
    /// The node that holds it.
    pub node: String,
    /// The route pattern it came through.
    pub route: String,
    /// The path it asked for.
    pub path: String,
    /// When it opened, in milliseconds since the Unix epoch.
    pub opened_at_ms: u64,
    /// Messages received from the client (only the node that holds it
    /// counts them: `null` in another node's list).
    pub messages_in: Option<u64>,
    /// Messages sent to the client (likewise).
    pub messages_out: Option<u64>,
    /// The channels it is subscribed to (likewise).
    pub channels: Option<Vec<String>>,
}
