//! `nimbus.toml`: what a developer writes to describe an app.
//!
//! ```toml
//! [app]
//! name = "demo"
//! # host = "demo.example.com"   # optional: answer only for this Host
//!
//! [functions.hello]
//! component = "target/wasm32-wasip2/release/hello.wasm"  # relative to this file
//! build = "cargo build --release --target wasm32-wasip2"  # optional, run before upload
//! memory_mb = 64
//! timeout_ms = 5000
//! first_byte_timeout_ms = 1000
//! max_concurrency = 50
//! env = { GREETING = "hi" }
//! allowed_outbound_hosts = ["api.example.com"]
//!
//! [[triggers.http]]
//! route = "/hello"
//! methods = ["GET"]      # optional, default: any method
//! function = "hello"
//! ```
//!
//! Triggers are grouped by kind under `[triggers]`: `http`, and the event
//! kinds `queue`, `topic` and `schedule` (see [`crate::events`] for queues,
//! topics and their triggers).

use crate::data::{CollectionSpec, KvSpec, parse_index_field};
use crate::events::{
    QueueSpec, QueueTriggerSpec, RetryPolicy, ScheduleSpec, StorageTriggerSpec, SubscriptionSpec,
    SubscriptionTarget, When, parse_cron, parse_duration, parse_timezone,
};
use crate::names::check_name;
use crate::policy::{Access, AuthManifest, AuthMode, AuthSpec, PolicyManifest, PolicySpec};
use crate::route::{normalize_method, parse_pattern};
use crate::spec::{AppSpec, FunctionSpec, Limits, RouteSpec};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

/// Largest memory limit a manifest may ask for, in MiB (the server may set a lower cap).
pub const MAX_MEMORY_MB: u32 = 4096;

/// A manifest that failed to parse or validate. `line` is 1-based when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("nimbus.toml line {l}: ")).unwrap_or_else(|| "nimbus.toml: ".into()))]
pub struct ManifestError {
    /// Line in the manifest the problem is at, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A parsed and validated `nimbus.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The `[app]` table.
    pub app: AppSection,
    /// `[functions.NAME]` tables.
    #[serde(default)]
    pub functions: BTreeMap<String, Spanned<FunctionManifest>>,
    /// `[queues.NAME]` tables.
    #[serde(default)]
    pub queues: BTreeMap<String, Spanned<QueueManifest>>,
    /// `[topics.NAME]` tables.
    #[serde(default)]
    pub topics: BTreeMap<String, Spanned<TopicManifest>>,
    /// `[kv.NAME]` tables.
    #[serde(default)]
    pub kv: BTreeMap<String, Spanned<KvManifest>>,
    /// `[collections.NAME]` tables.
    #[serde(default)]
    pub collections: BTreeMap<String, Spanned<CollectionManifest>>,
    /// `[variables]`: app-wide configuration.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// `[auth]`: the app's user pool.
    #[serde(default)]
    pub auth: Option<Spanned<AuthManifest>>,
    /// `[gateway]`: the policy of every route.
    #[serde(default)]
    pub gateway: Option<Spanned<PolicyManifest>>,
    /// `[policies.NAME]`: policies routes may name.
    #[serde(default)]
    pub policies: BTreeMap<String, Spanned<PolicyManifest>>,
    /// `[triggers]` tables, by kind.
    #[serde(default)]
    pub triggers: Triggers,
}

/// A `[kv.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvManifest {
    /// Largest value, in KiB.
    #[serde(default)]
    pub max_value_kb: Option<u64>,
    /// Client access rule (see [`Access`]).
    #[serde(default)]
    pub access: Option<String>,
}

/// A `[collections.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionManifest {
    /// Indexes: lists of field paths, `-` first for descending.
    #[serde(default)]
    pub indexes: Vec<Vec<String>>,
    /// Client access rule (see [`Access`]).
    #[serde(default)]
    pub access: Option<String>,
    /// For `access = "owner"`: the field holding the owner's subject
    /// (default `owner`).
    #[serde(default)]
    pub owner_field: Option<String>,
}

/// A `[queues.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueManifest {
    /// Largest message body, in KiB.
    #[serde(default)]
    pub max_message_kb: Option<u64>,
    /// How long idempotency keys are remembered (`"5m"`).
    #[serde(default)]
    pub dedup_window: Option<String>,
}

/// A `[topics.NAME]` table (no settings yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicManifest {}

/// Retry settings, as written in a function's `retry` table or a trigger.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryManifest {
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay (`"1s"`).
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest delay (`"5m"`).
    #[serde(default)]
    pub max_backoff: Option<String>,
}

impl RetryManifest {
    fn policy(&self) -> Result<RetryPolicy, String> {
        let d = RetryPolicy::default();
        let max_attempts = self.max_attempts.unwrap_or(d.max_attempts);
        if max_attempts == 0 || max_attempts > RetryPolicy::MAX_ATTEMPTS {
            return Err(format!(
                "max_attempts = {max_attempts} is out of range: use 1..={}",
                RetryPolicy::MAX_ATTEMPTS
            ));
        }
        let ms = |what: &str, v: &Option<String>, default: u64| match v {
            Some(s) => parse_duration(what, s).map(|d| d.as_millis() as u64),
            None => Ok(default),
        };
        let backoff_ms = ms("backoff", &self.backoff, d.backoff_ms)?;
        let max_backoff_ms = ms(
            "max_backoff",
            &self.max_backoff,
            d.max_backoff_ms.max(backoff_ms),
        )?;
        if max_backoff_ms < backoff_ms {
            return Err("max_backoff must not be shorter than backoff".into());
        }
        Ok(RetryPolicy {
            max_attempts,
            backoff_ms,
            max_backoff_ms,
        })
    }
}

/// The `[app]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    /// App name.
    pub name: Spanned<String>,
    /// Optional host name the app's routes are bound to.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
}

/// A `[functions.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionManifest {
    /// Path of the `.wasm` component, relative to the manifest's directory.
    pub component: String,
    /// Shell command that builds the component, run in the manifest's directory.
    #[serde(default)]
    pub build: Option<String>,
    /// See [`Limits::memory_mb`].
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// See [`Limits::timeout_ms`].
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// See [`Limits::first_byte_timeout_ms`]; defaults to `timeout_ms`.
    #[serde(default)]
    pub first_byte_timeout_ms: Option<u64>,
    /// See [`Limits::max_concurrency`].
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// See [`Limits::concurrency_scope`]: `"node"` (default) or `"cluster"`.
    #[serde(default)]
    pub concurrency_scope: Option<crate::spec::ConcurrencyScope>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Hosts outbound HTTP may reach.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Retries of async invocations.
    #[serde(default)]
    pub retry: RetryManifest,
    /// Key-value stores it may open.
    #[serde(default)]
    pub kv: Vec<String>,
    /// Collections it may use.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Buckets it may use.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// Its own configuration variables.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// The `[triggers]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// `[[triggers.http]]` entries.
    #[serde(default)]
    pub http: Vec<Spanned<HttpTrigger>>,
    /// `[[triggers.queue]]` entries.
    #[serde(default)]
    pub queue: Vec<Spanned<QueueTrigger>>,
    /// `[[triggers.topic]]` entries.
    #[serde(default)]
    pub topic: Vec<Spanned<TopicTrigger>>,
    /// `[[triggers.schedule]]` entries.
    #[serde(default)]
    pub schedule: Vec<Spanned<ScheduleTrigger>>,
    /// `[[triggers.storage]]` entries.
    #[serde(default)]
    pub storage: Vec<Spanned<StorageTrigger>>,
}

/// One `[[triggers.storage]]` entry: objects created/deleted in a bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageTrigger {
    /// Bucket of this app.
    pub bucket: String,
    /// `created`, `deleted` (default both).
    #[serde(default)]
    pub events: Vec<String>,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// Only keys ending with this.
    #[serde(default)]
    pub suffix: String,
    /// Function run.
    pub function: String,
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay.
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff: Option<String>,
}

/// One `[[triggers.queue]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTrigger {
    /// Queue consumed.
    pub queue: String,
    /// Consuming function.
    pub function: String,
    /// Messages leased per fetch (default 10).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Deliveries at once (default: the function's `max_concurrency`).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay.
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff: Option<String>,
    /// Lease length of a delivery (`"2m"`; default: the function's timeout + 30s).
    #[serde(default)]
    pub visibility_timeout: Option<String>,
}

/// One `[[triggers.topic]]` entry: a subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicTrigger {
    /// Topic subscribed to.
    pub topic: String,
    /// Function receiving copies (or `queue`).
    #[serde(default)]
    pub function: Option<String>,
    /// Queue receiving copies (or `function`).
    #[serde(default)]
    pub queue: Option<String>,
    /// Deliveries at once (function targets; default: the function's).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay.
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff: Option<String>,
}

/// One `[[triggers.schedule]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTrigger {
    /// Name (default: the function's).
    #[serde(default)]
    pub name: Option<String>,
    /// Cron expression (or `every`).
    #[serde(default)]
    pub cron: Option<String>,
    /// Fixed period such as `"5m"` (or `cron`).
    #[serde(default)]
    pub every: Option<String>,
    /// IANA time zone for `cron`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Function run at each tick.
    pub function: String,
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay.
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff: Option<String>,
}

fn retry_of(
    max_attempts: Option<u32>,
    backoff: &Option<String>,
    max_backoff: &Option<String>,
) -> Result<RetryPolicy, String> {
    RetryManifest {
        max_attempts,
        backoff: backoff.clone(),
        max_backoff: max_backoff.clone(),
    }
    .policy()
}

/// The parts of a manifest that describe events, resolved.
struct EventParts {
    storage: Vec<StorageTriggerSpec>,
    queues: BTreeMap<String, QueueSpec>,
    topics: BTreeSet<String>,
    queue_triggers: Vec<QueueTriggerSpec>,
    subscriptions: Vec<SubscriptionSpec>,
    schedules: Vec<ScheduleSpec>,
}

/// KV stores and collections of a manifest, resolved.
type DataParts = (BTreeMap<String, KvSpec>, BTreeMap<String, CollectionSpec>);

/// Smallest `every` period of a schedule.
pub const MIN_SCHEDULE_PERIOD_MS: u64 = 1_000;
/// Largest `every` period of a schedule.
pub const MAX_SCHEDULE_PERIOD_MS: u64 = 366 * 86_400_000;

struct PolicyParts {
    auth: Option<AuthSpec>,
    gateway: PolicySpec,
    policies: BTreeMap<String, PolicySpec>,
}

/// One `[[triggers.http]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    /// Path pattern.
    pub route: String,
    /// Methods; absent or empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Function serving the route.
    pub function: String,
    /// A `[policies.NAME]` for this route (default: `[gateway]` alone).
    #[serde(default)]
    pub policy: Option<String>,
}

impl FunctionManifest {
    /// The limits this function asks for, with defaults filled in.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        let timeout_ms = self.timeout_ms.unwrap_or(d.timeout_ms);
        Limits {
            memory_mb: self.memory_mb.unwrap_or(d.memory_mb),
            timeout_ms,
            first_byte_timeout_ms: self.first_byte_timeout_ms.unwrap_or(timeout_ms),
            max_concurrency: self.max_concurrency.unwrap_or(d.max_concurrency),
            concurrency_scope: self.concurrency_scope.unwrap_or_default(),
        }
    }
}

fn line_of(src: &str, span: Range<usize>) -> usize {
    src[..span.start.min(src.len())].matches('\n').count() + 1
}

impl Manifest {
    /// Parses and validates manifest text. Every error names the line.
    pub fn parse(src: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(src).map_err(|e| ManifestError {
            line: e.span().map(|s| line_of(src, s)),
            message: e.message().trim_end().to_string(),
        })?;
        m.validate(src)?;
        Ok(m)
    }

    fn validate(&self, src: &str) -> Result<(), ManifestError> {
        let at = |span: Range<usize>, message: String| ManifestError {
            line: Some(line_of(src, span)),
            message,
        };
        check_name("app", self.app.name.get_ref()).map_err(|e| at(self.app.name.span(), e))?;
        if let Some(host) = &self.app.host {
            let h = host.get_ref();
            let valid = !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':');
            if !valid {
                return Err(at(
                    host.span(),
                    format!(
                        "app host {h:?} is not a host name (letters, digits, '-', '.', optional :port)"
                    ),
                ));
            }
        }
        if self.functions.is_empty() {
            return Err(ManifestError {
                line: None,
                message:
                    "the app defines no functions: add a [functions.NAME] table with a component"
                        .into(),
            });
        }
        for (name, f) in &self.functions {
            let span = f.span();
            let f = f.get_ref();
            check_name("function", name).map_err(|e| at(span.clone(), e))?;
            let err = |m: String| at(span.clone(), format!("function {name:?}: {m}"));
            if f.component.trim().is_empty() {
                return Err(err(
                    "`component` is empty: give the path of the .wasm file".into()
                ));
            }
            let l = f.limits();
            if l.memory_mb == 0 || l.memory_mb > MAX_MEMORY_MB {
                return Err(err(format!(
                    "memory_mb = {} is out of range: use 1..={MAX_MEMORY_MB}",
                    l.memory_mb
                )));
            }
            if l.timeout_ms == 0 {
                return Err(err("timeout_ms must be at least 1".into()));
            }
            if l.first_byte_timeout_ms == 0 || l.first_byte_timeout_ms > l.timeout_ms {
                return Err(err(format!(
                    "first_byte_timeout_ms = {} must be between 1 and timeout_ms ({})",
                    l.first_byte_timeout_ms, l.timeout_ms
                )));
            }
            if l.max_concurrency == 0 {
                return Err(err("max_concurrency must be at least 1".into()));
            }
            for key in f.env.keys() {
                if key.is_empty() || key.contains(['=', '\0']) {
                    return Err(err(format!(
                        "environment variable name {key:?} must be non-empty and contain no '=' or NUL"
                    )));
                }
            }
            for host in &f.allowed_outbound_hosts {
                check_outbound_host(host).map_err(&err)?;
            }
        }
        let mut seen: Vec<(String, Vec<String>, usize)> = Vec::new();
        for t in &self.triggers.http {
            let span = t.span();
            let line = line_of(src, span.clone());
            let t = t.get_ref();
            let pattern = parse_pattern(&t.route).map_err(|e| at(span.clone(), e))?;
            if !self.functions.contains_key(&t.function) {
                let known: Vec<&str> = self.functions.keys().map(String::as_str).collect();
                return Err(at(
                    span,
                    format!(
                        "route {:?} points at function {:?}, which the app does not define (defined: {})",
                        t.route,
                        t.function,
                        known.join(", ")
                    ),
                ));
            }
            let mut methods = Vec::new();
            for m in &t.methods {
                let m = normalize_method(m).map_err(|e| at(span.clone(), e))?;
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
            if let Some((_, _, other)) = seen.iter().find(|(p, ms, _)| {
                *p == pattern.normalized && AppSpec::methods_overlap(ms, &methods)
            }) {
                return Err(at(
                    span,
                    format!(
                        "route {:?} duplicates the route on line {other} for the same method(s)",
                        t.route
                    ),
                ));
            }
            seen.push((pattern.normalized, methods, line));
        }
        for (name, f) in &self.functions {
            f.get_ref()
                .retry
                .policy()
                .map_err(|e| at(f.span(), format!("function {name:?}: retry: {e}")))?;
        }
        self.event_parts(src)?;
        self.data_parts(src)?;
        self.policy_parts(src)?;
        Ok(())
    }

    /// Checks and resolves the user pool and the gateway policies, and
    /// checks every route's resolved policy.
    fn policy_parts(&self, src: &str) -> Result<PolicyParts, ManifestError> {
        let at = |span: Range<usize>, message: String| ManifestError {
            line: Some(line_of(src, span)),
            message,
        };
        let auth = match &self.auth {
            None => None,
            Some(a) => {
                let spec = a
                    .get_ref()
                    .to_spec()
                    .map_err(|e| at(a.span(), format!("[auth]: {e}")))?;
                if let Some(hook) = &spec.reset_hook {
                    self.function_known(hook)
                        .map_err(|e| at(a.span(), format!("[auth] reset_hook: {e}")))?;
                }
                Some(spec)
            }
        };
        let gateway = match &self.gateway {
            None => PolicySpec::default(),
            Some(g) => g
                .get_ref()
                .to_spec()
                .map_err(|e| at(g.span(), format!("[gateway]: {e}")))?,
        };
        let mut policies = BTreeMap::new();
        for (name, p) in &self.policies {
            check_name("policy", name).map_err(|e| at(p.span(), e))?;
            let spec = p
                .get_ref()
                .to_spec()
                .map_err(|e| at(p.span(), format!("[policies.{name}]: {e}")))?;
            policies.insert(name.clone(), spec);
        }
        let check = |p: &PolicySpec, span: Range<usize>, what: &str| {
            let r = p
                .resolve(&gateway)
                .map_err(|e| at(span.clone(), format!("{what}: {e}")))?;
            if r.auth == AuthMode::Jwt && r.issuer.is_none() && auth.is_none() {
                return Err(at(
                    span,
                    format!(
                        "{what}: auth = \"jwt\" verifies tokens of the app's user pool, which needs an [auth] table (or give the external issuer's jwks_url)"
                    ),
                ));
            }
            Ok(())
        };
        if let Some(g) = &self.gateway {
            check(&PolicySpec::default(), g.span(), "[gateway]")?;
        }
        for (name, p) in &self.policies {
            check(&policies[name], p.span(), &format!("[policies.{name}]"))?;
        }
        for t in &self.triggers.http {
            if let Some(name) = &t.get_ref().policy
                && !policies.contains_key(name)
            {
                return Err(at(
                    t.span(),
                    format!(
                        "route {:?} names policy {name:?}, which is not declared: add a [policies.{name}] table",
                        t.get_ref().route
                    ),
                ));
            }
        }
        Ok(PolicyParts {
            auth,
            gateway,
            policies,
        })
    }

    /// Checks and resolves KV stores, collections and grants.
    fn data_parts(&self, src: &str) -> Result<DataParts, ManifestError> {
        let at = |span: Range<usize>, message: String| ManifestError {
            line: Some(line_of(src, span)),
            message,
        };
        let mut kv = BTreeMap::new();
        for (name, k) in &self.kv {
            check_name("kv store", name).map_err(|e| at(k.span(), e))?;
            let max_value_bytes = match k.get_ref().max_value_kb {
                Some(0) => {
                    return Err(at(
                        k.span(),
                        format!("kv store {name:?}: max_value_kb must be at least 1"),
                    ));
                }
                Some(kb) => Some(kb.saturating_mul(1024)),
                None => None,
            };
            let access = match &k.get_ref().access {
                Some(a) => {
                    Access::parse(a).map_err(|e| at(k.span(), format!("kv store {name:?}: {e}")))?
                }
                None => Access::None,
            };
            kv.insert(
                name.clone(),
                KvSpec {
                    max_value_bytes,
                    access,
                },
            );
        }
        let mut collections = BTreeMap::new();
        for (name, c) in &self.collections {
            let err = |m: String| at(c.span(), format!("collection {name:?}: {m}"));
            check_name("collection", name).map_err(|e| at(c.span(), e))?;
            let mut indexes = Vec::new();
            for fields in &c.get_ref().indexes {
                if fields.is_empty() || fields.len() > 8 {
                    return Err(err("an index has 1 to 8 fields".into()));
                }
                let parsed = fields
                    .iter()
                    .map(|f| parse_index_field(f))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                indexes.push(parsed);
            }
            let access = match &c.get_ref().access {
                Some(a) => Access::parse(a).map_err(err)?,
                None => Access::None,
            };
            let owner_field = match (&c.get_ref().owner_field, access) {
                (Some(f), Access::Owner | Access::OwnerRead) => {
                    crate::data::check_field_path(f).map_err(err)?;
                    Some(f.clone())
                }
                (Some(_), _) => {
                    return Err(err(
                        "owner_field needs access = \"owner\" or \"owner-read\"".into(),
                    ));
                }
                (None, Access::Owner | Access::OwnerRead) => Some("owner".to_string()),
                (None, _) => None,
            };
            collections.insert(
                name.clone(),
                CollectionSpec {
                    indexes,
                    access,
                    owner_field,
                },
            );
        }
        for key in self.variables.keys() {
            check_config_key(key).map_err(|e| ManifestError {
                line: None,
                message: format!("[variables]: {e}"),
            })?;
        }
        for (fname, f) in &self.functions {
            let span = f.span();
            let f = f.get_ref();
            let err = |m: String| at(span.clone(), format!("function {fname:?}: {m}"));
            for s in &f.kv {
                if !kv.contains_key(s) {
                    return Err(err(format!(
                        "kv store {s:?} is not declared: add a [kv.{s}] table"
                    )));
                }
            }
            for c in &f.collections {
                if !collections.contains_key(c) {
                    return Err(err(format!(
                        "collection {c:?} is not declared: add a [collections.{c}] table"
                    )));
                }
            }
            for key in f.config.keys() {
                check_config_key(key).map_err(|e| err(format!("config: {e}")))?;
            }
        }
        Ok((kv, collections))
    }

    fn function_known(&self, f: &str) -> Result<(), String> {
        if self.functions.contains_key(f) {
            return Ok(());
        }
        let known: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        Err(format!(
            "function {f:?} is not defined by the app (defined: {})",
            known.join(", ")
        ))
    }

    fn queue_known(&self, q: &str) -> Result<(), String> {
        if self.queues.contains_key(q) {
            return Ok(());
        }
        Err(format!(
            "queue {q:?} is not declared: add a [queues.{q}] table"
        ))
    }

    /// Checks and resolves queues, topics and their triggers.
    fn event_parts(&self, src: &str) -> Result<EventParts, ManifestError> {
        let at = |span: Range<usize>, message: String| ManifestError {
            line: Some(line_of(src, span)),
            message,
        };
        let mut queues = BTreeMap::new();
        for (name, q) in &self.queues {
            let err = |m: String| at(q.span(), m);
            check_name("queue", name).map_err(err)?;
            let qm = q.get_ref();
            let max_message_bytes = match qm.max_message_kb {
                Some(0) => {
                    return Err(err(format!(
                        "queue {name:?}: max_message_kb must be at least 1"
                    )));
                }
                Some(kb) => Some(kb.saturating_mul(1024)),
                None => None,
            };
            let dedup_window_ms = match &qm.dedup_window {
                Some(s) => parse_duration("dedup_window", s)
                    .map_err(|e| err(format!("queue {name:?}: {e}")))?
                    .as_millis() as u64,
                None => QueueSpec::DEFAULT_DEDUP_WINDOW_MS,
            };
            queues.insert(
                name.clone(),
                QueueSpec {
                    max_message_bytes,
                    dedup_window_ms,
                },
            );
        }
        let mut topics = BTreeSet::new();
        for (name, t) in &self.topics {
            check_name("topic", name).map_err(|e| at(t.span(), e))?;
            topics.insert(name.clone());
        }
        let mut queue_triggers: Vec<QueueTriggerSpec> = Vec::new();
        for t in &self.triggers.queue {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("queue trigger: {m}"));
            self.queue_known(&t.queue).map_err(err)?;
            self.function_known(&t.function).map_err(err)?;
            if queue_triggers.iter().any(|o| o.queue == t.queue) {
                return Err(err(format!(
                    "queue {:?} already has a consumer: a queue is consumed by one trigger (use a topic to fan out)",
                    t.queue
                )));
            }
            let fn_limit = self.functions[&t.function]
                .get_ref()
                .limits()
                .max_concurrency;
            let batch_size = t.batch_size.unwrap_or(10);
            if !(1..=1000).contains(&batch_size) {
                return Err(err(format!(
                    "batch_size = {batch_size} is out of range: use 1..=1000"
                )));
            }
            let max_concurrency = t.max_concurrency.unwrap_or(fn_limit);
            if max_concurrency == 0 {
                return Err(err("max_concurrency must be at least 1".into()));
            }
            let visibility_timeout_ms = match &t.visibility_timeout {
                Some(v) => {
                    let ms = parse_duration("visibility_timeout", v)
                        .map_err(err)?
                        .as_millis() as u64;
                    let timeout = self.functions[&t.function].get_ref().limits().timeout_ms;
                    if ms <= timeout {
                        return Err(err(format!(
                            "visibility_timeout = {v:?} must be longer than the function's timeout_ms ({timeout} ms), or a slow delivery would be handed out twice"
                        )));
                    }
                    Some(ms)
                }
                None => None,
            };
            queue_triggers.push(QueueTriggerSpec {
                queue: t.queue.clone(),
                function: t.function.clone(),
                batch_size,
                max_concurrency,
                retry: retry_of(t.max_attempts, &t.backoff, &t.max_backoff).map_err(err)?,
                visibility_timeout_ms,
            });
        }
        let mut subscriptions: Vec<SubscriptionSpec> = Vec::new();
        for t in &self.triggers.topic {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("topic trigger: {m}"));
            if !self.topics.contains_key(&t.topic) {
                return Err(err(format!(
                    "topic {:?} is not declared: add a [topics.{}] table",
                    t.topic, t.topic
                )));
            }
            let target = match (&t.function, &t.queue) {
                (Some(f), None) => {
                    self.function_known(f).map_err(err)?;
                    SubscriptionTarget::Function(f.clone())
                }
                (None, Some(q)) => {
                    self.queue_known(q).map_err(err)?;
                    SubscriptionTarget::Queue(q.clone())
                }
                _ => return Err(err("give exactly one of `function` or `queue`".into())),
            };
            if subscriptions
                .iter()
                .any(|s| s.topic == t.topic && s.target == target)
            {
                return Err(err(format!(
                    "duplicate subscription to topic {:?}",
                    t.topic
                )));
            }
            let max_concurrency = match (&target, t.max_concurrency) {
                (_, Some(0)) => return Err(err("max_concurrency must be at least 1".into())),
                (_, Some(n)) => n,
                (SubscriptionTarget::Function(f), None) => {
                    self.functions[f].get_ref().limits().max_concurrency
                }
                (SubscriptionTarget::Queue(_), None) => 1,
            };
            subscriptions.push(SubscriptionSpec {
                topic: t.topic.clone(),
                target,
                max_concurrency,
                retry: retry_of(t.max_attempts, &t.backoff, &t.max_backoff).map_err(err)?,
            });
        }
        let mut schedules: Vec<ScheduleSpec> = Vec::new();
        for t in &self.triggers.schedule {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("schedule trigger: {m}"));
            self.function_known(&t.function).map_err(err)?;
            let name = t.name.clone().unwrap_or_else(|| t.function.clone());
            check_name("schedule", &name).map_err(err)?;
            if schedules.iter().any(|s| s.name == name) {
                return Err(err(format!(
                    "a schedule named {name:?} already exists: give each schedule of a function a distinct `name`"
                )));
            }
            let when = match (&t.cron, &t.every) {
                (Some(c), None) => {
                    parse_cron(c).map_err(err)?;
                    When::Cron(c.clone())
                }
                (None, Some(e)) => {
                    let ms = parse_duration("every", e).map_err(err)?.as_millis();
                    if ms < u128::from(MIN_SCHEDULE_PERIOD_MS) {
                        return Err(err(format!(
                            "every = {e:?} is shorter than the minimum of 1s"
                        )));
                    }
                    if ms > u128::from(MAX_SCHEDULE_PERIOD_MS) {
                        return Err(err(format!(
                            "every = {e:?} is longer than the maximum of 366 days"
                        )));
                    }
                    When::Every(ms as u64)
                }
                _ => return Err(err("give exactly one of `cron` or `every`".into())),
            };
            if let Some(tz) = &t.timezone {
                parse_timezone(tz).map_err(err)?;
                if matches!(when, When::Every(_)) {
                    return Err(err("`timezone` applies to `cron` only".into()));
                }
            }
            schedules.push(ScheduleSpec {
                name,
                function: t.function.clone(),
                when,
                timezone: t.timezone.clone(),
                retry: retry_of(t.max_attempts, &t.backoff, &t.max_backoff).map_err(err)?,
            });
        }
        let mut storage: Vec<StorageTriggerSpec> = Vec::new();
        for t in &self.triggers.storage {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("storage trigger: {m}"));
            self.function_known(&t.function).map_err(err)?;
            let valid_bucket = (3..=63).contains(&t.bucket.len())
                && t.bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid_bucket {
                return Err(err(format!(
                    "bucket {:?} is not an S3 bucket name (3-63 of a-z, 0-9, '-', '.')",
                    t.bucket
                )));
            }
            let (mut created, mut deleted) = (t.events.is_empty(), t.events.is_empty());
            for e in &t.events {
                match e.as_str() {
                    "created" => created = true,
                    "deleted" => deleted = true,
                    other => {
                        return Err(err(format!(
                            "unknown event {other:?}: use \"created\" and/or \"deleted\""
                        )));
                    }
                }
            }
            if storage
                .iter()
                .any(|s| s.bucket == t.bucket && s.function == t.function)
            {
                return Err(err(format!(
                    "function {:?} already has a trigger on bucket {:?}",
                    t.function, t.bucket
                )));
            }
            storage.push(StorageTriggerSpec {
                bucket: t.bucket.clone(),
                created,
                deleted,
                prefix: t.prefix.clone(),
                suffix: t.suffix.clone(),
                function: t.function.clone(),
                retry: retry_of(t.max_attempts, &t.backoff, &t.max_backoff).map_err(err)?,
            });
        }
        Ok(EventParts {
            storage,
            queues,
            topics,
            queue_triggers,
            subscriptions,
            schedules,
        })
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        self.app.name.get_ref()
    }

    /// Builds the revision spec, given each function's component hash.
    /// Fails if a function has no hash.
    pub fn to_spec(&self, components: &BTreeMap<String, String>) -> Result<AppSpec, ManifestError> {
        let mut functions = BTreeMap::new();
        for (name, f) in &self.functions {
            let f = f.get_ref();
            let component = components.get(name).ok_or_else(|| ManifestError {
                line: None,
                message: format!("function {name:?}: no component was uploaded for it"),
            })?;
            functions.insert(
                name.clone(),
                FunctionSpec {
                    component: component.clone(),
                    limits: f.limits(),
                    env: f.env.clone(),
                    allowed_outbound_hosts: f.allowed_outbound_hosts.clone(),
                    retry: f.retry.policy().map_err(|message| ManifestError {
                        line: None,
                        message: format!("function {name:?}: retry: {message}"),
                    })?,
                    kv: f.kv.clone(),
                    collections: f.collections.clone(),
                    buckets: f.buckets.clone(),
                    config: f.config.clone(),
                },
            );
        }
        // Validated at parse time; spans are not needed again.
        let events = self.event_parts("")?;
        let (kv, collections) = self.data_parts("")?;
        let policy = self.policy_parts("")?;
        let routes = self
            .triggers
            .http
            .iter()
            .map(|t| {
                let t = t.get_ref();
                RouteSpec {
                    path: t.route.clone(),
                    methods: t.methods.iter().map(|m| m.to_ascii_uppercase()).fold(
                        Vec::new(),
                        |mut v, m| {
                            if !v.contains(&m) {
                                v.push(m);
                            }
                            v
                        },
                    ),
                    function: t.function.clone(),
                    policy: t.policy.clone(),
                }
            })
            .collect();
        Ok(AppSpec {
            name: self.name().to_string(),
            host: self
                .app
                .host
                .as_ref()
                .map(|h| h.get_ref().to_ascii_lowercase()),
            functions,
            routes,
            queues: events.queues,
            topics: events.topics,
            queue_triggers: events.queue_triggers,
            subscriptions: events.subscriptions,
            schedules: events.schedules,
            storage_triggers: events.storage,
            kv,
            collections,
            variables: self.variables.clone(),
            auth: policy.auth,
            gateway: policy.gateway,
            policies: policy.policies,
        })
    }
}

/// Checks a configuration variable or secret name: 1-128 characters among
/// letters, digits, `_`, `-` and `.`.
pub fn check_config_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "variable name {key:?} is invalid: use 1-128 letters, digits, '_', '-' or '.'"
        ))
    }
}

/// Checks one `allowed_outbound_hosts` entry: `*`, `host`, `host:port` or
/// `*.domain`, optionally prefixed by `http://` or `https://`.
pub fn check_outbound_host(entry: &str) -> Result<(), String> {
    let rest = entry
        .strip_prefix("http://")
        .or_else(|| entry.strip_prefix("https://"))
        .unwrap_or(entry);
    if rest == "*" {
        return Ok(());
    }
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    let host_ok = !h.is_empty()
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok = port.is_none_or(|p| p == "*" || p.parse::<u16>().is_ok());
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "allowed_outbound_hosts entry {entry:?} is invalid: use \"host\", \"host:port\", \"*.domain\" or \"*\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[app]
name = "demo"

[functions.hello]
component = "hello.wasm"
memory_mb = 32

[functions.echo]
component = "echo.wasm"
build = "make"
env = { A = "1" }
allowed_outbound_hosts = ["example.com", "*.example.org", "127.0.0.1:8080"]

[[triggers.http]]
route = "/hello"
methods = ["get"]
function = "hello"

[[triggers.http]]
route = "/hello"
methods = ["POST"]
function = "echo"

[[triggers.http]]
route = "/echo/{name}"
function = "echo"
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.name(), "demo");
        assert_eq!(m.functions["hello"].get_ref().limits().memory_mb, 32);
        let comps = [("hello", "a"), ("echo", "b")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.repeat(64)))
            .collect();
        let spec = m.to_spec(&comps).unwrap();
        assert_eq!(spec.routes.len(), 3);
        assert_eq!(spec.routes[0].methods, vec!["GET"]);
        assert_eq!(spec.functions["echo"].env["A"], "1");
        assert_eq!(
            spec.functions["hello"].limits.timeout_ms,
            Limits::DEFAULT_TIMEOUT_MS
        );
    }

    fn err(src: &str) -> ManifestError {
        Manifest::parse(src).unwrap_err()
    }

    #[test]
    fn unknown_function_names_the_line() {
        let e = err(
            "[app]\nname = \"a\"\n[functions.f]\ncomponent = \"f.wasm\"\n[[triggers.http]]\nroute = \"/x\"\nfunction = \"nope\"\n",
        );
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.to_string().contains("points at function \"nope\""), "{e}");
        assert!(e.to_string().starts_with("nimbus.toml line 5: "), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = err("[app]\nname = \"a\"\n\n[functions.f\n");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = err("[app]\nname = \"a\"\n[functions.f]\ncomponent = \"f.wasm\"\nmemory = 3\n");
        assert!(e.message.contains("unknown field `memory`"), "{e}");
        assert_eq!(e.line, Some(5));
    }

    #[test]
    fn duplicate_routes_are_rejected() {
        let e = err(
            "[app]\nname = \"a\"\n[functions.f]\ncomponent = \"f.wasm\"\n[[triggers.http]]\nroute = \"/x/{a}\"\nfunction = \"f\"\n[[triggers.http]]\nroute = \"/x/{a}\"\nmethods = [\"GET\"]\nfunction = \"f\"\n",
        );
        assert!(e.message.contains("duplicates the route on line 5"), "{e}");
        assert_eq!(e.line, Some(8));
    }

    #[test]
    fn limits_are_checked() {
        let base = "[app]\nname = \"a\"\n[functions.f]\ncomponent = \"f.wasm\"\n";
        assert!(
            err(&format!("{base}memory_mb = 0\n"))
                .message
                .contains("memory_mb = 0")
        );
        assert!(
            err(&format!(
                "{base}timeout_ms = 10\nfirst_byte_timeout_ms = 20\n"
            ))
            .message
            .contains("first_byte_timeout_ms")
        );
        assert!(
            err(&format!("{base}max_concurrency = 0\n"))
                .message
                .contains("max_concurrency")
        );
        assert!(
            err(&format!("{base}allowed_outbound_hosts = [\"a b\"]\n"))
                .message
                .contains("allowed_outbound_hosts")
        );
        assert!(
            err("[app]\nname = \"a\"\n")
                .message
                .contains("no functions")
        );
        assert!(
            err("[app]\nname = \"Bad\"\n[functions.f]\ncomponent = \"f.wasm\"\n")
                .message
                .contains("app name")
        );
    }

    #[test]
    fn outbound_host_entries() {
        for ok in [
            "*",
            "a.com",
            "a.com:80",
            "*.a.com",
            "https://a.com",
            "127.0.0.1:8080",
            "a.com:*",
        ] {
            assert!(check_outbound_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a.com:x", "http://"] {
            assert!(check_outbound_host(bad).is_err(), "{bad}");
        }
    }

    const EVENTS: &str = r#"
[app]
name = "demo"

[functions.worker]
component = "w.wasm"
max_concurrency = 8
retry = { max_attempts = 4, backoff = "50ms" }

[functions.tick]
component = "t.wasm"

[queues.orders]
max_message_kb = 4
dedup_window = "1m"

[topics.scores]

[[triggers.queue]]
queue = "orders"
function = "worker"
batch_size = 5
max_attempts = 2
backoff = "10ms"
max_backoff = "1s"
visibility_timeout = "2m"

[[triggers.topic]]
topic = "scores"
function = "tick"

[[triggers.topic]]
topic = "scores"
queue = "orders"

[[triggers.schedule]]
cron = "*/5 * * * *"
timezone = "Europe/Paris"
function = "tick"

[[triggers.schedule]]
name = "fast"
every = "2s"
function = "worker"
"#;

    #[test]
    fn parses_events() {
        let m = Manifest::parse(EVENTS).unwrap();
        let comps = [("worker", "a"), ("tick", "b")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.repeat(64)))
            .collect();
        let spec = m.to_spec(&comps).unwrap();
        assert_eq!(spec.queues["orders"].max_message_bytes, Some(4096));
        assert_eq!(spec.queues["orders"].dedup_window_ms, 60_000);
        assert_eq!(spec.functions["worker"].retry.max_attempts, 4);
        assert_eq!(spec.functions["worker"].retry.backoff_ms, 50);
        let q = &spec.queue_triggers[0];
        assert_eq!((q.batch_size, q.max_concurrency), (5, 8));
        assert_eq!(q.retry.max_attempts, 2);
        assert_eq!(q.retry.max_backoff_ms, 1_000);
        assert_eq!(q.visibility_timeout_ms, Some(120_000));
        assert_eq!(spec.subscriptions.len(), 2);
        assert_eq!(spec.schedules[0].name, "tick");
        assert_eq!(spec.schedules[1].when, When::Every(2_000));
        assert_eq!(spec.topic_channels("scores").len(), 2);
        // async:worker, async:tick, queue:orders, topic:scores:tick, 2 schedules
        assert_eq!(spec.consumers().len(), 6);
    }

    #[test]
    fn event_errors_are_clear() {
        let base = "[app]\nname = \"demo\"\n[functions.f]\ncomponent = \"f.wasm\"\n";
        let e = err(&format!(
            "{base}[[triggers.queue]]\nqueue = \"nope\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("queue \"nope\" is not declared"), "{e}");
        assert_eq!(e.line, Some(5));
        let e = err(&format!(
            "{base}[[triggers.schedule]]\ncron = \"99 * * * *\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("cron expression"), "{e}");
        let e = err(&format!(
            "{base}[[triggers.schedule]]\nevery = \"soon\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("not a duration"), "{e}");
        let e = err(&format!(
            "{base}[[triggers.schedule]]\nevery = \"1s\"\ncron = \"* * * * *\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("exactly one"), "{e}");
        let e = err(&format!(
            "{base}[[triggers.schedule]]\ncron = \"* * * * *\"\ntimezone = \"Moon/Base\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("time zone"), "{e}");
        let e = err(&format!(
            "{base}[queues.q]\n[[triggers.queue]]\nqueue = \"q\"\nfunction = \"f\"\n[[triggers.queue]]\nqueue = \"q\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("already has a consumer"), "{e}");
        let e = err(&format!(
            "{base}[topics.t]\n[[triggers.topic]]\ntopic = \"t\"\n"
        ));
        assert!(
            e.message.contains("exactly one of `function` or `queue`"),
            "{e}"
        );
        let e = err(&format!(
            "{base}[queues.q]\n[[triggers.queue]]\nqueue = \"q\"\nfunction = \"f\"\nvisibility_timeout = \"5s\"\n"
        ));
        assert!(
            e.message
                .contains("must be longer than the function's timeout_ms"),
            "{e}"
        );
        let e = err(&format!("{base}retry = {{ max_attempts = 0 }}\n"));
        assert!(e.message.contains("max_attempts"), "{e}");
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use crate::policy::{Access, AuthMode};

    const BASE: &str = "[app]\nname = \"demo\"\n[functions.f]\ncomponent = \"f.wasm\"\n";

    #[test]
    fn policies_resolve_per_route() {
        let src = format!(
            "{BASE}[auth]\nreset_hook = \"f\"\n[gateway]\nmax_body_kb = 8\n[policies.players]\nauth = \"jwt\"\nroles = [\"player\"]\nrate_limit = {{ requests = 2, by = \"user\" }}\n[kv.pub]\naccess = \"public-read\"\n[collections.games]\naccess = \"owner\"\nowner_field = \"player\"\n[[triggers.http]]\nroute = \"/a\"\nfunction = \"f\"\npolicy = \"players\"\n[[triggers.http]]\nroute = \"/b\"\nfunction = \"f\"\n"
        );
        let m = Manifest::parse(&src).unwrap();
        let spec = m.to_spec(&[("f".into(), "h".into())].into()).unwrap();
        let a = spec.route_policy(&spec.routes[0]).unwrap();
        assert_eq!(a.auth, AuthMode::Jwt);
        assert_eq!(a.max_body_bytes, Some(8192));
        let b = spec.route_policy(&spec.routes[1]).unwrap();
        assert_eq!(b.auth, AuthMode::Public);
        assert_eq!(spec.kv["pub"].access, Access::PublicRead);
        assert_eq!(Access::parse("owner-read"), Ok(Access::OwnerRead));
        assert!(
            Access::parse("owner-write")
                .unwrap_err()
                .contains("owner-read")
        );
        assert_eq!(
            spec.collections["games"].owner_field.as_deref(),
            Some("player")
        );
        assert_eq!(spec.auth.unwrap().reset_hook.as_deref(), Some("f"));
    }

    #[test]
    fn policy_errors_are_clear() {
        let err = |s: String| Manifest::parse(&s).unwrap_err();
        let e = err(format!(
            "{BASE}[[triggers.http]]\nroute = \"/a\"\nfunction = \"f\"\npolicy = \"nope\"\n"
        ));
        assert!(e.message.contains("[policies.nope]"), "{e}");
        let e = err(format!("{BASE}[policies.p]\nauth = \"jwt\"\n"));
        assert!(e.message.contains("[auth] table"), "{e}");
        assert_eq!(e.line, Some(5));
        let e = err(format!("{BASE}[gateway]\ndeny = [\"nonsense\"]\n"));
        assert!(e.message.contains("CIDR"), "{e}");
        let e = err(format!("{BASE}[auth]\nreset_hook = \"mailer\"\n"));
        assert!(e.message.contains("mailer"), "{e}");
        let e = err(format!("{BASE}[collections.c]\naccess = \"friends\"\n"));
        assert!(e.message.contains("public-read"), "{e}");
    }
}
