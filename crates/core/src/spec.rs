//! The resolved, immutable description of one app revision, as stored and
//! activated by the server. It is produced from a [`crate::Manifest`] once
//! every function's component has been uploaded and named by its hash.
//! Per-function [`Limits`] and their defaults are defined here, in one
//! place.

use crate::data::{CollectionSpec, KvSpec};
use crate::events::{
    QueueSpec, QueueTriggerSpec, RetryPolicy, ScheduleSpec, StorageTriggerSpec, SubscriptionSpec,
};
use crate::policy::{AuthSpec, PolicySpec, ResolvedPolicy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Resource limits of one function. Defaults live in [`Limits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Linear memory a single instance may grow to, in MiB; growing past it traps.
    pub memory_mb: u32,
    /// Wall-clock limit for a whole invocation, response body included, in ms.
    pub timeout_ms: u64,
    /// Wall-clock limit until the response head (status and headers), in ms.
    pub first_byte_timeout_ms: u64,
    /// Invocations of this function that may run at once: on each node,
    /// or across the cluster (see `concurrency_scope`).
    pub max_concurrency: u32,
    /// Where `max_concurrency` holds.
    #[serde(default)]
    pub concurrency_scope: ConcurrencyScope,
    /// Requests one instance serves at once (WASI 0.3 functions that opt
    /// in to instance reuse; 1 otherwise).
    #[serde(default = "one")]
    pub instance_concurrency: u32,
    /// Requests one instance serves before a fresh one replaces it: 1 (the
    /// default) is a fresh instance per request.
    #[serde(default = "one")]
    pub instance_requests: u32,
}

fn one() -> u32 {
    1
}

/// Where a function's `max_concurrency` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConcurrencyScope {
    /// On each node: N nodes run up to N × `max_concurrency` at once.
    #[default]
    Node,
    /// Across all nodes of a cluster: the limit is split among the live
    /// nodes (shares that add up to it), so together they never run more.
    Cluster,
}

impl Limits {
    /// Default memory limit (MiB).
    pub const DEFAULT_MEMORY_MB: u32 = 128;
    /// Default total timeout (ms).
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    /// Default concurrency per function.
    pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
    /// Largest `instance_concurrency` a manifest may ask for.
    pub const MAX_INSTANCE_CONCURRENCY: u32 = 1000;

    /// Whether an instance serves more than one request.
    pub fn reuses_instances(&self) -> bool {
        self.instance_requests > 1
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: Self::DEFAULT_MEMORY_MB,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            first_byte_timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
            concurrency_scope: ConcurrencyScope::Node,
            instance_concurrency: 1,
            instance_requests: 1,
        }
    }
}

/// One function of a revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// SHA-256 (hex) of the component's bytes: its name in the component store.
    pub component: String,
    /// Enforced limits.
    pub limits: Limits,
    /// Environment variables the guest sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Hosts the guest may call over outbound HTTP (`host`, `host:port`,
    /// `*.domain`, or `*`); everything else is denied.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Retries of its async invocations.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Key-value stores it may open.
    #[serde(default)]
    pub kv: Vec<String>,
    /// Document collections it may use.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Buckets (of its app) it may read and write.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// Its own configuration variables (over the app's).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// One HTTP route of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Path pattern as the user wrote it (validated).
    pub path: String,
    /// Uppercase methods; empty means any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Name of the function serving it.
    pub function: String,
    /// The named policy it uses over the app's `[gateway]` policy.
    #[serde(default)]
    pub policy: Option<String>,
}

/// Everything a revision of an app consists of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    /// App name.
    pub name: String,
    /// If set, the app's routes answer only requests for this host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// HTTP routes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// WebSocket routes.
    #[serde(default)]
    pub sockets: Vec<crate::realtime::SocketSpec>,
    /// Queues by name.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueSpec>,
    /// Topic names.
    #[serde(default)]
    pub topics: BTreeSet<String>,
    /// Queue consumers.
    #[serde(default)]
    pub queue_triggers: Vec<QueueTriggerSpec>,
    /// Topic subscriptions.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
    /// Schedules.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// Object storage triggers.
    #[serde(default)]
    pub storage_triggers: Vec<StorageTriggerSpec>,
    /// Key-value stores by name.
    #[serde(default)]
    pub kv: BTreeMap<String, KvSpec>,
    /// Document collections by name.
    #[serde(default)]
    pub collections: BTreeMap<String, CollectionSpec>,
    /// App-wide configuration variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The app's user pool, if it has one.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    /// The policy of every route.
    #[serde(default)]
    pub gateway: PolicySpec,
    /// Named policies.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySpec>,
}

impl AppSpec {
    /// The resolved policy of a route (validated at deploy).
    pub fn route_policy(&self, route: &RouteSpec) -> Result<ResolvedPolicy, String> {
        self.named_policy(route.policy.as_deref())
    }

    /// The resolved policy named `name` (over `[gateway]`), or `[gateway]`
    /// alone (validated at deploy).
    pub fn named_policy(&self, name: Option<&str>) -> Result<ResolvedPolicy, String> {
        let named = match name {
            Some(n) => self
                .policies
                .get(n)
                .ok_or_else(|| format!("policy {n:?} is not declared"))?,
            None => &PolicySpec::default(),
        };
        named.resolve(&self.gateway)
    }

    /// Whether two method lists can match the same request.
    pub fn methods_overlap(a: &[String], b: &[String]) -> bool {
        a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
    }
}
