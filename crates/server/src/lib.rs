//! A whole Nimbus node in process: [`Node::start`] wires the store, the
//! runtime, events, identity, object storage, the gateway and the control
//! API from a [`Config`], binds its listeners and serves; [`Node::stop`]
//! drains it. `nimbus up` is this plus argument parsing, its log setup and
//! a signal handler; tests start nodes the same way without a process.
//!
//! Listeners: the apps on `--listen`; the console and the control API on
//! `--control-listen` (by default loopback at the app port + 1); S3 on
//! `--s3-listen` and metrics on `--metrics-listen` if given. Their
//! addresses are written to `server.json` in the data dir, where the CLI
//! finds the control URL, and given to the egress guard as the node's own.
//! In a cluster (`--database postgres://…`), components, object bodies,
//! the secret key and the admin token live in `--shared-dir`; the node id
//! stays in the data dir.
//!
//! Invariants: everything a node spawns is stopped by [`Node::stop`] (its
//! listeners, its background loops, its event consumers), after the
//! invocations in flight finish (up to [`DRAIN`]) and the records and
//! events queued are written; a node that has stopped has left its
//! cluster and removed its `server.json`. Nodes in one process share one
//! Prometheus recorder (the `metrics` crate's is global).

mod config;
mod files;

pub use config::Config;

use anyhow::{Context, Result};
use nimbus_control::Platform;
use nimbus_events::{Events, EventsConfig};
use nimbus_gateway::Gateway;
use nimbus_runtime::{Runtime, RuntimeConfig};
use nimbus_store::{ComponentStore, RecordWriter, RecordWriterConfig, StorageQuotas, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a stopping node waits for its invocations in flight.
pub const DRAIN: Duration = Duration::from_secs(10);

/// A running node.
pub struct Node {
    /// The apps' listener (routes, and the client-facing API).
    pub url: String,
    /// The console and the control API.
    pub control_url: String,
    /// The S3 endpoint, if `--s3-listen` was given.
    pub s3_url: Option<String>,
    /// The unauthenticated metrics listener, if `--metrics-listen` was given.
    pub metrics_url: Option<String>,
    /// The data dir's admin token (the platform's bootstrap admin key).
    pub admin_token: String,
    /// Apps restored from the store at start.
    pub restored: usize,
    /// Where this node's state lives.
    pub data_dir: PathBuf,
    /// Which database: `embedded SQLite`, or the PostgreSQL URL without
    /// its password.
    pub database: String,
    /// The platform, for callers in process.
    pub platform: Arc<Platform>,
    runtime: Arc<Runtime>,
    events: Arc<Events>,
    records: RecordWriter,
    stop: CancellationToken,
    apps: JoinHandle<std::io::Result<()>>,
    listeners: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    info: PathBuf,
}

/// Binds `addr`, and says which flag picks another address if it cannot.
async fn bind(addr: &str, what: &str, flag: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {what} on {addr}: is another server using it? pick another with {flag}")
    })
}

impl Node {
    /// Opens the node's state, restores its apps, binds its listeners and
    /// starts serving. Returns when the node serves.
    pub async fn start(args: Config) -> Result<Node> {
        // Loops that run until aborted, and listeners that stop on `stop`.
        let mut tasks = Vec::new();
        let mut listeners = Vec::new();
        let stop = CancellationToken::new();
        let data_dir = args.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let shared_dir = args.shared_dir.clone().unwrap_or_else(|| data_dir.clone());
        std::fs::create_dir_all(&shared_dir)
            .with_context(|| format!("creating shared dir {}", shared_dir.display()))?;
        let token = files::admin_token(&shared_dir)?;
        if shared_dir != data_dir {
            // The CLI on this node finds the token in the data dir, as usual.
            files::write_private(&data_dir.join("admin-token"), token.as_bytes())?;
        }
        let telemetry = !args.no_telemetry;
        let metering = !args.no_metrics && telemetry;
        // Building the recorder calibrates quanta's clock (10-20 ms of
        // spinning): on a blocking thread, while the store opens.
        let metrics_install =
            metering.then(|| tokio::task::spawn_blocking(nimbus_control::metrics::install));
        // So does the engine, reserving and guarding its pool.
        let engine = {
            let config = RuntimeConfig {
                cache_dir: args
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("cache")),
                max_memory_mb: args.max_memory_mb,
                max_in_flight: args.max_in_flight,
                max_app_in_flight: args.max_app_in_flight,
                max_timeout_ms: args.max_timeout_ms,
                admission_queue: args.admission_queue,
                admission_timeout: Duration::from_millis(args.admission_timeout_ms),
                loaded_capacity: args.loaded_capacity,
                log_limit_bytes: args.log_limit_kb * 1024,
                keep_resident_bytes: args.keep_resident_kb * 1024,
                warm_slots: args.warm_slots,
                replay_body_bytes: args.replay_body_kb * 1024,
                tracing: telemetry,
                allow_egress: args.allow_egress.clone(),
            };
            tokio::task::spawn_blocking(move || nimbus_runtime::GuestEngine::build(config))
        };
        let store = match &args.database {
            Some(url) => Store::open_postgres(url, true, args.db_connections)
                .await
                .context("opening the PostgreSQL store")?,
            None => Store::open_embedded(&data_dir)
                .await
                .context("opening the embedded store")?,
        };
        let store = store.with_node_id(&files::node_id(&data_dir)?);
        let mib = |n: u64| (n > 0).then(|| n.saturating_mul(1 << 20));
        store
            .set_storage_quotas(&StorageQuotas {
                kv: mib(args.quota_kv_mb),
                docs: mib(args.quota_docs_mb),
                objects: mib(args.quota_objects_mb),
            })
            .await
            .context("setting the storage quotas")?;
        let generation = store.generation().await?;
        let components = ComponentStore::open(&shared_dir)?;
        let records = RecordWriter::spawn(
            store.clone(),
            RecordWriterConfig {
                keep_invocations: args.keep_records,
                keep_log_entries: args.keep_records,
                keep_logs_for: args.keep_logs_for.into(),
                keep_log_bytes: args.keep_logs_mb.saturating_mul(1 << 20),
                keep_successes_per_sec: args.keep_successes_per_sec,
                ..Default::default()
            },
        );
        let sink_writer = records.clone();
        let metrics_handle = match metrics_install {
            Some(installing) => {
                let handle = installing
                    .await
                    .map_err(|e| anyhow::anyhow!("installing the metrics recorder failed: {e}"))?
                    .map_err(|e| anyhow::anyhow!(e))?;
                tasks.push(nimbus_control::metrics::spawn_upkeep(handle.clone()));
                Some(handle)
            }
            None => None,
        };
        let max_value_bytes = args.max_value_kb * 1024;
        let blob_files = nimbus_store::BlobFiles::open(&shared_dir)?;
        // What guests reach besides WASI and HTTP: each capability's guest
        // side. The events producer is connected once the engine starts.
        let producer = nimbus_events::Producer::new();
        let mut capabilities = nimbus_data::guest_capabilities(&store, max_value_bytes);
        capabilities.push(Arc::new(nimbus_objects::Blobs::new(
            store.clone(),
            blob_files.clone(),
            max_value_bytes,
        )));
        capabilities.push(Arc::new(producer.clone()));
        // Connected to the gateway's registry of WebSocket connections below.
        let sockets = nimbus_realtime::Sockets::new();
        capabilities.push(Arc::new(sockets.clone()));
        let otlp = match (&args.otlp_endpoint, telemetry) {
            (Some(url), true) => Some(
                nimbus_control::otlp::OtlpExporter::spawn(url).map_err(|e| anyhow::anyhow!(e))?,
            ),
            _ => None,
        };
        let engine = engine
            .await
            .map_err(|e| anyhow::anyhow!("building the wasm engine failed: {e}"))??;
        let runtime = Runtime::with_engine(
            engine,
            components.clone(),
            Arc::new(move |r| {
                if metering {
                    nimbus_control::metrics::observe(&r);
                }
                if let Some(x) = &otlp {
                    x.submit(&r);
                }
                if telemetry {
                    sink_writer.submit(r)
                }
            }),
            capabilities,
        )?;
        let events = Events::start(
            store.clone(),
            runtime.clone(),
            EventsConfig {
                max_message_bytes: args.max_message_kb * 1024,
                keep_succeeded: Duration::from_secs(args.keep_events_secs),
            },
            &producer,
        )
        .await?;
        {
            // Expired KV values are invisible at once; this reclaims their space.
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    if let Err(e) = store.purge_expired_kv().await {
                        tracing::error!(error = %e, "purging expired KV values failed");
                    }
                }
            }));
        }
        if telemetry {
            tasks.push(nimbus_store::spawn_storage_sampler(
                store.clone(),
                Duration::from_secs(args.storage_sample_secs.max(1)),
            ));
        }
        let sealer = files::secret_key(&shared_dir)?;
        let s3_url = match &args.s3_listen {
            Some(addr) => {
                let listener = bind(addr, "S3", "--s3-listen").await?;
                let url = format!("http://{}", listener.local_addr()?);
                runtime.egress().add_node_address(listener.local_addr()?);
                let objects = nimbus_objects::Objects::new(
                    store.clone(),
                    blob_files.clone(),
                    args.max_object_mb << 20,
                    Some(events.clone()),
                )
                .metered(records.clone());
                let unsealer = sealer.clone();
                let service = nimbus_objects::service(
                    objects,
                    Arc::new(move |s: &str| unsealer.open(s)),
                    args.s3_domain.as_deref(),
                )?;
                let stop = stop.clone();
                listeners.push(tokio::spawn(async move {
                    let stopped = async move { stop.cancelled().await };
                    if let Err(e) = nimbus_objects::serve(listener, service, stopped).await {
                        tracing::error!(error = %e, "the S3 endpoint stopped");
                    }
                }));
                Some(url)
            }
            None => None,
        };
        let prices = match &args.prices {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the price sheet {}", path.display()))?;
                nimbus_control::PriceSheet::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            None => nimbus_control::PriceSheet::default(),
        };
        // The data dir's admin token is the platform's first admin key.
        let keys = nimbus_identity::ApiKeys::load(store.clone()).await?;
        keys.bootstrap(&token).await?;
        let tokens = nimbus_identity::Tokens::load(store.clone(), sealer.clone()).await?;
        let users = nimbus_identity::Users::new(store.clone(), tokens.clone());
        {
            let users = users.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    users.shrink();
                }
            }));
        }
        let gateway = Gateway::new(
            runtime.clone(),
            events.clone(),
            nimbus_gateway::Verifiers {
                keys,
                tokens,
                external: Default::default(),
            },
            nimbus_realtime::RealtimeConfig {
                max_connections: args.max_connections,
                max_app_connections: args.max_app_connections,
                send_buffer_bytes: args.ws_send_buffer_kb.max(1) << 10,
                ping_interval: Duration::from_secs(args.ws_ping_interval_s.max(1)),
            },
        );
        gateway.trust_proxies(args.trusted_proxy.clone());
        sockets.connect(gateway.realtime());
        if telemetry {
            gateway.realtime().meter_into(records.clone());
        }
        gateway.realtime().join_cluster(store.clone()).await?;
        let platform = Platform::new(
            store,
            components,
            gateway.clone(),
            records.clone(),
            sealer,
            users,
            nimbus_control::PlatformSettings {
                max_component_bytes: args.max_component_mb << 20,
                max_value_bytes,
                prices,
                metrics: metrics_handle,
                blob_files: blob_files.clone(),
            },
        );
        let restored = platform.restore().await?;
        {
            // Deploys, rollbacks, configuration and keys changed through
            // another node of the cluster (or by `nimbus` commands against it).
            let (store, platform) = (platform.store.clone(), platform.clone());
            let poll = Duration::from_millis(args.cluster_poll_ms.max(10));
            tasks.push(tokio::spawn(async move {
                store
                    .follow_cluster(generation, poll, move || {
                        let platform = platform.clone();
                        async move { platform.resync().await.map_err(|e| e.to_string()) }
                    })
                    .await
            }));
        }
        let control = nimbus_control::router(platform.clone());
        let client_api = nimbus_control::client_router(platform.clone());
        let metrics_url = match &args.metrics_listen {
            Some(addr) => {
                let listener = bind(addr, "metrics", "--metrics-listen").await?;
                let url = format!("http://{}/metrics", listener.local_addr()?);
                runtime.egress().add_node_address(listener.local_addr()?);
                let router = nimbus_control::metrics::router(platform.clone());
                let stopped = stop.clone().cancelled_owned();
                listeners.push(tokio::spawn(async move {
                    let serving = axum::serve(listener, router).with_graceful_shutdown(stopped);
                    if let Err(e) = serving.await {
                        tracing::error!(error = %e, "the metrics listener stopped");
                    }
                }));
                Some(url)
            }
            None => None,
        };

        let listener = bind(&args.listen, "apps", "--listen").await?;
        let addr = listener.local_addr()?;
        runtime.egress().add_node_address(addr);
        let url = format!("http://{addr}");
        let control_addr = match &args.control_listen {
            Some(a) => a.clone(),
            None => format!(
                "127.0.0.1:{}",
                if addr.port() == 0 || args.listen.ends_with(":0") {
                    0
                } else {
                    addr.port().saturating_add(1)
                }
            ),
        };
        let control_listener = bind(
            &control_addr,
            "the console and control API",
            "--control-listen",
        )
        .await?;
        let control_url = format!("http://{}", control_listener.local_addr()?);
        runtime
            .egress()
            .add_node_address(control_listener.local_addr()?);
        if !args.allow_egress.is_empty() {
            let ranges: Vec<String> = args.allow_egress.iter().map(|n| n.to_string()).collect();
            tracing::info!(ranges = %ranges.join(", "), "functions may reach these otherwise refused ranges (--allow-egress)");
        }
        {
            let (gateway, stop) = (gateway.clone(), stop.clone());
            listeners.push(tokio::spawn(async move {
                let door = nimbus_gateway::Door::Control;
                let stopped = async move { stop.cancelled().await };
                if let Err(e) =
                    nimbus_gateway::serve(control_listener, gateway, control, door, stopped).await
                {
                    tracing::error!(error = %e, "the control listener stopped");
                }
            }));
        }
        // Heartbeats: the live nodes split cluster-wide concurrency limits.
        let started_at = nimbus_store::now_us();
        platform.heartbeat(&url, started_at).await;
        {
            let (platform, url) = (platform.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    platform.heartbeat(&url, started_at).await;
                }
            }));
        }
        let info = data_dir.join("server.json");
        std::fs::write(
            &info,
            serde_json::to_string(&nimbus_api::ServerInfo {
                url: url.clone(),
                control_url: Some(control_url.clone()),
                s3_url: s3_url.clone(),
                metrics_url: metrics_url.clone(),
                pid: std::process::id(),
            })?,
        )?;
        let database = match &args.database {
            Some(url) => nimbus_store::redact_url(url),
            None => "embedded SQLite".to_string(),
        };
        let apps = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let door = nimbus_gateway::Door::Apps;
                nimbus_gateway::serve(listener, gateway, client_api, door, async move {
                    stop.cancelled().await
                })
                .await
            })
        };
        {
            // The functions' code, after the node answers: a request for
            // one not loaded yet loads it (or waits for this load of it).
            // It stops with the node's first step of stopping.
            let (platform, stop) = (platform.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    _ = platform.warm_up() => {}
                    _ = stop.cancelled() => {}
                }
            }));
        }
        Ok(Node {
            url,
            control_url,
            s3_url,
            metrics_url,
            admin_token: token,
            restored,
            data_dir,
            database,
            platform,
            runtime,
            events,
            records,
            stop,
            apps,
            listeners,
            tasks,
            info,
        })
    }

    /// Serves until `signal` completes (or the apps' listener fails), then
    /// stops.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<()> {
        let served = tokio::select! {
            _ = signal => None,
            r = &mut self.apps => Some(r),
        };
        if let Some(r) = served {
            r.context("the apps' listener panicked")?
                .context("the apps' listener stopped")?;
        }
        self.stop().await
    }

    /// Stops accepting connections, closes idle ones and lets the requests
    /// being served finish (up to [`nimbus_gateway::DRAIN`] per listener),
    /// waits for the invocations still in flight (events' deliveries, up
    /// to [`DRAIN`]), writes what is queued, leaves the cluster and stops
    /// everything the node runs.
    pub async fn stop(self) -> Result<()> {
        tracing::info!("shutting down: waiting for in-flight invocations");
        self.stop.cancel();
        if !self.apps.is_finished() {
            let _ = self.apps.await;
        }
        for l in self.listeners {
            let _ = l.await;
        }
        // WebSocket connections close with 1001; their disconnect
        // functions run before the runtime drains.
        self.platform.gateway.realtime().shutdown(DRAIN).await;
        self.events.stop_consumers();
        let deadline = tokio::time::Instant::now() + DRAIN;
        while self.runtime.admission().in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Instances serving several requests end too, writing the records
        // they keep for work after a response.
        self.runtime.wind_down_shared(deadline).await;
        self.events.flush().await;
        self.records.flush().await;
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = self.platform.store.leave_cluster().await {
            tracing::warn!(error = %e, "leaving the cluster failed; the others notice in a few seconds");
        }
        let _ = std::fs::remove_file(&self.info);
        Ok(())
    }
}
