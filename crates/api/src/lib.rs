//! The control API's bodies (`/v1/...`), one definition for the server
//! that writes them, the CLI that reads them and the tests: a field renamed
//! on one side fails to compile on the other instead of reading as empty.
//!
//! Every JSON body the server builds is here: errors ([`ErrorBody`]),
//! health, node status, the cluster, components, apps, revisions, deploys
//! (the request and its progress lines), rollbacks and the functions of an
//! app (here); invocation records, traces and replays (`invocations`);
//! sends, publishes, queue depths, events and dead letters (`events`);
//! key-value answers and operations, document writes, configuration and S3
//! keys (`data`); API keys, users and the password-reset hook's body
//! (`identity`); WebSocket connections (`realtime`); usage and cost
//! estimates (`usage`). What is not typed is
//! the app's own data: KV values (bytes) and documents (JSON), which the
//! API carries as the app wrote them. See docs/API.md for the endpoints.
//!
//! Invariant: only plain data and serde here — no I/O, no HTTP client or
//! server types — so every side can depend on it.

mod data;
mod events;
mod identity;
mod invocations;
mod realtime;
mod usage;

pub use data::{
    ConfigChanged, ConfigEntry, ConfigList, Counter, Deleted, DocPage, Document, KeyPage, KvOp,
    S3KeyCreated, Swapped, Written,
};
pub use events::{
    ChannelStatus, DeadLetters, EventDetail, InvocationLookup, MessageRow, Published, Purged,
    QueueDepths, Redriven, Sent,
};
pub use identity::{
    ApiKey, CreatedKey, KeyList, KeyRotated, NewKey, NewUser, PasswordResetHook, S3Key, User,
    UserList,
};
pub use invocations::{
    InvocationRow, KeptInput, KeptInvocation, LogLine, OpSpanRow, ReplayRequest, Replayed, Run,
    Trace,
};
pub use realtime::ConnectionInfo;
pub use usage::{Operations, Prices, StorageLine, Stored, Usage, UsageLine, WebSocketUsage};

use nimbus_core::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every refusal or failure of the API: `{"error": "what was wrong and how
/// to fix it"}`, with the status saying which kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /v1/apps`: one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    pub name: String,
    /// `None`: created, never activated.
    pub active_revision: Option<i64>,
    /// The host the app owns, if it claims one.
    pub host: Option<String>,
    /// Functions and routes of the active revision.
    pub functions: usize,
    pub routes: usize,
    pub updated_at_us: i64,
}

/// `GET /v1/apps/{app}/revisions`: one revision, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionSummary {
    pub number: i64,
    pub active: bool,
    pub created_at_us: i64,
    /// Its functions' names.
    pub functions: Vec<String>,
    pub routes: usize,
}

/// `POST /v1/apps/{app}/revisions`: the manifest's text, and each
/// function's uploaded component by SHA-256 (`PUT /v1/components/{hash}`
/// first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub manifest: String,
    pub components: BTreeMap<String, String>,
}

/// Progress of a deploy: the answer to [`DeployRequest`] is one of these
/// per line (JSON lines), ending with `Activated` or `Error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeployEvent {
    /// Compiling or loading functions starts.
    Started {
        /// Number of functions.
        total: usize,
    },
    /// One function is ready.
    Function {
        /// Function name.
        name: String,
        /// 1-based position.
        index: usize,
        /// Number of functions.
        total: usize,
        /// "compiled in N ms", "loaded (compile cache)"...
        status: String,
        /// Whether it was compiled now.
        compiled: bool,
    },
    /// The new revision is active.
    Activated {
        /// Revision number.
        revision: i64,
    },
    /// The deploy failed; the old revision keeps serving.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// `POST /v1/apps/{app}/rollback` (the body is optional): the revision to
/// activate, or `None` for the one before the active one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    #[serde(default)]
    pub revision: Option<i64>,
}

/// The answer to a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activated {
    pub app: String,
    pub active_revision: i64,
}

/// `GET /v1/apps/{app}/functions`: the active revision's functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Functions {
    pub app: String,
    pub revision: i64,
    pub host: Option<String>,
    pub functions: Vec<FunctionSummary>,
}

/// One function of [`Functions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSummary {
    pub name: String,
    /// SHA-256 of its component.
    pub component: String,
    pub limits: Limits,
    /// The names of its environment variables (never their values).
    pub env: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
    /// Its HTTP routes.
    pub routes: Vec<RouteSummary>,
    /// Its invocations running on the node that answered.
    pub in_flight: usize,
}

/// An HTTP route of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSummary {
    pub path: String,
    /// Empty: any method.
    pub methods: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_lines_read_back_as_written() {
        let events = [
            DeployEvent::Started { total: 2 },
            DeployEvent::Function {
                name: "api".into(),
                index: 1,
                total: 2,
                status: "compiled in 12 ms".into(),
                compiled: true,
            },
            DeployEvent::Activated { revision: 3 },
            DeployEvent::Error {
                message: "no".into(),
            },
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<DeployEvent>(&line).unwrap(), e);
        }
        // The wire form the CLIs of earlier releases read.
        assert_eq!(
            serde_json::to_string(&DeployEvent::Activated { revision: 3 }).unwrap(),
            r#"{"event":"activated","revision":3}"#
        );
    }

    #[test]
    fn a_rollback_body_may_be_empty() {
        let r: RollbackRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r.revision, None);
    }
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// `GET /v1/status`: this node's load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Invocations running now.
    pub in_flight: u64,
    /// Invocations waiting for admission.
    pub waiting: u64,
    /// `--max-in-flight`.
    pub max_in_flight: u32,
    /// Pre-linked components in memory.
    pub loaded_components: u64,
    /// Invocation records dropped because the writer fell behind.
    pub records_dropped: u64,
    /// Largest message a queue or topic accepts, in bytes.
    pub max_message_bytes: u64,
}

/// `PUT /v1/components/{hash}`: the stored component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStored {
    pub hash: String,
    pub size: u64,
}

/// `GET /v1/cluster`: one node sharing the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Its id (the data dir's `node-id`).
    pub id: String,
    /// Where it serves.
    pub url: String,
    pub started_at_us: i64,
    /// Its last heartbeat.
    pub seen_at_us: i64,
    /// Whether that heartbeat is recent enough to count it live.
    pub live: bool,
}

/// `GET /v1/cluster`: the nodes sharing this node's database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// The node that answered.
    pub node: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub nodes: Vec<ClusterNode>,
}

/// `GET /v1/apps/{app}`: an app and its active revision's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppDetail {
    pub name: String,
    pub active_revision: Option<i64>,
    /// `None`: created, never activated.
    pub spec: Option<nimbus_core::AppSpec>,
}

/// `POST /v1/apps/{app}/auth/password-reset`: always the same answer, so
/// it tells nobody whether an account exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRequested {
    pub status: String,
}

/// `server.json`, which a running node writes in its data dir: where it
/// listens, so the CLI on the same machine finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The apps' listener.
    pub url: String,
    /// The control API and console.
    pub control_url: Option<String>,
    pub s3_url: Option<String>,
    pub metrics_url: Option<String>,
    pub pid: u32,
}
