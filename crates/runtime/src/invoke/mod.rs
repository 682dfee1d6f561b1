//! One invocation: admission, a fresh instance, the guest's handler, the
//! response streamed back, and the invocation record.
//!
//! [`Runtime::invoke`]: admit (function, app, platform permits; a 429 past
//! a bound, or an unbounded wait for a `patient` event delivery, whose
//! event waits durably meanwhile) → load (memory, disk cache or compile) →
//! a fresh `Store` and instance → `incoming-handler.handle`, run inside
//! [`crate::FairCpu::gate`] on the request's own task (no spawn) until it
//! sends the response head (bounded by `first_byte_timeout_ms`), then
//! driven by the response body as hyper polls it (bounded by `timeout_ms`)
//! → the record, when guest and body are both done. A request dropped
//! before its response started (the client gave up) drops the instance and
//! is recorded as an error saying so.
//!
//! While it runs, the invocation keeps its input (the request headers, and
//! the body as the guest reads it, up to `--replay-body-kb`); the record
//! carries it only if the invocation failed (or answered 5xx), without
//! credential headers and with secret values redacted. The recorded path
//! has credential query parameters (`nimbus_core::record::redact_query`)
//! and secret values redacted.
//! [`InvokeRequest::secret`] marks a request carrying a credential for the
//! guest alone (the password-reset hook): no input is kept, and the value
//! is redacted from its logs and error.
//!
//! Tracing: the invocation is a child span of [`InvokeRequest::trace`] (or
//! starts a trace); a request's own `traceparent` is replaced by the
//! invocation's span, and none is added to a request that had none (an
//! extra header per request costs a few percent of hello throughput).

use crate::ConfigSnapshot;
use crate::admission::{Limit, Throttled};
use crate::capability::InstanceCx;
use crate::capture::Capture;
use crate::host::{AllowedHost, Host, Limiter, OutboundPolicy};
use crate::{RecordSink, Runtime};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use nimbus_core::{AppSpec, FunctionSpec, InvocationRecord, Limits, Outcome, StoredInput};
use parking_lot::Mutex;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};
use wasmtime::Store;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

mod bodies;
mod head;
mod shared;
mod tracker;

pub(crate) use shared::Shared;

use crate::cache::HandlerPre;
use bodies::{Counted, GuestFuture, TaskEnd};
use tracker::Tracker;

/// Body of every response the runtime produces (guest or error).
pub type ResponseBody = HyperOutgoingBody;

/// The handler call an invocation makes, set up before the instance exists.
enum Call {
    /// `incoming-handler.handle(request, response-outparam)`.
    P2 {
        req: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
        out: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
    },
    /// `handler.handle(request) -> result<response, error-code>`; `io` ends
    /// with the request body's transfer, `tx` takes the response head.
    P3 {
        req: wasmtime_wasi_http::p3::Request,
        io: Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>>,
        tx: oneshot::Sender<Result<Response<ResponseBody>, String>>,
    },
}

/// Header carrying the invocation id on every response.
pub const INVOCATION_ID_HEADER: &str = "nimbus-invocation-id";

/// One function of one active revision, ready to be invoked.
pub struct Function {
    /// App name.
    pub app: String,
    /// Function name.
    pub name: String,
    /// Revision it belongs to.
    pub revision: i64,
    /// Component hash.
    pub component: String,
    /// Limits.
    pub limits: Limits,
    env: Vec<(String, String)>,
    allowed: Arc<[AllowedHost]>,
    app_name: Arc<str>,
    concurrency: Arc<Semaphore>,
    /// The permits `concurrency` holds in all: `max_concurrency`, or this
    /// node's share of it when the limit is cluster-wide.
    share: std::sync::atomic::AtomicU32,
    /// Its app's spec at this revision, and its own.
    app_spec: Arc<AppSpec>,
    spec: Arc<FunctionSpec>,
    config: arc_swap::ArcSwap<ConfigSnapshot>,
    /// Its app's share of the node (set at its first invocation).
    app_share: std::sync::OnceLock<Arc<crate::admission::AppShare>>,
    /// Its shared instances taking requests (instance reuse).
    instances: shared::Instances,
}

impl Function {
    /// Prepares a function from its spec.
    pub fn new(app: &str, name: &str, revision: i64, spec: &FunctionSpec) -> Function {
        Function {
            app: app.to_string(),
            name: name.to_string(),
            revision,
            component: spec.component.clone(),
            limits: spec.limits,
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            allowed: spec
                .allowed_outbound_hosts
                .iter()
                .map(|h| AllowedHost::parse(h))
                .collect(),
            concurrency: Arc::new(Semaphore::new(spec.limits.max_concurrency as usize)),
            share: std::sync::atomic::AtomicU32::new(spec.limits.max_concurrency),
            app_name: Arc::from(app),
            app_spec: Arc::default(),
            spec: Arc::new(spec.clone()),
            config: arc_swap::ArcSwap::from_pointee(ConfigSnapshot::default()),
            app_share: std::sync::OnceLock::new(),
            instances: shared::Instances::default(),
        }
    }

    /// Places the function in its app's spec, which says what it may
    /// reach of the app's data (each capability reads its own section).
    pub fn in_app(mut self, app_spec: Arc<AppSpec>) -> Function {
        self.app_spec = app_spec;
        self
    }

    /// Its app's spec at this revision (empty for a function outside one).
    pub fn app_spec(&self) -> &Arc<AppSpec> {
        &self.app_spec
    }

    /// Its own spec.
    pub fn spec(&self) -> &Arc<FunctionSpec> {
        &self.spec
    }

    /// Its app's name, shared.
    pub fn app_name(&self) -> &Arc<str> {
        &self.app_name
    }

    /// Replaces the configuration new invocations see (atomically: an
    /// invocation sees one snapshot from start to end).
    pub fn set_config(&self, config: ConfigSnapshot) {
        self.config.store(Arc::new(config));
    }

    /// The configuration new invocations see.
    pub fn config(&self) -> Arc<ConfigSnapshot> {
        self.config.load_full()
    }

    /// Invocations of this function running now.
    pub fn in_flight(&self) -> usize {
        (self.share.load(std::sync::atomic::Ordering::SeqCst) as usize)
            .saturating_sub(self.concurrency.available_permits())
    }

    /// Sets this node's share of a cluster-wide concurrency limit (a
    /// function whose limit holds per node keeps it whole). Growing takes
    /// effect at once; shrinking as running invocations finish.
    pub fn set_concurrency_share(&self, share: u32) {
        use std::sync::atomic::Ordering;
        if self.limits.concurrency_scope != nimbus_core::ConcurrencyScope::Cluster {
            return;
        }
        let share = share.min(self.limits.max_concurrency);
        let old = self.share.swap(share, Ordering::SeqCst);
        if share > old {
            self.concurrency.add_permits((share - old) as usize);
        } else if share < old {
            let sem = self.concurrency.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(old - share).await {
                    p.forget();
                }
            });
        }
    }

    /// This node's share of the concurrency limit.
    pub fn concurrency_share(&self) -> u32 {
        self.share.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Shows `app/function`.
impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

/// Routing facts passed to the guest as `nimbus-*` request headers.
#[derive(Debug, Default, Clone)]
pub struct InvokeRequest {
    /// `http` (through a route), `invoke` (direct call), or the event
    /// trigger: `queue`, `topic`, `schedule`, `async`.
    pub trigger: &'static str,
    /// The route pattern that matched, if any.
    pub route: Option<String>,
    /// Path parameters.
    pub params: Vec<(String, String)>,
    /// The event delivered, for event triggers.
    pub event: Option<EventMeta>,
    /// Wait for capacity as long as it takes instead of answering 429
    /// (event deliveries, whose event waits durably meanwhile).
    pub patient: bool,
    /// The caller, as the gateway's policy verified it.
    pub caller: Option<Caller>,
    /// More `nimbus-*` headers the platform vouches for (a WebSocket
    /// event's connection id, message type, close code); a client's
    /// headers of these names are dropped like every `nimbus-*` one.
    pub trusted: Vec<(&'static str, String)>,
    /// The trace position of whatever caused this invocation (a client's
    /// `traceparent`, an event's producer); `None` starts a new trace.
    pub trace: Option<nimbus_core::trace::TraceContext>,
    /// A credential the request carries for the guest alone (the
    /// platform's own auth flows: a password-reset token). Nothing of the
    /// request is kept for replay, and the value is redacted from the
    /// captured logs, as a secret's would be.
    pub secret: Option<String>,
}

/// Body of a replayed request.
pub type ReplayBody = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// The request a kept input describes, to invoke again.
pub fn replay_request(input: &StoredInput) -> Result<Request<ReplayBody>, String> {
    let mut req = Request::builder()
        .method(input.method.as_str())
        .uri(input.path.as_str());
    for (k, v) in &input.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.body(
        http_body_util::Full::new(Bytes::from(input.body.clone()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
    .map_err(|e| format!("the kept request cannot be rebuilt: {e}"))
}

/// A verified caller, passed to the guest as `nimbus-auth-*` headers.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `jwt` or `api_key`.
    pub kind: &'static str,
    /// The token's subject, or the API key's name.
    pub subject: String,
    /// The token's claims as JSON (`jwt`).
    pub claims: Option<String>,
}

/// The event an invocation delivers.
#[derive(Debug, Clone)]
pub struct EventMeta {
    /// Event id (CloudEvents `id`).
    pub id: String,
    /// Attempt number, 1-based.
    pub attempt: u32,
}

/// A plain-text response Nimbus writes itself (errors, throttling).
pub fn text_response(status: StatusCode, message: String) -> Response<ResponseBody> {
    let mut resp = Response::new(
        http_body_util::Full::new(Bytes::from(message + "\n"))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn with_id(mut resp: Response<ResponseBody>, id: &str) -> Response<ResponseBody> {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut()
            .insert(HeaderName::from_static(INVOCATION_ID_HEADER), v);
    }
    resp
}

/// A guest's error code as the 502 and the record say it: the guest
/// chooses its text, so at most 1 KiB of it.
fn guest_error(mut text: String) -> String {
    const MAX: usize = 1024;
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("... (cut at 1 KiB)");
    }
    text
}

/// A WASI 0.3 guest's request as a 0.2 guest sees it: scheme http, and
/// the request's host as its authority.
fn with_origin<B>(req: Request<B>) -> Request<B> {
    let (mut head, body) = req.into_parts();
    let authority = head
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    if let Some(authority) = authority {
        let mut uri = head.uri.clone().into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = http::Uri::from_parts(uri) {
            head.uri = uri;
        }
    }
    Request::from_parts(head, body)
}

fn describe_error(e: &wasmtime::Error) -> String {
    // The root cause names the trap or the limit; the wasm backtrace that
    // wraps it is for the server log, not the client.
    let cause = e.root_cause();
    if let Some(wasmtime::component::ResourceTableError::Full) =
        cause.downcast_ref::<wasmtime::component::ResourceTableError>()
    {
        return format!(
            "the instance holds {MAX_RESOURCES} host resources (header sets, bodies, streams, pollables...), the most one may: drop those it no longer needs"
        );
    }
    cause.to_string()
}

/// Host resources one instance may hold at once, in each of its tables
/// (the `wasi` resources, and a WASI 0.3 guest's tasks, streams and
/// futures). They live in host memory, outside the instance's
/// `memory_mb`: wasmtime's own bound (a million) let four requests at
/// once make the host hold over 250 MiB.
pub const MAX_RESOURCES: usize = 10_000;

/// What a new store is built from, besides its function.
struct StoreParts<'a> {
    stdout: Capture,
    stderr: Capture,
    config: &'a Arc<ConfigSnapshot>,
    traceparent: Option<&'a HeaderValue>,
    peak: Arc<AtomicU64>,
    ops: Arc<crate::ops::OpLog>,
    shared: Option<Arc<Shared>>,
}

impl Runtime {
    /// A store for one instance of `f`: its WASI context (stdout and
    /// stderr captured, its environment), outbound policy, memory limiter,
    /// each capability's state, and epoch yields every tick.
    fn new_store(&self, f: &Function, p: StoreParts<'_>) -> Store<Host> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(p.stdout).stderr(p.stderr.clone()).envs(&f.env);
        let mut store = Store::new(
            &self.engine,
            Host {
                wasi: wasi.build(),
                http: WasiHttpCtx::new(),
                table: {
                    let mut t = wasmtime::component::ResourceTable::new();
                    t.set_max_capacity(MAX_RESOURCES);
                    t
                },
                outbound: OutboundPolicy {
                    allowed: f.allowed.clone(),
                    egress: self.egress.clone(),
                    stderr: p.stderr,
                    traceparent: p.traceparent.cloned(),
                },
                limiter: Limiter {
                    max_bytes: (f.limits.memory_mb as usize) << 20,
                    hit: false,
                    peak: p.peak,
                },
                caps: {
                    let cx = InstanceCx {
                        function: f,
                        config: p.config,
                        traceparent: p.traceparent,
                    };
                    self.capabilities.iter().map(|c| c.instance(&cx)).collect()
                },
                ops: p.ops,
                shared: p.shared,
                calls: crate::ops::HostCalls::new(f.limits.instance_concurrency),
            },
        );
        if let Some(t) = store.concurrent_resource_table() {
            t.set_max_capacity(MAX_RESOURCES);
        }
        store.limiter(|h| &mut h.limiter);
        store.epoch_deadline_async_yield_and_update(1);
        store.set_epoch_deadline(1);
        store
    }

    /// Runs `req` on a fresh instance of `f` and returns the response to send.
    ///
    /// Never fails: throttling, load errors, traps and timeouts become
    /// 429/503/500/504 responses with a clear message. Every response carries
    /// the `nimbus-invocation-id` header; every admitted invocation produces
    /// one record in the sink.
    pub async fn invoke<B>(
        self: &Arc<Self>,
        f: &Arc<Function>,
        req: Request<B>,
        meta: InvokeRequest,
    ) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let id = uuid::Uuid::now_v7().to_string();
        // Named in error messages only; formatting it costs nothing until then.
        let qualified: &Function = f;

        let app = f
            .app_share
            .get_or_init(|| self.admission.app_share(&f.app_name));
        let admitted = if meta.patient {
            Ok(self.admission.admit_patient(&f.concurrency, app).await)
        } else {
            self.admission.admit(&f.concurrency, app).await
        };
        let permit = match admitted {
            Ok(p) => p,
            Err(why) => {
                metrics::counter!(
                    "nimbus_throttled_total",
                    "app" => f.app_name.to_string(),
                    "function" => f.name.clone()
                )
                .increment(1);
                let wait = self.admission.wait_timeout();
                let message = head::throttled_message(
                    why,
                    f,
                    wait,
                    self.admission.app_limit(),
                    self.config.max_in_flight,
                );
                let resp = head::throttled_response(message, wait);
                return with_id(resp, &id);
            }
        };

        let (loaded, cold) = match self.load(&f.component).await {
            Ok((l, source)) => (l, !matches!(source, crate::LoadSource::Memory)),
            Err(e) => {
                tracing::error!(function = %qualified, invocation = %id, error = %e, "cannot load function");
                return with_id(
                    text_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("function {qualified} cannot be loaded: {e}"),
                    ),
                    &id,
                );
            }
        };

        let (mut parts, body) = req.into_parts();
        // This invocation's span: a child of its cause, or a new trace.
        let trace = match &meta.trace {
            _ if !self.config.tracing => nimbus_core::trace::TraceContext {
                trace_id: String::new(),
                span_id: String::new(),
                sampled: false,
            },
            Some(parent) => parent.child(),
            None => nimbus_core::trace::TraceContext::start(),
        };
        let traceparent = self
            .config
            .tracing
            .then(|| HeaderValue::try_from(trace.header()).ok())
            .flatten();
        let config = match &meta.secret {
            None => f.config.load_full(),
            Some(secret) => {
                let mut c = ConfigSnapshot::clone(&f.config.load());
                c.secrets.push(secret.clone());
                Arc::new(c)
            }
        };
        let stdout = Capture::new(self.config.log_limit_bytes);
        let stderr = Capture::new(self.config.log_limit_bytes);
        let method = parts.method.clone();
        let tracker = Arc::new(Tracker {
            id: id.clone(),
            app: f.app.clone(),
            function: f.name.clone(),
            revision: f.revision,
            trigger: meta.trigger,
            method: method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            event_id: meta.event.as_ref().map(|e| e.id.clone()),
            attempt: meta.event.as_ref().map_or(0, |e| e.attempt),
            memory_mb: f.limits.memory_mb,
            peak_memory: Arc::default(),
            cold,
            trace,
            parent_span_id: meta.trace.as_ref().map(|p| p.span_id.clone()),
            headers: parts.headers.clone(),
            input: Mutex::new(Vec::new()),
            input_limit: if meta.secret.is_some() {
                0
            } else {
                self.config.replay_body_bytes
            },
            keep_input: meta.secret.is_none(),
            input_complete: std::sync::atomic::AtomicBool::new(false),
            started_at_us: nimbus_store::now_us(),
            start: Instant::now(),
            status: AtomicU16::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            end: Mutex::new(None),
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            config: config.clone(),
            ops: Arc::default(),
            sink: self.sink.clone(),
        });

        // Headers the guest can trust: clients cannot set nimbus-* themselves.
        // What the guest calls (outbound HTTP, sends) becomes a child of its
        // span: the host adds it.
        head::trusted_head(
            &mut parts,
            &head::Trusted {
                id: &id,
                app: &f.app,
                function: &f.name,
                meta: &meta,
                traceparent: traceparent.as_ref(),
            },
        );
        let req = Request::from_parts(
            parts,
            Counted {
                inner: body,
                tracker: tracker.clone(),
                outbound: false,
            },
        );

        let timeout = Duration::from_millis(f.limits.timeout_ms);
        let first_byte = Duration::from_millis(f.limits.first_byte_timeout_ms);
        let deadline = Instant::now() + timeout;
        // A function that reuses instances (WASI 0.3 only; a request with a
        // secret of its own always gets a fresh one).
        if let HandlerPre::P3(pre) = &loaded.pre
            && f.limits.reuses_instances()
            && meta.secret.is_none()
        {
            let call = shared::SharedCall {
                f,
                pre,
                req: with_origin(req).map(|b| b.boxed_unsync()),
                tracker,
                config,
                permit,
                id: &id,
                method,
                deadline,
            };
            return with_id(self.invoke_shared(call).await, &id);
        }
        let mut store = self.new_store(
            f,
            StoreParts {
                stdout,
                stderr,
                config: &config,
                traceparent: traceparent.as_ref(),
                peak: tracker.peak_memory.clone(),
                ops: tracker.ops.clone(),
                shared: None,
            },
        );

        // The response head, from either kind of handler; a guest's error
        // code is described in the 502 that answers it.
        let (tx, rx) = oneshot::channel::<Result<Response<ResponseBody>, String>>();
        let setup = match &loaded.pre {
            HandlerPre::P2(_) => (|| {
                let req = store
                    .data_mut()
                    .http()
                    .new_incoming_request(Scheme::Http, req)?;
                let out = store
                    .data_mut()
                    .http()
                    .new_response_outparam_from_callback(move |head| {
                        let _ = tx
                            .send(head.map_err(|code: ErrorCode| guest_error(format!("{code:?}"))));
                    })?;
                Ok::<_, wasmtime::Error>(Call::P2 { req, out })
            })(),
            HandlerPre::P3(_) => {
                let req = with_origin(req);
                let (req, io) =
                    wasmtime_wasi_http::p3::Request::from_http(store.data_mut().http().hooks, req);
                Ok(Call::P3 {
                    req,
                    io: Box::pin(io),
                    tx,
                })
            }
        };
        let call = match setup {
            Ok(x) => x,
            Err(e) => {
                let msg = format!(
                    "request rejected before reaching {qualified}: {}",
                    describe_error(&e)
                );
                tracker.finish(Outcome::Error, Some(msg.clone()));
                tracker.status.store(400, Ordering::Relaxed);
                return with_id(text_response(StatusCode::BAD_REQUEST, msg), &id);
            }
        };

        let task_tracker = tracker.clone();
        let limits = f.limits;
        // The guest runs inside this request's own task (no spawn, no
        // cross-thread wake-up): first until it sends the response head,
        // then as part of the response body, which polls it along with the
        // body it produces. Dropping either drops the instance.
        let guest = async move {
            let _permit = permit;
            let run = async {
                match (&loaded.pre, call) {
                    (HandlerPre::P2(pre), Call::P2 { req, out }) => {
                        let proxy = pre.instantiate_async(&mut store).await?;
                        proxy
                            .wasi_http_incoming_handler()
                            .call_handle(&mut store, req, out)
                            .await
                    }
                    (HandlerPre::P3(pre), Call::P3 { req, io, tx }) => {
                        let service = pre.instantiate_async(&mut store).await?;
                        store
                            .run_concurrent(async move |acc| {
                                let head = match service.handle(acc, req).await? {
                                    Ok(res) => Ok(acc.with(|mut s| res.into_http(&mut s, io))?),
                                    Err(code) => Err(guest_error(format!("{code:?}"))),
                                };
                                let _ = tx.send(head);
                                // The guest's task outlives its answer while it
                                // writes the body (and whatever it spawned):
                                // the store's event loop turns until it exits.
                                std::future::poll_fn(|cx| acc.poll_no_interesting_tasks(cx)).await;
                                Ok::<_, wasmtime::Error>(())
                            })
                            .await?
                    }
                    _ => unreachable!("the call is set up for the handler loaded"),
                }
            };
            let result = tokio::time::timeout_at(deadline.into(), run).await;
            let end = head::task_end(result, store.data().limiter.hit, limits.timeout_ms);
            // Record the end first: the response body, which ends when the
            // store (and the guest's half of the body) drops, checks it.
            task_tracker.finish(end.outcome, end.error.clone());
            drop(store);
            end
        };
        let mut guest: GuestFuture = Box::pin(self.fair.gate(f.app_name.clone(), guest));
        let mut rx = rx;

        enum First {
            Head(Result<Result<Response<ResponseBody>, String>, oneshot::error::RecvError>),
            Ended(TaskEnd),
        }
        let first = tokio::time::timeout(first_byte, async {
            tokio::select! {
                biased;
                head = &mut rx => First::Head(head),
                end = &mut guest => First::Ended(end),
            }
        })
        .await;
        let (head, guest) = match first {
            Ok(First::Head(Ok(head))) => (Ok(head), Some(guest)),
            Ok(First::Head(Err(_))) => (Err(guest.await), None),
            Ok(First::Ended(end)) => match rx.try_recv() {
                Ok(head) => (Ok(head), None),
                Err(_) => (Err(end), None),
            },
            Err(_) => {
                drop(guest);
                let msg = format!(
                    "did not start its response within its first_byte_timeout_ms of {} ms, so it was stopped",
                    f.limits.first_byte_timeout_ms
                );
                tracker.finish(Outcome::Timeout, Some(msg.clone()));
                tracker.status.store(504, Ordering::Relaxed);
                let resp = text_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("function {qualified} {msg} (invocation {id})"),
                );
                return with_id(resp, &id);
            }
        };
        let resp = match head {
            Ok(Ok(resp)) => bodies::guest_response(&method, resp, &tracker, guest, None),
            Ok(Err(code)) => {
                drop(guest);
                let msg = format!(
                    "function {qualified} answered with an error instead of a response: {code}"
                );
                tracker.finish(Outcome::Error, Some(msg.clone()));
                if !tracker.failed() {
                    // A 0.3 guest's task may have ended (well) with its error.
                    tracker.set_end(Outcome::Error, Some(msg.clone()));
                }
                tracker.status.store(502, Ordering::Relaxed);
                text_response(StatusCode::BAD_GATEWAY, msg)
            }
            Err(end) => {
                // The guest ended without setting a response.
                let (status, msg, sent_nothing) = head::no_response(end);
                if sent_nothing {
                    tracker.set_end(Outcome::Error, Some(msg.clone()));
                }
                tracker.status.store(status.as_u16(), Ordering::Relaxed);
                text_response(
                    status,
                    format!(
                        "function {qualified} {msg} (invocation {id}; see `nimbus logs {} {} --invocation {id}`)",
                        f.app, f.name
                    ),
                )
            }
        };
        with_id(resp, &id)
    }
}
