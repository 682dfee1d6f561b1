//! The usage API's bodies (`/v1/usage`, `/v1/apps/{app}/usage`): metered
//! invocations, operations and storage, with cost estimates at the
//! operator's prices.

use serde::{Deserialize, Serialize};

/// The prices cost estimates use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub currency: String,
    /// One GB-second (memory limit × duration).
    pub per_gb_second: f64,
    pub per_million_requests: f64,
    /// One million operations on KV, documents, objects, events or
    /// realtime.
    pub per_million_operations: f64,
    /// One GB stored for a month (730 hours).
    pub per_gb_month: f64,
    /// One million WebSocket messages, either way.
    #[serde(default)]
    pub per_million_messages: f64,
    /// One million minutes of WebSocket connection.
    #[serde(default)]
    pub per_million_connection_minutes: f64,
}

/// Operations of guests and clients on each service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operations {
    pub kv: i64,
    pub docs: i64,
    pub objects: i64,
    pub events: i64,
    /// Sends, closes, subscriptions and publishes on WebSocket
    /// connections and channels.
    #[serde(default)]
    pub realtime: i64,
}

/// WebSocket connections' own use (their functions' invocations are
/// counted as those functions').
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebSocketUsage {
    /// Minutes connections were open.
    pub connection_minutes: f64,
    /// Messages clients sent.
    pub messages_in: i64,
    /// Messages sent to clients.
    pub messages_out: i64,
}

/// One line of usage: a function, an hour, a day or an app (`key`), or
/// `total`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageLine {
    pub key: String,
    pub invocations: i64,
    pub errors: i64,
    pub duration_us: i64,
    pub gb_seconds: f64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub cold_starts: i64,
    pub operations: Operations,
    #[serde(default)]
    pub websockets: WebSocketUsage,
    /// The estimate at [`Prices`] (the total's includes storage).
    pub cost: f64,
    /// Storage GB-hours (the total only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gb_hours: Option<f64>,
}

/// Bytes stored, by service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub kv: i64,
    pub docs: i64,
    pub objects: i64,
}

/// One line of storage: an app or a day (`key`), or `total`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageLine {
    pub key: String,
    pub gb_hours: f64,
    pub kv_gb_hours: f64,
    pub docs_gb_hours: f64,
    pub objects_gb_hours: f64,
    /// Stored at the last sample.
    pub stored_bytes: Stored,
    pub cost: f64,
}

/// `GET /v1/usage` and `GET /v1/apps/{app}/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// The app asked for (`None`: every app).
    pub app: Option<String>,
    pub since_us: i64,
    /// `function`, `hour`, `day` or `app`.
    pub by: String,
    pub prices: Prices,
    pub rows: Vec<UsageLine>,
    pub storage: Vec<StorageLine>,
    pub total: UsageLine,
}
