//! What the platform remembers about each invocation: the record (timings,
//! bytes, outcome, captured output, trace ids), the input kept when it
//! failed ([`StoredInput`]), the calls its guest made to Nimbus's services
//! ([`Service`], counted in [`OpCounts`], the first [`MAX_OP_SPANS`] kept
//! as [`OpSpan`]s), and the redaction rules shared by every writer of
//! records: [`is_credential_header`] and [`redact_query`].

use serde::{Deserialize, Serialize};

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The guest produced a response (whatever its status).
    Ok,
    /// The guest trapped or panicked.
    Trap,
    /// The guest hit its memory limit.
    MemoryLimit,
    /// The guest ran past its time limit and was stopped.
    Timeout,
    /// The platform could not run the guest (e.g. its code failed to load).
    Error,
}

impl Outcome {
    /// Stable lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Trap => "trap",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }

    /// Parses [`Outcome::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "ok" => Outcome::Ok,
            "trap" => Outcome::Trap,
            "memory_limit" => Outcome::MemoryLimit,
            "timeout" => Outcome::Timeout,
            "error" => Outcome::Error,
            _ => return None,
        })
    }
}

/// One finished invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Invocation id (UUIDv7, time-ordered).
    pub id: String,
    /// App name.
    pub app: String,
    /// Function name.
    pub function: String,
    /// Revision that served it.
    pub revision: i64,
    /// What started it: `http` or `invoke` (direct call through the control API).
    pub trigger: String,
    /// Request method.
    pub method: String,
    /// Request path and query.
    pub path: String,
    /// Start, in microseconds since the Unix epoch.
    pub started_at_us: i64,
    /// Duration until the guest finished, in microseconds.
    pub duration_us: i64,
    /// HTTP status the client received.
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// Error message for a failed invocation.
    pub error: Option<String>,
    /// Request body bytes read by the guest.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Event delivered, when an event triggered it (its CloudEvents `id`).
    #[serde(default)]
    pub event_id: Option<String>,
    /// Attempt number of that event (1-based; 0 for plain requests).
    #[serde(default)]
    pub attempt: u32,
    /// The function's memory limit (MiB): what an invocation is billed for.
    #[serde(default)]
    pub memory_mb: u32,
    /// The most linear memory the instance had, in bytes.
    #[serde(default)]
    pub peak_memory_bytes: u64,
    /// Whether the function's code had to be loaded (compiled or read from
    /// the disk cache) for this invocation, rather than found in memory.
    #[serde(default)]
    pub cold: bool,
    /// Trace it belongs to (32 hex digits).
    #[serde(default)]
    pub trace_id: String,
    /// Its own span (16 hex digits).
    #[serde(default)]
    pub span_id: String,
    /// The span that caused it (a caller's, a gateway's, a producer's).
    #[serde(default)]
    pub parent_span_id: Option<String>,
    /// The request, kept for failed invocations so they can be replayed.
    #[serde(default)]
    pub input: Option<Box<StoredInput>>,
    /// Calls the guest made to Nimbus's services (KV, documents, objects,
    /// events), counted exactly.
    #[serde(default)]
    pub ops: OpCounts,
    /// Spans of those calls (the first [`MAX_OP_SPANS`]), children of this
    /// invocation's span.
    #[serde(default)]
    pub op_spans: Vec<OpSpan>,
    /// Captured stdout (bounded).
    pub stdout: String,
    /// Captured stderr (bounded).
    pub stderr: String,
}

impl InvocationRecord {
    /// Whether it failed: it did not end `ok` (trap, timeout, memory limit,
    /// platform error), or answered a 5xx.
    pub fn failed(&self) -> bool {
        self.outcome != Outcome::Ok || self.status >= 500
    }
}

/// Most operation spans kept per invocation; the rest are only counted.
pub const MAX_OP_SPANS: usize = 256;

/// The backend service an operation used, for metering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Key-value stores.
    Kv,
    /// Document collections.
    Docs,
    /// Object storage (buckets).
    Objects,
    /// Queue sends and topic publishes.
    Events,
    /// Sends, closes, subscriptions and publishes on WebSocket
    /// connections and channels.
    Realtime,
}

impl Service {
    /// Every service, in a fixed order.
    pub const ALL: [Service; 5] = [
        Service::Kv,
        Service::Docs,
        Service::Objects,
        Service::Events,
        Service::Realtime,
    ];

    /// Stable lowercase name, as in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Kv => "kv",
            Service::Docs => "docs",
            Service::Objects => "objects",
            Service::Events => "events",
            Service::Realtime => "realtime",
        }
    }
}

/// Operations on Nimbus's services, counted per service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Key-value operations.
    pub kv: u64,
    /// Document operations.
    pub docs: u64,
    /// Object storage operations.
    pub objects: u64,
    /// Messages sent or published.
    pub events: u64,
    /// Operations on WebSocket connections and channels.
    #[serde(default)]
    pub realtime: u64,
}

impl OpCounts {
    /// Counts one operation on `service`.
    pub fn add(&mut self, service: Service, n: u64) {
        match service {
            Service::Kv => self.kv += n,
            Service::Docs => self.docs += n,
            Service::Objects => self.objects += n,
            Service::Events => self.events += n,
            Service::Realtime => self.realtime += n,
        }
    }

    /// The count of one service.
    pub fn get(&self, service: Service) -> u64 {
        match service {
            Service::Kv => self.kv,
            Service::Docs => self.docs,
            Service::Objects => self.objects,
            Service::Events => self.events,
            Service::Realtime => self.realtime,
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == OpCounts::default()
    }
}

/// One call a guest made to a Nimbus service, as a span of its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpSpan {
    /// Its span id (16 hex digits); its parent is the invocation's span.
    pub span_id: String,
    /// The service.
    pub service: Service,
    /// The operation, e.g. `get`, `query`, `put`, `send`.
    pub op: String,
    /// What it worked on: a store, collection, bucket, queue or topic.
    pub target: String,
    /// Start, µs since the Unix epoch.
    pub started_at_us: i64,
    /// Duration, µs.
    pub duration_us: i64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// The request of a failed invocation, as kept for replay: credentials
/// removed, the app's secret values redacted, the body bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInput {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, without credentials (`authorization`, `cookie`,
    /// `proxy-authorization`, `x-api-key`) or `nimbus-*` ones.
    pub headers: Vec<(String, String)>,
    /// The body the guest read, up to the server's limit.
    pub body: Vec<u8>,
    /// Whether `body` is the whole body (the guest read it all, within the
    /// limit).
    pub complete: bool,
}

/// Request headers never kept for replay.
pub fn is_credential_header(name: &str) -> bool {
    matches!(
        name,
        "authorization" | "cookie" | "proxy-authorization" | "x-api-key"
    ) || name.starts_with("nimbus-")
}

/// Query parameters whose values are credentials (tokens, keys,
/// passwords, signatures): records and replay inputs keep them as
/// `[redacted]`.
const CREDENTIAL_PARAMS: &[&str] = &[
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "client_secret",
    "code",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
];

/// Replaces the values of credential query parameters in a path and query
/// with `[redacted]` (a path without a query is left as it is, unread).
pub fn redact_query(path: &mut String) {
    let Some((base, query)) = path.split_once('?') else {
        return;
    };
    let secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        CREDENTIAL_PARAMS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
            && pair.contains('=')
    };
    if !query.split('&').any(secret) {
        return;
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}=[redacted]"),
            _ => pair.to_string(),
        })
        .collect();
    *path = format!("{base}?{}", query.join("&"));
}

/// One block of guest output, as `nimbus logs` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log; entries after a `seq` are newer.
    pub seq: i64,
    /// Invocation that wrote it.
    pub invocation_id: String,
    /// App name.
    pub app: String,
    /// Function name.
    pub function: String,
    /// Time the invocation started, microseconds since the Unix epoch.
    pub at_us: i64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text written.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_query_parameters_are_redacted() {
        let mut p = "/cb?state=1&code=abc&Access_Token=t0k&x=2&key".to_string();
        redact_query(&mut p);
        assert_eq!(
            p,
            "/cb?state=1&code=[redacted]&Access_Token=[redacted]&x=2&key"
        );
        let mut p = "/plain?q=rust".to_string();
        redact_query(&mut p);
        assert_eq!(p, "/plain?q=rust");
        let mut p = "/no-query".to_string();
        redact_query(&mut p);
        assert_eq!(p, "/no-query");
    }
}
