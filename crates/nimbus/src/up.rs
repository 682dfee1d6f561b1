//! `nimbus up`: wire store, runtime, gateway and control API, and serve.

use anyhow::{Context, Result};
use clap::Args;
use nimbus_control::{Platform, Sealer};
use nimbus_events::{Events, EventsConfig};
use nimbus_gateway::Gateway;
use nimbus_runtime::{Runtime, RuntimeConfig};
use nimbus_store::{ComponentStore, RecordWriter, RecordWriterConfig, StorageQuotas, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Server settings. Limits are in memory, time and counts, never hosts.
#[derive(Args)]
pub struct UpArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:8080", env = "NIMBUS_LISTEN")]
    listen: String,
    /// Address of the console and the control API, an origin of their own
    /// where no app code runs (app pages keep reaching their user-pool and
    /// data endpoints on --listen) [default: loopback, the --listen port + 1,
    /// or a free port if that is 0]
    #[arg(long, env = "NIMBUS_CONTROL_LISTEN")]
    control_listen: Option<String>,
    /// Where state lives (SQLite database, components, compile cache, admin token)
    #[arg(long, default_value = ".nimbus", env = "NIMBUS_DATA_DIR")]
    data_dir: PathBuf,
    /// A PostgreSQL database shared by every node of a cluster
    /// (postgres://USER:PASSWORD@HOST:PORT/DATABASE) instead of the
    /// embedded SQLite file; its schema is brought up to date at start
    #[arg(long, env = "NIMBUS_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// Files every node of a cluster must share (components, object
    /// bodies, the secret key, the admin token): a directory mounted on
    /// all of them [default: DATA_DIR]
    #[arg(long, env = "NIMBUS_SHARED_DIR")]
    shared_dir: Option<PathBuf>,
    /// Connections this node opens to PostgreSQL at most
    #[arg(long, default_value_t = 16)]
    db_connections: u32,
    /// How often a node checks whether another node changed apps,
    /// configuration or keys, in ms (PostgreSQL: a NOTIFY makes it sooner)
    #[arg(long, default_value_t = 1000)]
    cluster_poll_ms: u64,
    /// Compile cache directory [default: DATA_DIR/cache]
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Invocations in flight at once, platform-wide
    #[arg(long, default_value_t = 1000)]
    max_in_flight: u32,
    /// Invocations of one app in flight at once, across all its functions
    /// (its fair share: one app cannot take every slot), at most
    /// --max-in-flight; as many of its requests may wait for capacity
    #[arg(long, default_value_t = 250)]
    max_app_in_flight: u32,
    /// Longest timeout_ms (and first_byte_timeout_ms) a function may ask
    /// for, in ms; deploys asking for more are refused
    #[arg(long, default_value_t = 900_000)]
    max_timeout_ms: u64,
    /// Requests that may wait for capacity at once (beyond: 429)
    #[arg(long, default_value_t = 1000)]
    admission_queue: usize,
    /// How long a request may wait for capacity before a 429, in ms
    #[arg(long, default_value_t = 5000)]
    admission_timeout_ms: u64,
    /// Largest memory_mb a function may ask for
    #[arg(long, default_value_t = 1024)]
    max_memory_mb: u32,
    /// Largest component upload, in MiB
    #[arg(long, default_value_t = 64)]
    max_component_mb: u64,
    /// Compiled components kept in memory (LRU)
    #[arg(long, default_value_t = 1000)]
    loaded_capacity: usize,
    /// Bytes of stdout and of stderr kept per invocation, in KiB
    #[arg(long, default_value_t = 64)]
    log_limit_kb: usize,
    /// KiB of each pooled memory and table slot kept resident between
    /// instances (faster reuse, more resident memory)
    #[arg(long, default_value_t = 4096)]
    keep_resident_kb: usize,
    /// Unused instance slots kept warm for reuse (each keeps its dirtied pages resident)
    #[arg(long, default_value_t = 16)]
    warm_slots: u32,
    /// Invocation records and log entries kept per app (older ones are
    /// pruned app by app: one app's flood never evicts another's history)
    #[arg(long, default_value_t = 10_000)]
    keep_records: i64,
    /// Plain successful invocations (no logs, no events, no data calls)
    /// recorded per function and second; beyond it they are counted in
    /// usage and metrics but not stored one by one. Failures are always
    /// recorded
    #[arg(long, default_value_t = 100)]
    keep_successes_per_sec: u32,
    /// Request body kept for replaying a failed invocation, in KiB
    /// (credentials and secret values are never kept)
    #[arg(long, default_value_t = 256)]
    replay_body_kb: usize,
    /// Platform log lines on stderr: `text`, or `json` (one object per line)
    #[arg(long, default_value = "text", env = "NIMBUS_LOG_FORMAT")]
    log_format: String,
    /// Guest log entries older than this are pruned
    #[arg(long, default_value = "7d")]
    keep_logs_for: humantime::Duration,
    /// Guest log text kept per app, in MiB (its oldest entries go first)
    #[arg(long, default_value_t = 64)]
    keep_logs_mb: i64,
    /// Largest event payload (queue message, topic message, async
    /// invocation body), in KiB; a queue may set a lower limit
    #[arg(long, default_value_t = 1024)]
    max_message_kb: u64,
    /// How long succeeded events are kept for status queries, in seconds
    #[arg(long, default_value_t = 3600)]
    keep_events_secs: u64,
    /// Largest KV value or JSON document, in KiB; a KV store may set a lower limit
    #[arg(long, default_value_t = 1024)]
    max_value_kb: u64,
    /// Key-value data one app may store (keys and values, all its stores),
    /// in MiB; a write past it is refused with a clear error (0: no quota)
    #[arg(long, default_value_t = 1024)]
    quota_kv_mb: u64,
    /// JSON documents one app may store (their text, all collections), in
    /// MiB (0: no quota)
    #[arg(long, default_value_t = 1024)]
    quota_docs_mb: u64,
    /// Objects one app may store (all its buckets, unfinished multipart
    /// uploads included), in MiB; S3 answers QuotaExceeded past it (0: no
    /// quota)
    #[arg(long, default_value_t = 10 * 1024)]
    quota_objects_mb: u64,
    /// Address of the S3-compatible object storage endpoint (off if unset)
    #[arg(long, env = "NIMBUS_S3_LISTEN")]
    s3_listen: Option<String>,
    /// Largest object, in MiB (multipart uploads included)
    #[arg(long, default_value_t = 5 * 1024)]
    max_object_mb: u64,
    /// Price sheet (TOML: currency, per_gb_second, per_million_requests,
    /// per_million_operations, per_gb_month) for the cost estimates of
    /// `nimbus usage` [default: published AWS Lambda, DynamoDB and S3
    /// prices, as an example]
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Turn Prometheus metrics off (`/v1/metrics` answers 404)
    #[arg(long)]
    no_metrics: bool,
    /// Also serve `GET /metrics` without authentication on this address
    /// (for a Prometheus on the monitoring network; off if unset)
    #[arg(long, env = "NIMBUS_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// How often each app's stored bytes (KV, documents, objects) are
    /// sampled for storage GB-hours, in seconds
    #[arg(long, default_value_t = 300)]
    storage_sample_secs: u64,
    /// Turn off everything Nimbus observes about invocations: records,
    /// guest logs, usage, metrics and traces. Only for measuring what they
    /// cost (bench/operate.sh); nothing can be debugged or billed then
    #[arg(long)]
    no_telemetry: bool,
    /// Export traces to an OpenTelemetry collector over OTLP/HTTP
    /// (protobuf), e.g. http://127.0.0.1:4318 (spans go to /v1/traces)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Address ranges functions' outbound HTTP may reach although they are
    /// loopback, private, link-local, CGNAT or this node's own addresses,
    /// which are refused whatever a manifest's allowed_outbound_hosts says
    /// (CIDRs or addresses; repeat the flag or separate with commas).
    /// Allowing this node's addresses lets functions call its listeners
    /// from inside, as a local client
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = cidr, env = "NIMBUS_ALLOW_EGRESS")]
    allow_egress: Vec<ipnet::IpNet>,
    /// Reverse proxies in front of this node (CIDRs or addresses; repeat
    /// or separate with commas): only for a connection from one of them is
    /// the client's address taken from X-Forwarded-For (the right-most
    /// address that is not itself a trusted proxy), for IP allow-lists,
    /// rate limits and per-address limits. Off by default: the TCP peer's
    /// address is the client's
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = cidr, env = "NIMBUS_TRUSTED_PROXY")]
    trusted_proxy: Vec<ipnet::IpNet>,
}

/// A `--allow-egress` or `--trusted-proxy` value: a CIDR or an address.
fn cidr(s: &str) -> Result<ipnet::IpNet, String> {
    nimbus_core::policy::parse_net(s.trim())
}

/// The key that seals secrets: `NIMBUS_SECRET_KEY` (64 hex digits), else
/// the data dir's `secret-key` file, created on first start.
fn secret_key(data_dir: &Path) -> Result<Sealer> {
    if let Ok(k) = std::env::var("NIMBUS_SECRET_KEY") {
        return Sealer::from_hex(&k).map_err(|e| anyhow::anyhow!("NIMBUS_SECRET_KEY: {e}"));
    }
    let path = data_dir.join("secret-key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Sealer::from_hex(&k).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let key: [u8; 32] = rand::random();
    write_private(&path, hex::encode(key).as_bytes())?;
    Ok(Sealer::new(key))
}

/// Writes a file only its owner can read (created with mode 0600, never
/// readable by others even for a moment), via a temporary file and a rename.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads the admin token from the data dir, creating it on first start.
fn admin_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let bytes: [u8; 32] = rand::random();
    let token = format!("nimbus_{}", hex::encode(bytes));
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// This node's stable id (the data dir's `node-id`, created on first start):
/// the leases it takes carry it, so after a crash it takes them back.
fn node_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = format!("node-{}", hex::encode(rand::random::<[u8; 8]>()));
    write_private(&path, id.as_bytes())?;
    Ok(id)
}

pub async fn run(args: UpArgs) -> Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr);
    match args.log_format.as_str() {
        "json" => logs.json().init(),
        "text" => logs.init(),
        other => anyhow::bail!("--log-format {other:?} is unknown: use text or json"),
    }
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let shared_dir = args.shared_dir.clone().unwrap_or_else(|| data_dir.clone());
    std::fs::create_dir_all(&shared_dir)
        .with_context(|| format!("creating shared dir {}", shared_dir.display()))?;
    let token = admin_token(&shared_dir)?;
    if shared_dir != data_dir {
        // The CLI on this node finds the token in the data dir, as usual.
        write_private(&data_dir.join("admin-token"), token.as_bytes())?;
    }
    let store = match &args.database {
        Some(url) => Store::open_postgres(url, true, args.db_connections)
            .await
            .context("opening the PostgreSQL store")?,
        None => Store::open_embedded(&data_dir)
            .await
            .context("opening the embedded store")?,
    };
    let store = store.with_node_id(&node_id(&data_dir)?);
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
    let telemetry = !args.no_telemetry;
    let metering = !args.no_metrics && telemetry;
    let metrics_handle = if metering {
        let handle = nimbus_control::metrics::install().map_err(|e| anyhow::anyhow!(e))?;
        nimbus_control::metrics::spawn_upkeep(handle.clone());
        Some(handle)
    } else {
        None
    };
    let otlp = match (&args.otlp_endpoint, telemetry) {
        (Some(url), true) => {
            Some(nimbus_control::otlp::OtlpExporter::spawn(url).map_err(|e| anyhow::anyhow!(e))?)
        }
        _ => None,
    };
    let runtime = Runtime::new(
        RuntimeConfig {
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
        },
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
    )?;
    let events = Events::start(
        store.clone(),
        runtime.clone(),
        EventsConfig {
            max_message_bytes: args.max_message_kb * 1024,
            keep_succeeded: Duration::from_secs(args.keep_events_secs),
        },
    )
    .await?;
    let max_value_bytes = args.max_value_kb * 1024;
    runtime.set_data_store(store.clone(), max_value_bytes);
    {
        // Expired KV values are invisible at once; this reclaims their space.
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                if let Err(e) = store.purge_expired_kv().await {
                    tracing::error!(error = %e, "purging expired KV values failed");
                }
            }
        });
    }
    if telemetry {
        nimbus_store::spawn_storage_sampler(
            store.clone(),
            Duration::from_secs(args.storage_sample_secs.max(1)),
        );
    }
    let sealer = secret_key(&shared_dir)?;
    let blob_files = nimbus_store::BlobFiles::open(&shared_dir)?;
    runtime.set_blob_files(blob_files.clone());
    let s3_url = match &args.s3_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen for S3 on {addr}: pick another with --s3-listen")
            })?;
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
                std::sync::Arc::new(move |s: &str| unsealer.open(s)),
            );
            tokio::spawn(async move {
                if let Err(e) =
                    nimbus_objects::serve(listener, service, std::future::pending()).await
                {
                    tracing::error!(error = %e, "the S3 endpoint stopped");
                }
            });
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
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                users.shrink();
            }
        });
    }
    let gateway = Gateway::new(
        runtime.clone(),
        events.clone(),
        nimbus_gateway::Verifiers {
            keys,
            tokens,
            external: Default::default(),
        },
    );
    gateway.trust_proxies(args.trusted_proxy.clone());
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
        },
    );
    let restored = platform.restore().await?;
    {
        // Deploys, rollbacks, configuration and keys changed through
        // another node of the cluster (or by `nimbus` commands against it).
        let (store, platform) = (platform.store.clone(), platform.clone());
        let poll = Duration::from_millis(args.cluster_poll_ms.max(10));
        tokio::spawn(async move {
            store
                .follow_cluster(generation, poll, move || {
                    let platform = platform.clone();
                    async move { platform.resync().await.map_err(|e| e.to_string()) }
                })
                .await
        });
    }
    let control = nimbus_control::router(platform.clone());
    let client_api = nimbus_control::client_router(platform.clone());
    let metrics_url = match &args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen for metrics on {addr}: pick another with --metrics-listen")
            })?;
            let url = format!("http://{}/metrics", listener.local_addr()?);
            runtime.egress().add_node_address(listener.local_addr()?);
            let router = nimbus_control::metrics::router(platform.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            });
            Some(url)
        }
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another server using it? pick another with --listen",
                args.listen
            )
        })?;
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
    let control_listener = tokio::net::TcpListener::bind(&control_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen for the console and control API on {control_addr}: is another server using it? pick another with --control-listen"
            )
        })?;
    let control_url = format!("http://{}", control_listener.local_addr()?);
    runtime
        .egress()
        .add_node_address(control_listener.local_addr()?);
    if !args.allow_egress.is_empty() {
        let ranges: Vec<String> = args.allow_egress.iter().map(|n| n.to_string()).collect();
        tracing::info!(ranges = %ranges.join(", "), "functions may reach these otherwise refused ranges (--allow-egress)");
    }
    {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let door = nimbus_gateway::Door::Control;
            if let Err(e) = nimbus_gateway::serve(
                control_listener,
                gateway,
                control,
                door,
                std::future::pending(),
            )
            .await
            {
                tracing::error!(error = %e, "the control listener stopped");
            }
        });
    }
    // Heartbeats: the live nodes split cluster-wide concurrency limits.
    let started_at = nimbus_store::now_us();
    platform.heartbeat(&url, started_at).await;
    {
        let (platform, url) = (platform.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                platform.heartbeat(&url, started_at).await;
            }
        });
    }
    let info = data_dir.join("server.json");
    std::fs::write(
        &info,
        serde_json::json!({ "url": url, "control_url": control_url, "s3_url": s3_url, "metrics_url": metrics_url, "pid": std::process::id() }).to_string(),
    )?;
    let database = match &args.database {
        Some(url) => nimbus_store::redact_url(url),
        None => "embedded SQLite".to_string(),
    };
    tracing::info!(%url, %control_url, data_dir = %data_dir.display(), %database, apps = restored, "Nimbus is up");
    println!(
        "Nimbus listening on {url} , console and control API on {control_url} (data dir {}, {database}, {restored} app(s) restored){}",
        data_dir.display(),
        s3_url
            .as_ref()
            .map(|u| format!("; S3 endpoint on {u}"))
            .unwrap_or_default()
    );

    let door = nimbus_gateway::Door::Apps;
    nimbus_gateway::serve(listener, gateway, client_api, door, shutdown_signal()).await?;
    tracing::info!("shutting down: waiting for in-flight invocations");
    events.stop_consumers();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runtime.admission().in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    events.flush().await;
    records.flush().await;
    if let Err(e) = platform.store.leave_cluster().await {
        tracing::warn!(error = %e, "leaving the cluster failed; the others notice in a few seconds");
    }
    let _ = std::fs::remove_file(&info);
    Ok(())
}

/// `nimbus migrate`: applies the migrations a database lacks and says which.
pub async fn migrate(database: Option<&str>, data_dir: &Path) -> Result<()> {
    let (store, name) = match database {
        Some(url) => (
            Store::connect_postgres(url, 2).await?,
            nimbus_store::redact_url(url),
        ),
        None => (
            Store::connect_embedded(data_dir).await?,
            data_dir.join("nimbus.db").display().to_string(),
        ),
    };
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("{name}: the schema is up to date");
    } else {
        for m in &applied {
            println!("{name}: applied {m}");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
