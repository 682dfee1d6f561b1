//! Invocation records as the API shows them (`/v1/apps/{app}/invocations`,
//! traces, events' attempts).

use nimbus_core::Outcome;
use serde::{Deserialize, Serialize};

/// A stored invocation (without its logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
