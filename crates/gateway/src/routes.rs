//! The route table: every active revision's HTTP routes, compiled into one
//! matcher per host. A table is immutable; a deploy builds a new one and
//! swaps it in whole, so a request sees exactly one revision of each app.
//!
//! Apps bound to a host (`[app] host`) get a `matchit` router of their own;
//! unbound apps share one. Building refuses routes of different apps that
//! collide and a host that two apps claim (a host has one owner,
//! [`RouteTable::host_owner`]). A bound host is looked up in its app's
//! router only, never falling through to the unbound apps'. Policies are
//! compiled once per table and shared by the routes that use them; a new
//! table reuses the unchanged ones, so a deploy does not reset rate limits.

use crate::policy::{Policy, cors_layer};
use http::Method;
use nimbus_core::route::parse_pattern;
use nimbus_runtime::{ActiveApp, Function};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A route that matched.
#[derive(Clone)]
pub struct Target {
    /// Methods served; empty means any.
    pub methods: Vec<Method>,
    /// The pattern as the user wrote it.
    pub pattern: Arc<str>,
    /// Function to invoke.
    pub function: Arc<Function>,
    /// Its policy, unless it lets everyone in unchecked.
    pub policy: Option<Arc<Policy>>,
    /// CORS, if its policy has it (not on a WebSocket route, whose
    /// policy's CORS origins are checked at the upgrade instead).
    pub cors: Option<tower_http::cors::CorsLayer>,
    /// The WebSocket route it is, if it is one (`function` is then the
    /// route's message function).
    pub socket: Option<Arc<nimbus_realtime::SocketRoute>>,
}

/// Result of a lookup.
pub enum Lookup<'a> {
    /// A route matched path and method.
    Found {
        /// The route.
        target: &'a Target,
        /// Path parameters.
        params: Vec<(String, String)>,
    },
    /// A route matched the path but not the method.
    MethodNotAllowed(Vec<Method>),
    /// Nothing matched.
    NotFound,
}

/// Why routes cannot be activated together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteConflict(pub String);

#[derive(Default)]
struct HostRouter {
    /// The app a bound host belongs to (empty for the unbound apps').
    owner: String,
    router: matchit::Router<usize>,
    groups: Vec<Vec<Target>>,
    by_pattern: HashMap<String, usize>,
}

/// All active routes.
#[derive(Default)]
pub struct RouteTable {
    apps: BTreeMap<String, Arc<ActiveApp>>,
    /// One router per bound host (an app with no routes still has one, so
    /// it owns its host).
    hosts: HashMap<String, HostRouter>,
    default: HostRouter,
    /// Compiled policies by (app, policy name; `""` for `[gateway]` alone).
    policies: HashMap<(String, String), Arc<Policy>>,
}

fn methods_of(names: &[String]) -> Vec<Method> {
    names
        .iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect()
}

fn overlap(a: &[Method], b: &[Method]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

impl RouteTable {
    /// Builds a table from active apps; refuses routes of two apps that
    /// collide (same or ambiguous path on the same host).
    pub fn build(
        apps: impl IntoIterator<Item = Arc<ActiveApp>>,
    ) -> Result<RouteTable, RouteConflict> {
        Self::build_after(apps, None)
    }

    /// Like [`RouteTable::build`], reusing `previous`'s compiled policies
    /// that did not change (their rate-limit buckets carry over).
    fn build_after(
        apps: impl IntoIterator<Item = Arc<ActiveApp>>,
        previous: Option<&RouteTable>,
    ) -> Result<RouteTable, RouteConflict> {
        let mut table = RouteTable::default();
        for app in apps {
            table.apps.insert(app.spec.name.clone(), app);
        }
        for app in table.apps.values() {
            let named = app
                .spec
                .routes
                .iter()
                .map(|r| (&r.path, &r.policy))
                .chain(app.spec.sockets.iter().map(|s| (&s.path, &s.policy)));
            for (path, name) in named {
                let key = (app.spec.name.clone(), name.clone().unwrap_or_default());
                if table.policies.contains_key(&key) {
                    continue;
                }
                let spec = app
                    .spec
                    .named_policy(name.as_deref())
                    .map_err(|e| RouteConflict(format!("route {path:?}: policy: {e}")))?;
                let policy = match previous.and_then(|p| p.policies.get(&key)) {
                    Some(old) if old.spec == spec => old.clone(),
                    _ => Arc::new(Policy::new(&app.spec.name, spec)),
                };
                table.policies.insert(key, policy);
            }
        }
        for app in table.apps.values() {
            let hr = match &app.spec.host {
                Some(h) => {
                    let hr = table.hosts.entry(h.clone()).or_insert_with(|| HostRouter {
                        owner: app.spec.name.clone(),
                        ..Default::default()
                    });
                    if hr.owner != app.spec.name {
                        return Err(host_taken(h, &app.spec.name, &hr.owner));
                    }
                    hr
                }
                None => &mut table.default,
            };
            let mut targets = Vec::new();
            for route in &app.spec.routes {
                let function = app.functions.get(&route.function).cloned().ok_or_else(|| {
                    RouteConflict(format!(
                        "route {:?} points at unknown function {:?}",
                        route.path, route.function
                    ))
                })?;
                let policy = table.policies[&(
                    app.spec.name.clone(),
                    route.policy.clone().unwrap_or_default(),
                )]
                    .clone();
                let methods = methods_of(&route.methods);
                let cors = policy.spec.cors.as_ref().map(|c| cors_layer(c, &methods));
                targets.push(Target {
                    methods,
                    pattern: route.path.as_str().into(),
                    function,
                    policy: (!policy.spec.is_open()).then_some(policy),
                    cors,
                    socket: None,
                });
            }
            for socket in &app.spec.sockets {
                let route =
                    nimbus_realtime::SocketRoute::new(app, socket).map_err(RouteConflict)?;
                let policy = table.policies[&(
                    app.spec.name.clone(),
                    socket.policy.clone().unwrap_or_default(),
                )]
                    .clone();
                targets.push(Target {
                    methods: vec![Method::GET],
                    pattern: route.pattern.clone(),
                    function: route.message.clone(),
                    policy: (!policy.spec.is_open()).then_some(policy),
                    cors: None,
                    socket: Some(Arc::new(route)),
                });
            }
            for target in targets {
                let pattern = parse_pattern(&target.pattern).map_err(RouteConflict)?;
                if let Some(&i) = hr.by_pattern.get(&pattern.normalized) {
                    let group = &mut hr.groups[i];
                    if let Some(other) = group.iter().find(|t| {
                        t.function.app != app.spec.name || overlap(&t.methods, &target.methods)
                    }) {
                        return Err(conflict(app, &target.pattern, other));
                    }
                    group.push(target);
                    continue;
                }
                let i = hr.groups.len();
                if let Err(e) = hr.router.insert(pattern.normalized.clone(), i) {
                    let other = match &e {
                        matchit::InsertError::Conflict { with } => hr
                            .by_pattern
                            .get(with)
                            .and_then(|&j| hr.groups[j].first())
                            .map(|t| format!("route {:?} of app {:?}", t.pattern, t.function.app)),
                        _ => None,
                    };
                    return Err(RouteConflict(format!(
                        "route {:?} of app {:?} cannot be added: {} ({e}); make the paths distinct",
                        target.pattern,
                        app.spec.name,
                        other
                            .map(|o| format!("it is ambiguous with {o}"))
                            .unwrap_or_else(|| "it is ambiguous with another route".into())
                    )));
                }
                hr.by_pattern.insert(pattern.normalized, i);
                hr.groups.push(vec![target]);
            }
        }
        Ok(table)
    }

    /// A new table with `app` added or replaced.
    pub fn with_app(&self, app: Arc<ActiveApp>) -> Result<RouteTable, RouteConflict> {
        if let Some(h) = &app.spec.host
            && let Some(owner) = self.host_owner(h)
            && owner != app.spec.name
        {
            return Err(host_taken(h, &app.spec.name, owner));
        }
        let mut apps: Vec<Arc<ActiveApp>> = self
            .apps
            .values()
            .filter(|a| a.spec.name != app.spec.name)
            .cloned()
            .collect();
        apps.push(app);
        RouteTable::build_after(apps, Some(self))
    }

    /// A new table of `apps` (another node's view of which revisions are
    /// active), keeping this one's compiled policies that did not change,
    /// so their rate-limit buckets carry over.
    pub fn rebuild(
        &self,
        apps: impl IntoIterator<Item = Arc<ActiveApp>>,
    ) -> Result<RouteTable, RouteConflict> {
        RouteTable::build_after(apps, Some(self))
    }

    /// A new table without `app`.
    pub fn without_app(&self, name: &str) -> RouteTable {
        RouteTable::build_after(
            self.apps.values().filter(|a| a.spec.name != name).cloned(),
            Some(self),
        )
        .expect("removing an app cannot create a conflict")
    }

    /// Every active app.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<ActiveApp>> {
        self.apps.values()
    }

    /// Every compiled policy.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.policies.values()
    }

    /// One active app.
    pub fn app(&self, name: &str) -> Option<&Arc<ActiveApp>> {
        self.apps.get(name)
    }

    /// The app that owns a host name, if one is bound to it.
    pub fn host_owner(&self, host: &str) -> Option<&str> {
        self.hosts.get(host).map(|hr| hr.owner.as_str())
    }

    /// Finds the route for a request. A host bound to an app serves only
    /// that app's routes; any other host serves the unbound apps' routes.
    pub fn lookup(&self, host: Option<&str>, method: &Method, path: &str) -> Lookup<'_> {
        let hr = host
            .and_then(|h| self.hosts.get(h))
            .unwrap_or(&self.default);
        let Ok(m) = hr.router.at(path) else {
            return Lookup::NotFound;
        };
        let group = &hr.groups[*m.value];
        if let Some(target) = group
            .iter()
            .find(|t| t.methods.is_empty() || t.methods.contains(method))
        {
            let params = m
                .params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            return Lookup::Found { target, params };
        }
        let allowed: Vec<Method> = group
            .iter()
            .flat_map(|t| t.methods.iter().cloned())
            .collect();
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed(allowed)
        }
    }
}

fn host_taken(host: &str, claimant: &str, owner: &str) -> RouteConflict {
    RouteConflict(format!(
        "host {host:?} of app {claimant:?} already belongs to app {owner:?}: a host name serves one app; choose another host, or delete that app first"
    ))
}

fn conflict(app: &ActiveApp, path: &str, other: &Target) -> RouteConflict {
    if other.function.app == app.spec.name {
        RouteConflict(format!(
            "route {path:?} is declared twice in app {:?} for the same method",
            app.spec.name
        ))
    } else {
        RouteConflict(format!(
            "route {path:?} of app {:?} collides with route {:?} of app {:?}: choose another path, or bind one app to a host name ([app] host = ...)",
            app.spec.name, other.pattern, other.function.app
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::AppSpec;
    use nimbus_core::{FunctionSpec, Limits, RouteSpec};

    fn app(name: &str, host: Option<&str>, routes: &[(&str, &[&str])]) -> Arc<ActiveApp> {
        let f = FunctionSpec {
            component: "0".repeat(64),
            limits: Limits::default(),
            env: Default::default(),
            allowed_outbound_hosts: vec![],
            ..Default::default()
        };
        Arc::new(ActiveApp::new(
            AppSpec {
                name: name.into(),
                host: host.map(Into::into),
                functions: [("f".to_string(), f)].into(),
                routes: routes
                    .iter()
                    .map(|(p, ms)| RouteSpec {
                        path: p.to_string(),
                        methods: ms.iter().map(|m| m.to_string()).collect(),
                        function: "f".into(),
                        policy: None,
                    })
                    .collect(),
                ..Default::default()
            },
            1,
        ))
    }

    fn found(
        t: &RouteTable,
        host: Option<&str>,
        method: Method,
        path: &str,
    ) -> Option<(String, Vec<(String, String)>)> {
        match t.lookup(host, &method, path) {
            Lookup::Found { target, params } => Some((target.function.app.clone(), params)),
            _ => None,
        }
    }

    #[test]
    fn routes_params_and_wildcards() {
        let t = RouteTable::build([app(
            "a",
            None,
            &[
                ("/hello", &[]),
                ("/games/{id}/moves", &["POST"]),
                ("/static/*", &["GET"]),
            ],
        )])
        .unwrap();
        assert_eq!(found(&t, None, Method::GET, "/hello").unwrap().0, "a");
        let (_, params) = found(&t, None, Method::POST, "/games/42/moves").unwrap();
        assert_eq!(params, vec![("id".to_string(), "42".to_string())]);
        let (_, params) = found(&t, None, Method::GET, "/static/css/site.css").unwrap();
        assert_eq!(
            params,
            vec![("path".to_string(), "css/site.css".to_string())]
        );
        assert!(
            matches!(t.lookup(None, &Method::GET, "/games/42/moves"), Lookup::MethodNotAllowed(m) if m == vec![Method::POST])
        );
        assert!(matches!(
            t.lookup(None, &Method::GET, "/nope"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn apps_cannot_collide() {
        let err = RouteTable::build([
            app("a", None, &[("/x", &[])]),
            app("b", None, &[("/x", &["GET"])]),
        ])
        .err()
        .unwrap();
        assert!(
            err.0.contains("collides with route \"/x\" of app \"a\""),
            "{err}"
        );
        let err = RouteTable::build([
            app("a", None, &[("/x/{id}", &[])]),
            app("b", None, &[("/x/{name}", &[])]),
        ])
        .err()
        .unwrap();
        assert!(err.0.contains("ambiguous"), "{err}");
        // Host-bound apps live in their own space.
        let t = RouteTable::build([
            app("a", None, &[("/x", &[])]),
            app("b", Some("b.test"), &[("/x", &[])]),
        ])
        .unwrap();
        assert_eq!(found(&t, Some("b.test"), Method::GET, "/x").unwrap().0, "b");
        assert_eq!(
            found(&t, Some("other.test"), Method::GET, "/x").unwrap().0,
            "a"
        );
        assert_eq!(found(&t, None, Method::GET, "/x").unwrap().0, "a");
    }

    #[test]
    fn a_bound_host_serves_only_its_app() {
        let t = RouteTable::build([
            app("a", Some("shop.test"), &[("/x", &[])]),
            app("b", None, &[("/login", &[]), ("/x", &[])]),
        ])
        .unwrap();
        assert_eq!(t.host_owner("shop.test"), Some("a"));
        // B's routes do not answer on A's host, not even paths A lacks.
        assert!(found(&t, Some("shop.test"), Method::GET, "/login").is_none());
        assert_eq!(
            found(&t, Some("shop.test"), Method::GET, "/x").unwrap().0,
            "a"
        );
        assert_eq!(
            found(&t, Some("else.test"), Method::GET, "/login")
                .unwrap()
                .0,
            "b"
        );
        // A host is one app's: a second claim is refused, whatever its routes.
        let err = RouteTable::build([
            app("a", Some("shop.test"), &[("/x", &[])]),
            app("b", Some("shop.test"), &[("/y", &[])]),
        ])
        .err()
        .unwrap();
        assert!(err.0.contains("already belongs to app \"a\""), "{err}");
        // Deploying a claimant onto a table names the claimant and the owner.
        let t = RouteTable::build([app("z", Some("shop.test"), &[("/x", &[])])]).unwrap();
        let err = t
            .with_app(app("b", Some("shop.test"), &[("/y", &[])]))
            .err()
            .unwrap();
        assert!(
            err.0.contains("of app \"b\" already belongs to app \"z\""),
            "{err}"
        );
        // A bound app with no routes still owns its host.
        let t = RouteTable::build([
            app("a", Some("shop.test"), &[]),
            app("b", None, &[("/login", &[])]),
        ])
        .unwrap();
        assert!(found(&t, Some("shop.test"), Method::GET, "/login").is_none());
    }

    #[test]
    fn same_path_different_methods_in_one_app() {
        let t =
            RouteTable::build([app("a", None, &[("/x", &["GET"]), ("/x", &["POST"])])]).unwrap();
        assert!(found(&t, None, Method::POST, "/x").is_some());
        assert!(matches!(
            t.lookup(None, &Method::PUT, "/x"),
            Lookup::MethodNotAllowed(_)
        ));
        let t2 = t.with_app(app("b", None, &[("/y", &[])])).unwrap();
        assert!(found(&t2, None, Method::GET, "/y").is_some());
        assert!(found(&t2.without_app("b"), None, Method::GET, "/y").is_none());
    }
}
