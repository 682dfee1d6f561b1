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

/// A span of a guest's operation (KV, documents, objects, sends), as
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// `GET /v1/traces/{id}`: a trace's invocations the caller may read, and
/// their guests' operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<InvocationRow>,
    pub operations: Vec<OpSpanRow>,
}

/// A request as kept for replay: the body base64-encoded, no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptInput {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_base64: String,
    /// Whether the body is whole (the guest read it all, within the limit).
    pub complete: bool,
}

/// `GET /v1/apps/{app}/invocations/{id}/input`: what a local replay needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptInvocation {
    pub input: KeptInput,
    /// Its record (`None` once pruned).
    pub original: Option<InvocationRow>,
    /// Its function's spec at the revision that served it.
    pub function: Option<nimbus_core::FunctionSpec>,
}

/// A line of an invocation's captured output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

/// One run of an invocation, as `nimbus replay` compares them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Its invocation id (`None` for a run on the developer's machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// The revision that ran it (`None` for a local component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// HTTP status answered.
    pub status: u16,
    /// How it ended (`None` if its record is not stored).
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    /// The response body, for a replay (up to a limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub logs: Vec<LogLine>,
}

/// `POST /v1/apps/{app}/invocations/{id}/replay`: the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Revision to run against (default: the active one).
    #[serde(default)]
    pub revision: Option<i64>,
}

/// `POST /v1/apps/{app}/invocations/{id}/replay`: both runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    pub original: Run,
    pub replay: Run,
    /// Whether the kept body was whole (if not, the replay saw less).
    pub input_complete: bool,
}
