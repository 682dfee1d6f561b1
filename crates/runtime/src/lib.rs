//! The Nimbus runtime: runs functions, one fresh sandbox per invocation.
//!
//! # Isolation model
//! A function is a WebAssembly component exporting
//! `wasi:http/incoming-handler@0.2` or `wasi:http/handler@0.3.0`. It is compiled once (native code cached on
//! disk, keyed by component hash and engine configuration), pre-linked once
//! into an `InstancePre`, and then **every invocation gets a brand-new
//! instance in a brand-new `Store`**, dropped when the invocation ends.
//! Nothing a guest does survives into the next request.
//!
//! # Cost model
//! * Instances come from wasmtime's pooling allocator: memory slots are
//!   reserved up front and reused, linear memories are initialised by
//!   copy-on-write from the component's data image, and a few MiB of each
//!   slot stay resident between uses, so instantiating costs microseconds
//!   and no syscalls on the common path. Where the kernel has
//!   `PAGEMAP_SCAN` (Linux 6.7+), a returned slot resets only the pages its
//!   instance dirtied (what makes megabyte-heap JavaScript and Python
//!   guests cheap to start afresh).
//! * An idle function costs only its cached native code on disk; pre-linked
//!   components live in a bounded LRU ([`RuntimeConfig::loaded_capacity`]).
//!   No thread or instance exists per function.
//! * One background thread ticks the engine's epoch every millisecond;
//!   guests yield to the async executor at each tick, which is how timeouts
//!   stop an infinite loop and how a busy guest never starves others.
//!
//! # Limits
//! * memory: a per-store [`wasmtime::ResourceLimiter`] traps a guest that
//!   grows past its `memory_mb`; the pool's slot size caps every function.
//! * time: `first_byte_timeout_ms` bounds the wait for the response head,
//!   `timeout_ms` the whole invocation; past either the instance is dropped.
//! * concurrency: [`Admission`] (platform-wide, per-app and per-function,
//!   bounded wait); the CPU itself: [`FairCpu`] hands the worker threads'
//!   turns round robin over the apps that contend for them.
//! * network: outbound HTTP goes only to hosts in the function's
//!   `allowed_outbound_hosts`, and only to addresses the [`Egress`] guard
//!   lets through (never loopback, private, link-local or the node itself,
//!   unless the operator allows the range).
//!
//! # Parts
//! [`Runtime`] owns the engine (its pool sized by `--max-in-flight`), the
//! linker (all of WASI 0.2 and 0.3.0, `wasi:http`, and the interfaces of the
//! [`GuestCapability`]s it is given: KV, documents, configuration, blobs,
//! events), the epoch ticker thread, [`Admission`], [`FairCpu`] and the
//! code cache. `invoke/` is the hot path; `host.rs` the per-invocation
//! store state; `capability.rs` what a capability's guest side plugs into;
//! `ops.rs` the metering of host calls; `config.rs` a function's
//! configuration; `egress.rs` the outbound address guard.
//!
//! # Invariants
//! * One instance per invocation, dropped when it ends.
//! * Every admitted invocation emits exactly one record; every response
//!   carries `nimbus-invocation-id`.
//! * Clients cannot set `nimbus-*` request headers: the guest's are
//!   Nimbus's.
//! * A guest reaches only its own app's queues, topics and data, and of
//!   the data only what its function is granted.
//! * A guest's outbound connection goes only to an address the egress
//!   guard checked.

mod admission;
mod app;
mod cache;
mod capability;
mod capture;
mod config;
mod egress;
mod fair;
mod host;
mod invoke;
mod ops;
mod pool;

pub use admission::{Admission, Permit, Throttled};
pub use app::{ActiveApp, manifest_config};
pub use cache::{LoadSource, Loaded};
pub use capability::{GuestCapability, GuestCx, HasCx, InstanceCx};
pub use capture::Capture;
pub use config::ConfigSnapshot;
pub use egress::{Egress, Refused};
pub use fair::{Fair, FairCpu, Turn};
pub use host::{AllowedHost, Host};
pub use invoke::{
    Caller, EventMeta, Function, INVOCATION_ID_HEADER, InvokeRequest, ReplayBody, ResponseBody,
    replay_request, text_response,
};
pub use ops::{HOST_CALLS_PER_REQUEST, HostCall, Op, TooManyCalls};
pub use pool::GuestEngine;

use cache::CodeCache;
use nimbus_core::InvocationRecord;
use nimbus_store::ComponentStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Linker;

/// Errors preparing a function to run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a valid component.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// The component imports something Nimbus does not provide.
    #[error(
        "the component cannot be linked: {0} (Nimbus provides the wasi:http/proxy world and wasi:cli, wasi:filesystem, wasi:sockets, wasi:random and wasi:clocks 0.2, the wasi:http/service world of WASI 0.3.0, wasi:keyvalue@0.2.0-draft, wasi:config@0.2.0-rc.1, nimbus:events@0.1.0 and nimbus:data@0.1.0, and for WASI 0.3 guests nimbus:kv@0.1.0, nimbus:data@0.2.0 and nimbus:events@0.2.0)"
    )]
    Link(String),
    /// The component does not export the HTTP handler.
    #[error(
        "the component exports no HTTP handler: {0} (a function exports wasi:http/incoming-handler@0.2 or wasi:http/handler@0.3.0)"
    )]
    NotAHandler(String),
    /// A limit asked for exceeds what the platform allows.
    #[error("{0}")]
    Limit(String),
    /// The component bytes could not be read.
    #[error(transparent)]
    Store(#[from] nimbus_store::StoreError),
    /// Setting up the engine or cache failed.
    #[error("{0}")]
    Io(String),
}

/// Where finished invocation records go.
pub type RecordSink = Arc<dyn Fn(InvocationRecord) + Send + Sync>;

/// Engine and pool settings. Defaults are in [`RuntimeConfig::default`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory of the native-code cache.
    pub cache_dir: PathBuf,
    /// Largest `memory_mb` any function may ask for (the pool's slot size).
    pub max_memory_mb: u32,
    /// Invocations in flight platform-wide (and instance slots in the pool).
    pub max_in_flight: u32,
    /// Invocations of one app in flight at once, across its functions
    /// (at most `max_in_flight`).
    pub max_app_in_flight: u32,
    /// Longest `timeout_ms` (and `first_byte_timeout_ms`) a function may ask for.
    pub max_timeout_ms: u64,
    /// Requests that may wait for capacity at once.
    pub admission_queue: usize,
    /// How long a request may wait for capacity before a 429.
    pub admission_timeout: Duration,
    /// Pre-linked components kept in memory.
    pub loaded_capacity: usize,
    /// Bytes of stdout and of stderr kept per invocation.
    pub log_limit_bytes: usize,
    /// Bytes of each memory/table slot kept resident between instances.
    pub keep_resident_bytes: usize,
    /// Unused pool slots kept warm (resident) for reuse.
    pub warm_slots: u32,
    /// Request body bytes kept for replaying a failed invocation (0: none;
    /// its method, path and headers are kept anyway).
    pub replay_body_bytes: usize,
    /// Whether invocations join traces (`traceparent` continued, given to
    /// the guest and its outbound calls). Off only for measuring its cost.
    pub tracing: bool,
    /// Address ranges guests' outbound HTTP may reach although they are
    /// loopback, private, link-local or the node's own (`--allow-egress`).
    pub allow_egress: Vec<ipnet::IpNet>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: PathBuf::from(".nimbus/cache"),
            max_memory_mb: 1024,
            max_in_flight: 1000,
            max_app_in_flight: 250,
            max_timeout_ms: 15 * 60 * 1000,
            admission_queue: 1000,
            admission_timeout: Duration::from_secs(5),
            loaded_capacity: 1000,
            log_limit_bytes: 64 * 1024,
            keep_resident_bytes: 4 << 20,
            warm_slots: 16,
            replay_body_bytes: 256 * 1024,
            tracing: true,
            allow_egress: Vec::new(),
        }
    }
}

/// The function runner. Create one per process and share it in an `Arc`.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    cache: CodeCache,
    components: ComponentStore,
    admission: Admission,
    /// Whose ready guest runs next, when apps contend for the CPU.
    pub fair: Arc<FairCpu>,
    config: RuntimeConfig,
    sink: RecordSink,
    ticker_stop: Arc<AtomicBool>,
    /// The guest capabilities linked, each building its instance state.
    pub(crate) capabilities: Vec<Arc<dyn GuestCapability>>,
    pub(crate) egress: Arc<Egress>,
    loading: parking_lot::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Components whose last load failed, when and why: their requests get
    /// that error for [`LOAD_RETRY`] instead of each reading (and maybe
    /// compiling) the component again.
    failed: parking_lot::Mutex<std::collections::HashMap<String, (Instant, Arc<str>)>>,
    /// Loads past the in-memory cache running at once (compiling, or
    /// reading the disk cache): one per core, node-wide, whoever asks
    /// (deploys of every app, cold invocations).
    compiling: tokio::sync::Semaphore,
    /// The shared instances running (instance reuse), for shutdown.
    shared: parking_lot::Mutex<Vec<std::sync::Weak<invoke::Shared>>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A component's load turn ([`Runtime::gate`]). Unmarked however the load
/// ends, even dropped half-way (a client that went away): the map never
/// keeps a gate for nothing.
struct LoadGate<'a> {
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    gate: Arc<tokio::sync::Mutex<()>>,
    runtime: &'a Runtime,
    hash: String,
}

impl Drop for LoadGate<'_> {
    fn drop(&mut self) {
        let mut loading = self.runtime.loading.lock();
        drop(self.turn.take());
        // Only this gate's entry, and only once nobody else waits on it
        // (the map's reference and this one): a waiter still queued keeps
        // it, so a newcomer queues behind the same turn.
        if let Some(g) = loading.get(&self.hash)
            && Arc::ptr_eq(g, &self.gate)
            && Arc::strong_count(&self.gate) == 2
        {
            loading.remove(&self.hash);
        }
    }
}

/// How long a component's failed load answers for it before the next
/// request tries again.
pub const LOAD_RETRY: Duration = Duration::from_secs(10);

impl Runtime {
    /// Builds the engine (pooling allocator, epoch interruption), the linker
    /// with every WASI 0.2 interface and the interfaces of `capabilities`,
    /// and starts the epoch ticker.
    pub fn new(
        config: RuntimeConfig,
        components: ComponentStore,
        sink: RecordSink,
        capabilities: Vec<Arc<dyn GuestCapability>>,
    ) -> Result<Arc<Runtime>, RuntimeError> {
        Runtime::with_engine(GuestEngine::build(config)?, components, sink, capabilities)
    }

    /// [`Runtime::new`] on an engine built beforehand (a node builds it on a
    /// thread of its own while it opens its store).
    pub fn with_engine(
        engine: GuestEngine,
        components: ComponentStore,
        sink: RecordSink,
        capabilities: Vec<Arc<dyn GuestCapability>>,
    ) -> Result<Arc<Runtime>, RuntimeError> {
        let GuestEngine { engine, config } = engine;
        let slots = config.max_in_flight.max(1);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Io(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Io(format!("{e:#}")))?;
        // WASI 0.3.0 beside 0.2: its names (`@0.3.0`) never collide with
        // 0.2's, and a 0.3 guest built with Rust's std imports both.
        wasmtime_wasi::p3::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Io(format!("{e:#}")))?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Io(format!("{e:#}")))?;
        for c in &capabilities {
            c.link(&mut linker).map_err(|e| {
                RuntimeError::Io(format!("linking the {} interfaces: {e:#}", c.name()))
            })?;
        }
        let cache = CodeCache::new(&engine, &config.cache_dir, config.loaded_capacity)?;
        let admission = Admission::new(
            slots as usize,
            config.max_app_in_flight as usize,
            config.admission_queue,
            config.admission_timeout,
        );
        let fair = Arc::new(FairCpu::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ));
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("nimbus-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1));
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError::Io(format!("starting the epoch thread: {e}")))?;
        }
        let egress = Arc::new(Egress::new(config.allow_egress.clone()));
        Ok(Arc::new(Runtime {
            egress,
            engine,
            linker,
            cache,
            components,
            admission,
            fair,
            config,
            sink,
            ticker_stop,
            capabilities,
            loading: Default::default(),
            failed: Default::default(),
            shared: Default::default(),
            compiling: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        }))
    }

    /// Where guests' outbound HTTP may connect; tell it the node's
    /// listener addresses ([`Egress::add_node_address`]) once they are bound.
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Admission state (in-flight and waiting counts).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Pre-linked components currently in memory.
    pub fn loaded_count(&self) -> usize {
        self.cache.len()
    }

    /// Checks limits a function asks for against the platform's.
    pub fn check_limits(
        &self,
        function: &str,
        limits: &nimbus_core::Limits,
    ) -> Result<(), RuntimeError> {
        if limits.memory_mb > self.config.max_memory_mb {
            return Err(RuntimeError::Limit(format!(
                "function {function:?} asks for memory_mb = {}, above this server's limit of {} MiB: lower it, or start the server with a larger --max-memory-mb",
                limits.memory_mb, self.config.max_memory_mb
            )));
        }
        let longest = limits.timeout_ms.max(limits.first_byte_timeout_ms);
        if longest > self.config.max_timeout_ms {
            return Err(RuntimeError::Limit(format!(
                "function {function:?} asks for timeout_ms = {longest}, above this server's limit of {} ms: lower it, or start the server with a larger --max-timeout-ms",
                self.config.max_timeout_ms
            )));
        }
        Ok(())
    }

    /// Makes the component with this hash ready to instantiate: from memory,
    /// the disk cache, or by compiling it (on a blocking thread). Fails with
    /// a clear error if it is not a valid `wasi:http` handler component.
    pub async fn load(
        self: &Arc<Self>,
        hash: &str,
    ) -> Result<(Arc<Loaded>, LoadSource), RuntimeError> {
        if let Some(l) = self.cache.get(hash) {
            return Ok((l, LoadSource::Memory));
        }
        let _gate = self.gate(hash).await;
        if let Some(l) = self.cache.get(hash) {
            return Ok((l, LoadSource::Memory));
        }
        self.past_memory(hash, |this, hash, bytes| {
            this.cache
                .load_blocking(&this.engine, &this.linker, hash, bytes)
        })
        .await
    }

    /// The error of this component's last load, if it failed less than
    /// [`LOAD_RETRY`] ago: a broken function's requests cost no reads or
    /// compilations, and leave the compile turns to everyone else.
    fn remembered_failure(&self, hash: &str) -> Result<(), RuntimeError> {
        let failed = self.failed.lock();
        match failed.get(hash) {
            Some((at, why)) if at.elapsed() < LOAD_RETRY => Err(RuntimeError::Io(format!(
                "{why} (this load failed {} ms ago; the next request after {} s tries again)",
                at.elapsed().as_millis(),
                LOAD_RETRY.as_secs()
            ))),
            _ => Ok(()),
        }
    }

    fn remember(&self, hash: &str, error: Option<&RuntimeError>) {
        let mut failed = self.failed.lock();
        match error {
            Some(e) => {
                failed.retain(|_, (at, _)| at.elapsed() < LOAD_RETRY);
                failed.insert(hash.to_string(), (Instant::now(), e.to_string().into()));
            }
            None => {
                failed.remove(hash);
            }
        }
    }

    /// Makes sure the compile cache on disk holds native code for the
    /// component with this hash (compiling it if not), without loading it
    /// into memory: a node warming up more functions than
    /// [`RuntimeConfig::loaded_capacity`] keeps memory for the ones it
    /// loads, and the others' first requests still compile nothing.
    pub async fn precompile(self: &Arc<Self>, hash: &str) -> Result<LoadSource, RuntimeError> {
        let _gate = self.gate(hash).await;
        self.past_memory(hash, |this, hash, bytes| {
            this.cache.precompile_blocking(&this.engine, hash, bytes)
        })
        .await
    }

    /// Waits for this component's turn: one load per component at a time,
    /// so concurrent first requests for a cold function wait for one load
    /// instead of compiling it again each.
    async fn gate(&self, hash: &str) -> LoadGate<'_> {
        let gate = self
            .loading
            .lock()
            .entry(hash.to_string())
            .or_default()
            .clone();
        LoadGate {
            turn: Some(gate.clone().lock_owned().await),
            gate,
            runtime: self,
            hash: hash.to_string(),
        }
    }

    /// Runs `work` (on the disk cache, maybe compiling; given a reader of
    /// the component's bytes) on a blocking thread, in one of the node's
    /// compile turns; the caller holds the component's gate. A failure is
    /// remembered, and answers instead of `work` for [`LOAD_RETRY`].
    async fn past_memory<T: Send + 'static>(
        self: &Arc<Self>,
        hash: &str,
        work: impl FnOnce(
            &Runtime,
            &str,
            Box<dyn FnOnce() -> Result<Vec<u8>, RuntimeError>>,
        ) -> Result<T, RuntimeError>
        + Send
        + 'static,
    ) -> Result<T, RuntimeError> {
        self.remembered_failure(hash)?;
        let done = async {
            let _turn = self
                .compiling
                .acquire()
                .await
                .map_err(|e| RuntimeError::Io(format!("compile queue closed: {e}")))?;
            let this = self.clone();
            let owned = hash.to_string();
            tokio::task::spawn_blocking(move || {
                let (hash, path) = (&owned, this.components.path(&owned));
                let bytes = Box::new(move || {
                    std::fs::read(&path).map_err(|e| {
                        RuntimeError::Io(format!(
                            "reading component {}: {e}; deploy the app again to re-upload it",
                            path.display()
                        ))
                    })
                });
                work(&this, hash, bytes)
            })
            .await
            .map_err(|e| RuntimeError::Io(format!("compile task failed: {e}")))?
        }
        .await;
        self.remember(hash, done.as_ref().err());
        done
    }
}
