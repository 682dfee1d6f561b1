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
//! # instance_requests = 1000   # WASI 0.3 only: reuse an instance for up to 1000 requests,
//! # instance_concurrency = 16  # serving up to 16 at once (default: a fresh instance per request)
//! env = { GREETING = "hi" }
//! allowed_outbound_hosts = ["api.example.com"]
//!
//! [[triggers.http]]
//! route = "/hello"
//! methods = ["GET"]      # optional, default: any method
//! function = "hello"
//! ```
//!
//! Triggers are grouped by kind under `[triggers]`: `http`, `websocket`
//! (see [`crate::realtime`]), and the event kinds `queue`, `topic`,
//! `schedule` and `storage` (see [`crate::events`] for queues, topics and
//! their triggers).
//!
//! Every parse and validation error carries the 1-based line it is about,
//! where it has one ([`ManifestError::line`], from the TOML spans). The CLI
//! (before upload) and the server (before activation) run the same
//! [`Manifest::parse`] and [`Manifest::to_spec`].
//!
//! One module per section: this one holds the manifest, `[app]`,
//! `[functions]` and `[[triggers.http]]`; `data` the `[kv]` and
//! `[collections]` tables and their grants; `events` queues, topics, retries
//! and the event triggers; `policy` `[auth]`, `[gateway]` and `[policies]`.
//! Each section's `*_parts` checks and resolves it, for both `parse` (which
//! only checks) and `to_spec` (which keeps the result).

mod data;
mod events;
mod policy;
mod realtime;

pub use data::{CollectionManifest, KvManifest, check_config_key};
pub use events::{
    MAX_SCHEDULE_PERIOD_MS, MIN_SCHEDULE_PERIOD_MS, QueueManifest, QueueTrigger, RetryManifest,
    ScheduleTrigger, StorageTrigger, TopicManifest, TopicTrigger,
};
pub use realtime::SocketTrigger;

use crate::names::check_name;
use crate::policy::{AuthManifest, PolicyManifest};
use crate::route::{normalize_method, parse_pattern};
use crate::spec::{AppSpec, FunctionSpec, Limits, RouteSpec};
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// See [`Limits::instance_requests`].
    #[serde(default)]
    pub instance_requests: Option<u32>,
    /// See [`Limits::instance_concurrency`].
    #[serde(default)]
    pub instance_concurrency: Option<u32>,
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
    /// `[[triggers.websocket]]` entries.
    #[serde(default)]
    pub websocket: Vec<Spanned<SocketTrigger>>,
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
            instance_concurrency: self.instance_concurrency.unwrap_or(1),
            instance_requests: self.instance_requests.unwrap_or(1),
        }
    }
}

pub(crate) fn line_of(src: &str, span: Range<usize>) -> usize {
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
            if l.instance_requests == 0 {
                return Err(err(
                    "instance_requests must be at least 1 (1 is a fresh instance per request)"
                        .into(),
                ));
            }
            if l.instance_concurrency == 0
                || l.instance_concurrency > Limits::MAX_INSTANCE_CONCURRENCY
            {
                return Err(err(format!(
                    "instance_concurrency = {} is out of range: use 1..={}",
                    l.instance_concurrency,
                    Limits::MAX_INSTANCE_CONCURRENCY
                )));
            }
            if l.instance_concurrency > l.instance_requests {
                return Err(err(format!(
                    "instance_concurrency = {} needs instance_requests of at least as many (it is {}): an instance serving {} requests at once serves at least that many in its life",
                    l.instance_concurrency, l.instance_requests, l.instance_concurrency
                )));
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
        self.socket_parts(src)?;
        Ok(())
    }

    pub(super) fn function_known(&self, f: &str) -> Result<(), String> {
        if self.functions.contains_key(f) {
            return Ok(());
        }
        let known: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        Err(format!(
            "function {f:?} is not defined by the app (defined: {})",
            known.join(", ")
        ))
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
        let sockets = self.socket_parts("")?;
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
            sockets,
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

    /// The error `src` is refused with (shared by the sections' tests).
    pub(super) fn err(src: &str) -> ManifestError {
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
            err(&format!("{base}instance_requests = 0\n"))
                .message
                .contains("instance_requests must be at least 1")
        );
        assert!(
            err(&format!(
                "{base}instance_concurrency = 1001\ninstance_requests = 5000\n"
            ))
            .message
            .contains("instance_concurrency = 1001 is out of range")
        );
        assert!(
            err(&format!("{base}instance_concurrency = 8\n"))
                .message
                .contains("needs instance_requests of at least as many")
        );
        let m = Manifest::parse(&format!(
            "{base}instance_concurrency = 8\ninstance_requests = 100\n"
        ))
        .unwrap();
        let l = m.functions["f"].get_ref().limits();
        assert_eq!((l.instance_concurrency, l.instance_requests), (8, 100));
        assert!(l.reuses_instances());
        assert!(!Limits::default().reuses_instances());
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
}
