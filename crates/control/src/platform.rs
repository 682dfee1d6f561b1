//! Deploy, rollback, delete and restore: the operations that change which
//! revision of an app serves. All of them are serialised by one lock and end
//! with one atomic swap of the gateway's route table; validation (manifest,
//! components, compilation, route collisions) happens before anything is
//! written, so a failed deploy leaves the active revision serving.
//!
//! A deploy: validate the manifest and the uploads → load or compile each
//! component, reporting progress → check route collisions → prepare every
//! capability ([`crate::capability`]) and compute every function's
//! configuration (manifest, then stored values, then secrets) → store the
//! revision and mark it active in one transaction → activate. `activate`
//! sizes cluster-wide concurrency shares, syncs the event consumers and
//! swaps the table. Delete is one transaction of `Store::delete_app` (which
//! bumps the cluster generation, so every node drops the app and reloads
//! its keys), then what capabilities keep outside the database.
//!
//! In a cluster, [`Platform::resync`] reloads what another node changed
//! (keeping unchanged apps and their rate-limit buckets; a request in
//! flight keeps its revision), and [`Platform::heartbeat`] (every second)
//! takes this node's place among the live ones. A function with
//! `concurrency_scope = "cluster"` gets [`concurrency_share`] of its
//! `max_concurrency` (the shares add up to it), with no per-request round
//! trip to the database; when membership changes, shares move within a few
//! seconds.

use nimbus_core::{AppSpec, Manifest};
use nimbus_events::Events;
use nimbus_gateway::{ActiveApp, Gateway, RouteTable};
use nimbus_identity::{ApiKeys, Sealer, Users};
use nimbus_runtime::{ConfigSnapshot, manifest_config};
use nimbus_runtime::{LoadSource, Runtime};
use nimbus_store::{ComponentStore, RecordWriter, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

/// Installs computed snapshots into an app's functions.
fn install_config(app: &ActiveApp, mut snapshots: BTreeMap<String, ConfigSnapshot>) {
    for (name, f) in &app.functions {
        if let Some(snap) = snapshots.remove(name) {
            f.set_config(snap);
        }
    }
}

/// An operation failed; the message says why and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The request is wrong (bad manifest, missing component, bad code...).
    #[error("{0}")]
    Invalid(String),
    /// The thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It collides with what is deployed.
    #[error("{0}")]
    Conflict(String),
    /// The app is at a storage quota.
    #[error("{0}")]
    QuotaExceeded(String),
    /// Nimbus itself failed.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for PlatformError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => PlatformError::NotFound(m),
            e @ StoreError::QuotaExceeded(_) => PlatformError::QuotaExceeded(e.to_string()),
            other => PlatformError::Internal(other.to_string()),
        }
    }
}

/// Progress of a deploy, streamed to the client as JSON lines.
pub use nimbus_api::DeployEvent;

/// The running platform: store, runtime and gateway, and the operations on them.
pub struct Platform {
    /// SQL store.
    pub store: Store,
    /// Component files.
    pub components: ComponentStore,
    /// The function runner.
    pub runtime: Arc<Runtime>,
    /// The data plane.
    pub gateway: Arc<Gateway>,
    /// Invocation record writer.
    pub records: RecordWriter,
    /// Queues, topics, schedules, async invocations.
    pub events: Arc<Events>,
    /// Seals secrets at rest.
    pub sealer: Sealer,
    /// API keys.
    pub keys: ApiKeys,
    /// App user pools (and their signing keys).
    pub users: Users,
    /// Prices of usage cost estimates.
    pub prices: crate::PriceSheet,
    /// Largest KV value or document accepted, in bytes.
    pub max_value_bytes: u64,
    /// Largest component upload accepted, in bytes.
    pub max_component_bytes: u64,
    /// Renders `/v1/metrics` (`None`: metrics are off).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The capabilities' parts in the app life cycle.
    capabilities: Vec<Box<dyn crate::capability::Lifecycle>>,
    lock: Mutex<()>,
    /// This node's place among the cluster's live nodes: (index, count).
    cluster_view: std::sync::Mutex<(u32, u32)>,
}

/// A node's share of a cluster-wide limit: the limit split among `count`
/// nodes, the remainder to the first ones, so the shares add up to it.
pub fn concurrency_share(limit: u32, index: u32, count: u32) -> u32 {
    let count = count.max(1);
    limit / count + u32::from(index < limit % count)
}

/// Limits of what the control plane accepts, and the price sheet.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// Prices of usage cost estimates.
    pub prices: crate::PriceSheet,
    /// The metrics recorder's handle (`None`: metrics are off).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Largest component upload, in bytes.
    pub max_component_bytes: u64,
    /// Largest KV value or document, in bytes.
    pub max_value_bytes: u64,
    /// The object bodies (a deleted app's leave with it).
    pub blob_files: nimbus_store::BlobFiles,
}

impl Platform {
    /// Wires the parts together.
    pub fn new(
        store: Store,
        components: ComponentStore,
        gateway: Arc<Gateway>,
        records: RecordWriter,
        sealer: Sealer,
        users: Users,
        limits: PlatformSettings,
    ) -> Arc<Platform> {
        let keys = gateway.verifiers().keys.clone();
        let capabilities = crate::capability::all(&store, &users, &limits.blob_files);
        Arc::new(Platform {
            capabilities,
            keys,
            store,
            components,
            runtime: gateway.runtime().clone(),
            events: gateway.events().clone(),
            gateway,
            records,
            max_component_bytes: limits.max_component_bytes,
            sealer,
            max_value_bytes: limits.max_value_bytes,
            users,
            prices: limits.prices,
            metrics: limits.metrics,
            lock: Mutex::new(()),
            cluster_view: std::sync::Mutex::new((0, 1)),
        })
    }

    /// Readies an app before it serves: what each capability needs
    /// ([`crate::capability`]), and every function's configuration
    /// (manifest, then stored values and secrets).
    async fn prepare(&self, app: &ActiveApp) -> Result<(), PlatformError> {
        self.prepare_capabilities(&app.spec).await?;
        self.apply_config(app).await
    }

    /// Runs every capability's `prepare` for `spec`.
    async fn prepare_capabilities(&self, spec: &AppSpec) -> Result<(), PlatformError> {
        for c in &self.capabilities {
            c.prepare(spec).await.map_err(|e| match e {
                PlatformError::Internal(m) => {
                    PlatformError::Internal(format!("preparing {}: {m}", c.name()))
                }
                e => e,
            })?;
        }
        Ok(())
    }

    /// A function of an app at a revision (`None`: the active one), ready
    /// to invoke with its configuration, for replays.
    pub async fn function_at(
        &self,
        app: &str,
        revision: Option<i64>,
        function: &str,
    ) -> Result<Arc<nimbus_runtime::Function>, PlatformError> {
        let table = self.gateway.table();
        let active = table.app(app);
        let at = match (revision, active) {
            (None, Some(a)) => a.clone(),
            (Some(n), Some(a)) if a.revision == n => a.clone(),
            (None, None) => {
                return Err(PlatformError::NotFound(format!(
                    "app {app:?} is not deployed: pass a revision"
                )));
            }
            (Some(n), _) => {
                let rev = self.store.revision(app, n).await?;
                let at = Arc::new(ActiveApp::new(rev.spec, n));
                self.apply_config(&at).await?;
                at
            }
        };
        at.functions.get(function).cloned().ok_or_else(|| {
            PlatformError::NotFound(format!(
                "revision {} of app {app:?} has no function {function:?}",
                at.revision
            ))
        })
    }

    /// Computes and installs each function's configuration: the app's
    /// manifest `[variables]`, the function's manifest `config`, values set
    /// with `nimbus config set` (app-wide, then for the function), and
    /// secrets likewise. New invocations see the new snapshot at once.
    async fn apply_config(&self, app: &ActiveApp) -> Result<(), PlatformError> {
        let snapshots = self.config_snapshots(&app.spec).await?;
        install_config(app, snapshots);
        Ok(())
    }

    /// Each function's configuration snapshot for a spec (fails if a stored
    /// secret cannot be opened), without installing anything.
    async fn config_snapshots(
        &self,
        spec: &AppSpec,
    ) -> Result<BTreeMap<String, ConfigSnapshot>, PlatformError> {
        let rows = self.store.config_rows(&spec.name).await?;
        let mut out = BTreeMap::new();
        for (name, fspec) in &spec.functions {
            let mut vars: BTreeMap<String, String> =
                manifest_config(spec, fspec).vars.into_iter().collect();
            let mut secrets = Vec::new();
            for scope in ["", name.as_str()] {
                for row in rows.iter().filter(|r| r.function == scope) {
                    let value = if row.secret {
                        let v = self.sealer.open(&row.value).map_err(|e| {
                            PlatformError::Internal(format!("secret {:?}: {e}", row.key))
                        })?;
                        secrets.push(v.clone());
                        v
                    } else {
                        row.value.clone()
                    };
                    vars.insert(row.key.clone(), value);
                }
            }
            out.insert(
                name.clone(),
                ConfigSnapshot {
                    vars: vars.into_iter().collect(),
                    secrets,
                },
            );
        }
        Ok(out)
    }

    /// Sets (`Some`) or removes (`None`) a configuration value or secret of
    /// an app (or one of its functions), and applies it to new invocations
    /// at once — no new revision.
    pub async fn set_config(
        &self,
        app: &str,
        function: Option<&str>,
        key: &str,
        value: Option<&str>,
        secret: bool,
    ) -> Result<bool, PlatformError> {
        let _guard = self.lock.lock().await;
        nimbus_core::manifest::check_config_key(key).map_err(PlatformError::Invalid)?;
        self.store.app(app).await?;
        let table = self.gateway.table();
        let active = table.app(app).cloned();
        if let (Some(f), Some(a)) = (function, &active)
            && !a.functions.contains_key(f)
        {
            return Err(PlatformError::NotFound(format!(
                "app {app:?} has no function {f:?}"
            )));
        }
        let scope = function.unwrap_or("");
        let changed = match value {
            Some(v) => {
                if v.len() > 64 * 1024 {
                    return Err(PlatformError::Invalid(
                        "a configuration value is at most 64 KiB".into(),
                    ));
                }
                let stored = if secret {
                    self.sealer.seal(v)
                } else {
                    v.to_string()
                };
                self.store
                    .config_set(app, scope, key, &stored, secret)
                    .await?;
                true
            }
            None => self.store.config_unset(app, scope, key).await?,
        };
        if let Some(a) = active {
            self.apply_config(&a).await?;
        }
        Ok(changed)
    }

    /// Makes `table` the serving one: routes, and the event consumers and
    /// schedules of every active app.
    fn activate(&self, table: RouteTable) {
        self.apply_shares(&table);
        self.events.sync(table.apps().cloned());
        self.gateway.swap(table);
        // A WebSocket connection belongs to the revision it connected to:
        // one whose app is now served by another (deployed, rolled back,
        // deleted, or a new app of the same name) closes with 1012.
        let table = self.gateway.table();
        self.gateway
            .realtime()
            .close_stale(|app| table.app(app).cloned());
    }

    /// Sends this node's heartbeat (it serves at `url`, up since
    /// `started_at_us`) and takes its place among the live nodes, resizing
    /// the shares of cluster-wide limits if it moved.
    pub async fn heartbeat(&self, url: &str, started_at_us: i64) {
        match self.store.heartbeat(url, started_at_us).await {
            Ok(live) => {
                let me = self.store.node_id();
                let index = live.iter().position(|n| n == me).unwrap_or(0);
                self.set_cluster_view(index as u32, live.len().max(1) as u32);
            }
            Err(e) => tracing::warn!(error = %e, "the cluster heartbeat failed"),
        }
    }

    fn set_cluster_view(&self, index: u32, count: u32) {
        let changed = {
            let mut v = self.cluster_view.lock().expect("cluster view lock");
            std::mem::replace(&mut *v, (index, count)) != (index, count)
        };
        if changed {
            tracing::info!(index, nodes = count, "cluster membership changed");
            self.apply_shares(&self.gateway.table());
        }
    }

    fn apply_shares(&self, table: &RouteTable) {
        let (index, count) = *self.cluster_view.lock().expect("cluster view lock");
        for app in table.apps() {
            for f in app.functions.values() {
                f.set_concurrency_share(concurrency_share(f.limits.max_concurrency, index, count));
            }
        }
    }

    /// Re-reads API keys and signing keys.
    async fn reload_keys(&self) -> Result<(), PlatformError> {
        let reloaded = async {
            self.keys.reload().await?;
            self.users.tokens().reload().await
        };
        reloaded
            .await
            .map_err(|e| PlatformError::Internal(format!("reloading keys: {e}")))
    }

    /// Loads (compiling if needed) every function of a stored revision;
    /// the function that cannot be loaded, and why.
    async fn load_functions(&self, spec: &AppSpec) -> Result<(), (String, String)> {
        for (name, f) in &spec.functions {
            if let Err(e) = self.runtime.load(&f.component).await {
                return Err((name.clone(), e.to_string()));
            }
        }
        Ok(())
    }

    /// Brings every app back at its active revision (at start-up), without
    /// loading its code: a node with thousands of functions listens at
    /// once, each function loads at its first request (or at
    /// [`Platform::warm_up`]'s turn). An app whose component files are
    /// gone is logged and skipped; the others serve.
    pub async fn restore(&self) -> Result<usize, PlatformError> {
        let _guard = self.lock.lock().await;
        let mut apps = Vec::new();
        for rev in self.store.active_revisions().await? {
            let missing = rev
                .spec
                .functions
                .iter()
                .find(|(_, f)| !self.components.contains(&f.component));
            if let Some((function, f)) = missing {
                tracing::error!(app = %rev.app, %function, component = %f.component, "the function's component is not stored; app not restored: deploy it again");
                continue;
            }
            let app = Arc::new(ActiveApp::new(rev.spec, rev.number));
            if let Err(e) = self.prepare(&app).await {
                tracing::error!(app = %rev.app, error = %e, "cannot prepare app data; app not restored");
                continue;
            }
            apps.push(app);
        }
        let n = apps.len();
        let table = RouteTable::build(apps)
            .map_err(|e| PlatformError::Internal(format!("stored routes collide: {e}")))?;
        self.activate(table);
        Ok(n)
    }

    /// After a start: loads the active functions' code in the background,
    /// one component at a time, taking the apps in turn (one function of
    /// each, then the next of each), so no tenant's functions wait behind
    /// all of another's. Components go into memory while the runtime has
    /// room (`--loaded-capacity`, counting what requests loaded
    /// meanwhile); past that it only makes sure the compile cache holds
    /// their native code (after an upgrade that changed the engine, it
    /// compiles them now rather than at their first request). A function
    /// that cannot load is logged; its requests answer 503 with the reason.
    pub async fn warm_up(&self) {
        let table = self.gateway.table();
        let capacity = self.runtime.config().loaded_capacity;
        let mut queues: Vec<(String, std::collections::VecDeque<(String, String)>)> = table
            .apps()
            .map(|app| {
                let functions = app
                    .spec
                    .functions
                    .iter()
                    .map(|(name, f)| (name.clone(), f.component.clone()))
                    .collect();
                (app.spec.name.clone(), functions)
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let (mut loaded, mut compiled, mut failed) = (0, 0, 0);
        let started = std::time::Instant::now();
        while !queues.is_empty() {
            for (app, functions) in &mut queues {
                let Some((name, component)) = functions.pop_front() else {
                    continue;
                };
                if !seen.insert(component.clone()) {
                    continue;
                }
                let done = if self.runtime.loaded_count() < capacity {
                    self.runtime.load(&component).await.map(|_| loaded += 1)
                } else {
                    self.runtime
                        .precompile(&component)
                        .await
                        .map(|_| compiled += 1)
                };
                if let Err(e) = done {
                    failed += 1;
                    tracing::error!(%app, function = %name, error = %e, "cannot load function; its requests answer 503 with this error");
                }
            }
            queues.retain(|(_, functions)| !functions.is_empty());
        }
        tracing::info!(
            loaded,
            precompiled = compiled,
            failed,
            elapsed = ?started.elapsed(),
            "warmed up the active functions"
        );
    }

    /// Catches up with changes made through another node of the cluster:
    /// apps whose active revision changed are loaded and swapped in (the
    /// others keep their loaded functions), deleted apps go, configuration
    /// is re-read, API keys and signing keys are reloaded. A request in
    /// flight keeps the revision it started with.
    pub async fn resync(&self) -> Result<(), PlatformError> {
        let _guard = self.lock.lock().await;
        let current = self.gateway.table();
        let mut apps = Vec::new();
        for rev in self.store.active_revisions().await? {
            let app = match current.app(&rev.app) {
                Some(a) if a.revision == rev.number => a.clone(),
                _ => {
                    let loaded = self.load_functions(&rev.spec).await;
                    if let Err((function, e)) = &loaded {
                        tracing::error!(app = %rev.app, %function, error = %e, "cannot load the revision another node activated; keeping the current one");
                    }
                    match (loaded.is_ok(), current.app(&rev.app)) {
                        (true, _) => {
                            tracing::info!(app = %rev.app, revision = rev.number, "activated through another node");
                            Arc::new(ActiveApp::new(rev.spec, rev.number))
                        }
                        (false, Some(a)) => a.clone(),
                        (false, None) => continue,
                    }
                }
            };
            self.prepare(&app).await?;
            apps.push(app);
        }
        let table = current
            .rebuild(apps)
            .map_err(|e| PlatformError::Internal(format!("stored routes collide: {e}")))?;
        self.activate(table);
        self.reload_keys().await?;
        Ok(())
    }

    /// Checks a deploy request before anything runs: the manifest, and that
    /// every function's component was uploaded and fits the platform limits.
    pub fn validate(
        &self,
        app: &str,
        manifest: &str,
        components: &BTreeMap<String, String>,
    ) -> Result<AppSpec, PlatformError> {
        let parsed =
            Manifest::parse(manifest).map_err(|e| PlatformError::Invalid(e.to_string()))?;
        if parsed.name() != app {
            return Err(PlatformError::Invalid(format!(
                "the manifest is for app {:?} but was sent to app {app:?}",
                parsed.name()
            )));
        }
        for (name, hash) in components {
            if !nimbus_core::names::is_sha256_hex(hash) {
                return Err(PlatformError::Invalid(format!(
                    "function {name:?}: {hash:?} is not a SHA-256 hex digest"
                )));
            }
            if !self.components.contains(hash) {
                return Err(PlatformError::Invalid(format!(
                    "function {name:?}: component {hash} was not uploaded; upload it first (PUT /v1/components/{hash})"
                )));
            }
        }
        let spec = parsed
            .to_spec(components)
            .map_err(|e| PlatformError::Invalid(e.to_string()))?;
        for (name, f) in &spec.functions {
            self.runtime
                .check_limits(name, &f.limits)
                .map_err(|e| PlatformError::Invalid(e.to_string()))?;
        }
        Ok(spec)
    }

    /// Deploys a validated spec as a new revision, reporting progress.
    /// On any error the previous revision keeps serving.
    pub async fn deploy(
        &self,
        spec: AppSpec,
        manifest: String,
        progress: mpsc::Sender<DeployEvent>,
    ) -> Result<i64, PlatformError> {
        let _guard = self.lock.lock().await;
        let total = spec.functions.len();
        let _ = progress.send(DeployEvent::Started { total }).await;
        // Functions compile in parallel, as many at once as the node has
        // cores (a heavy JavaScript or Python component takes seconds);
        // progress is reported as each one is ready. Functions sharing a
        // component wait for its one compilation (`Runtime::load`).
        use futures::StreamExt as _;
        let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs: Vec<(String, String)> = spec
            .functions
            .iter()
            .map(|(name, f)| (name.clone(), f.component.clone()))
            .collect();
        let runtime = self.runtime.clone();
        let mut loads = futures::stream::iter(jobs)
            .map(move |(name, component)| {
                let runtime = runtime.clone();
                async move { (name, runtime.load(&component).await) }
            })
            .buffer_unordered(parallel);
        let mut ready = 0;
        while let Some((name, loaded)) = loads.next().await {
            let (loaded, source) = match loaded {
                Ok(l) => l,
                Err(e) => {
                    // The loads already started finish before the deploy
                    // lock is released: a failing deploy never leaves
                    // compilations running behind it.
                    while loads.next().await.is_some() {}
                    return Err(PlatformError::Invalid(format!("function {name:?}: {e}")));
                }
            };
            if let Some(f) = spec.functions.get(&name)
                && f.limits.reuses_instances()
                && loaded.wasi() != "0.3"
            {
                while loads.next().await.is_some() {}
                return Err(PlatformError::Invalid(format!(
                    "function {name:?}: instance_requests = {} reuses instances, which needs a WASI 0.3 component (exporting wasi:http/handler@0.3.0), and this one is WASI {}: build it for WASI 0.3, or remove instance_requests and instance_concurrency for a fresh instance per request",
                    f.limits.instance_requests,
                    loaded.wasi()
                )));
            }
            ready += 1;
            let _ = progress
                .send(DeployEvent::Function {
                    name,
                    index: ready,
                    total,
                    status: format!("{}, WASI {}", source.describe(), loaded.wasi()),
                    compiled: matches!(source, LoadSource::Compiled(_)),
                })
                .await;
        }
        drop(loads);
        let current = self.gateway.table();
        // Check collisions with the other apps before writing anything.
        current
            .with_app(Arc::new(ActiveApp::new(spec.clone(), 0)))
            .map_err(|e| PlatformError::Conflict(e.to_string()))?;
        // The capabilities' needs and configuration first: a deploy that
        // cannot prepare them changes nothing.
        self.prepare_capabilities(&spec).await?;
        let config = self.config_snapshots(&spec).await?;
        let revision = self
            .store
            .create_and_activate_revision(&spec, &manifest)
            .await?;
        let active = Arc::new(ActiveApp::new(spec, revision));
        install_config(&active, config);
        let table = current
            .with_app(active)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        self.activate(table);
        let _ = progress.send(DeployEvent::Activated { revision }).await;
        Ok(revision)
    }

    /// Re-activates `target`, or else the revision before the active one.
    pub async fn rollback(&self, app: &str, target: Option<i64>) -> Result<i64, PlatformError> {
        let _guard = self.lock.lock().await;
        let row = self.store.app(app).await?;
        let active = row.active_revision.unwrap_or(0);
        let target = match target {
            Some(t) => t,
            None => self
                .store
                .revisions(app)
                .await?
                .into_iter()
                .map(|r| r.number)
                .find(|&n| n < active)
                .ok_or_else(|| {
                    PlatformError::NotFound(format!(
                        "app {app:?} has no revision before {active} to roll back to"
                    ))
                })?,
        };
        let rev = self.store.revision(app, target).await?;
        for (name, f) in &rev.spec.functions {
            self.runtime.load(&f.component).await.map_err(|e| {
                PlatformError::Internal(format!("revision {target}, function {name:?}: {e}"))
            })?;
        }
        let active = Arc::new(ActiveApp::new(rev.spec, target));
        self.prepare(&active).await?;
        let table = self.gateway.table().with_app(active).map_err(|e| {
            PlatformError::Conflict(format!("revision {target} cannot be activated: {e}"))
        })?;
        self.store.activate_revision(app, target).await?;
        self.activate(table);
        Ok(target)
    }

    /// Removes an app and everything it owns, in every store, in one
    /// transaction ([`Store::delete_app`]): revisions and routes, data,
    /// configuration and secrets, events, users and their tokens, API, S3
    /// and signing keys, buckets with their objects and uploads, records,
    /// logs, kept inputs and operation spans (usage totals stay, for
    /// billing); then what each capability keeps outside the database
    /// (`Lifecycle::deleted`: the object bodies on disk). The transaction bumps the
    /// cluster generation, so every node drops the app and reloads its keys
    /// ([`Platform::resync`]); S3 keys are read from the store on every
    /// request. A later app of the same name starts empty.
    pub async fn delete(&self, app: &str) -> Result<(), PlatformError> {
        let _guard = self.lock.lock().await;
        // Records of its invocations still queued in the writer are
        // written first, so that the deletion takes them too.
        self.records.flush().await;
        let files = self.store.delete_app(app).await?;
        self.activate(self.gateway.table().without_app(app));
        for c in &self.capabilities {
            c.deleted(app, &files).await;
        }
        self.reload_keys().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::concurrency_share;

    #[test]
    fn shares_add_up_to_the_limit() {
        for limit in [1, 2, 3, 10, 100] {
            for count in 1..=7 {
                let shares: Vec<u32> = (0..count)
                    .map(|i| concurrency_share(limit, i, count))
                    .collect();
                assert_eq!(shares.iter().sum::<u32>(), limit, "{limit} over {count}");
                let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(hi - lo <= 1, "even: {shares:?}");
            }
        }
        assert_eq!(concurrency_share(3, 0, 2), 2);
        assert_eq!(concurrency_share(3, 1, 2), 1);
        assert_eq!(
            concurrency_share(5, 0, 0),
            5,
            "no view yet: the whole limit"
        );
    }
}
