//! Instance reuse, opt-in for WASI 0.3 functions: one instance serves up to
//! `instance_concurrency` requests at once and `instance_requests` in its
//! life.
//!
//! An instance is a worker task owning its `Store`: it instantiates the
//! component, then runs the store's event loop (`Store::run_concurrent`),
//! taking requests from its channel and calling `handler.handle` for each
//! as a concurrent guest task, all inside [`crate::FairCpu::gate`] like a
//! fresh instance. A request takes a [`Slot`] in an instance with room (or
//! starts one) under its function's [`Instances`] lock, holds it until its
//! response is complete, and keeps its own record, status, bytes and
//! timeouts.
//!
//! What the requests of one instance share, and what it means:
//! - memory (`memory_mb` is the instance's) and globals;
//! - a trap: it stops the instance; the request whose call trapped is
//!   recorded as the trap, the others it was serving as stopped by it;
//! - a timeout: a request past its `first_byte_timeout_ms` or `timeout_ms`
//!   stops the instance the same way (its task cannot be stopped alone,
//!   and a guest in a busy loop holds the whole instance);
//! - output: what the instance writes goes to the logs of every request it
//!   serves at that moment (exact with one at a time);
//! - service calls (KV, documents, events...) count for the oldest request
//!   it serves; calls it makes carry no `traceparent` of a request;
//! - configuration: an instance sees the configuration of its start.
//!
//! An instance stops taking requests once it has taken `instance_requests`,
//! once a request it served ended other than by completing its response (a
//! client that went away: its guest task may still run), or after
//! [`IDLE`] without requests; it ends when it serves none.

use super::tracker::Tracker;
use super::*;
use crate::capture::{Route, Stream};
use crate::ops::OpLog;
use futures::StreamExt as _;
use tokio::sync::{Notify, mpsc, watch};

/// How long an instance with nothing to serve stays, waiting for requests.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// The shared instances of one function that take requests.
#[derive(Default)]
pub(crate) struct Instances {
    live: Mutex<Vec<Arc<Shared>>>,
    next_key: AtomicU64,
}

/// One shared instance, as its requests and its store see it.
pub(crate) struct Shared {
    jobs: mpsc::UnboundedSender<Job>,
    inner: Mutex<Inner>,
    /// Wakes the worker to check whether it must end.
    check: Notify,
    /// Set once the instance is gone and every request it served has its end.
    dead: watch::Sender<bool>,
    peak: Arc<AtomicU64>,
}

struct Inner {
    /// Requests taken, toward `instance_requests`.
    given: u32,
    /// Takes no more requests.
    retired: bool,
    /// Why it must end now, if it must.
    stop: Option<Stop>,
    /// The requests it serves, oldest first.
    live: Vec<(u64, Arc<Tracker>)>,
    /// When it last served nothing.
    idle_since: Instant,
}

struct Stop {
    culprit: u64,
    /// The culprit's invocation id (its slot may be gone by the end).
    culprit_id: Option<String>,
    outcome: Outcome,
    error: String,
}

/// A request for the worker.
pub(super) struct Job {
    key: u64,
    req: Request<ReplayBody>,
    tx: oneshot::Sender<Result<Response<ResponseBody>, String>>,
}

/// A request's place in a shared instance, held until its response is
/// complete: dropped before (`complete` not called), the instance takes no
/// more requests.
pub(super) struct Slot {
    pub(super) shared: Arc<Shared>,
    pub(super) key: u64,
    completed: bool,
    /// The request's admission, released with the slot.
    _permit: crate::Permit,
}

impl Slot {
    /// The response went out whole.
    pub(super) fn complete(mut self) {
        self.completed = true;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.shared.inner.lock();
        if let Some(i) = inner.live.iter().position(|(k, _)| *k == self.key) {
            let (_, tracker) = inner.live.remove(i);
            tracker
                .peak_memory
                .fetch_max(self.shared.peak.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        if !self.completed {
            inner.retired = true;
        }
        if inner.live.is_empty() {
            inner.idle_since = Instant::now();
            if inner.retired {
                drop(inner);
                self.shared.check.notify_one();
            }
        }
    }
}

impl Route for Shared {
    fn write(&self, stream: Stream, data: &[u8]) {
        for (_, t) in &self.inner.lock().live {
            match stream {
                Stream::Stdout => t.stdout.write(data),
                Stream::Stderr => t.stderr.write(data),
            }
        }
    }
}

impl Shared {
    /// The operations log of the oldest request it serves.
    pub(crate) fn ops(&self) -> Option<Arc<OpLog>> {
        self.inner.lock().live.first().map(|(_, t)| t.ops.clone())
    }

    /// Ends the instance because the request `key` ran past a limit: it
    /// ends with `outcome`, the others it serves as stopped by it.
    pub(super) fn expire(&self, key: u64, outcome: Outcome, error: String) {
        let mut inner = self.inner.lock();
        inner.retired = true;
        if inner.stop.is_none() {
            let culprit_id = inner
                .live
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, t)| t.id.clone());
            inner.stop = Some(Stop {
                culprit: key,
                culprit_id,
                outcome,
                error,
            });
        }
        drop(inner);
        self.check.notify_one();
    }

    /// Waits until the instance is gone and its requests' ends are set.
    pub(super) async fn gone(&self) {
        let mut rx = self.dead.subscribe();
        let _ = rx.wait_for(|dead| *dead).await;
    }

    /// Whether the worker must end now: stopped, or retired with nothing
    /// left to serve.
    fn must_end(&self) -> bool {
        let inner = self.inner.lock();
        inner.stop.is_some() || (inner.retired && inner.live.is_empty())
    }

    /// Retires the instance if it served nothing for [`IDLE`].
    fn idle_out(&self) -> bool {
        let mut inner = self.inner.lock();
        if inner.live.is_empty() && inner.idle_since.elapsed() >= IDLE {
            inner.retired = true;
        }
        inner.retired && inner.live.is_empty()
    }

    /// Sets the end of every request it still serves: `culprit` (if any)
    /// ends with `outcome`, the others as stopped because of it.
    fn fail_all(
        &self,
        culprit: Option<u64>,
        culprit_id: Option<String>,
        outcome: Outcome,
        error: &str,
    ) {
        let mut inner = self.inner.lock();
        inner.retired = true;
        // Alone, it is the culprit.
        let culprit = culprit.or_else(|| (inner.live.len() == 1).then(|| inner.live[0].0));
        let culprit_id = culprit_id.or_else(|| {
            culprit
                .and_then(|c| inner.live.iter().find(|(k, _)| *k == c))
                .map(|(_, t)| t.id.clone())
        });
        for (key, t) in &inner.live {
            match &culprit_id {
                _ if Some(*key) == culprit => t.finish(outcome, Some(error.to_string())),
                Some(id) => t.finish(
                    Outcome::Error,
                    Some(format!(
                        "was stopped with the instance serving it, because invocation {id} in the same instance {error}"
                    )),
                ),
                // Which request it was is not known (a trap in the
                // instance's event loop): each ends as the instance did.
                None => t.finish(
                    outcome,
                    Some(format!(
                        "was stopped with the instance serving it, which {error}"
                    )),
                ),
            }
        }
        inner.live.clear();
    }
}

impl Instances {
    /// A slot for `tracker` in an instance with room, or in a new one
    /// (whose worker is started with `start`).
    pub(super) fn acquire(
        &self,
        limits: &Limits,
        tracker: &Arc<Tracker>,
        permit: crate::Permit,
        start: impl FnOnce(Arc<Shared>, mpsc::UnboundedReceiver<Job>),
    ) -> Slot {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let mut live = self.live.lock();
        live.retain(|s| !s.inner.lock().retired);
        for shared in live.iter() {
            let mut inner = shared.inner.lock();
            if inner.stop.is_none()
                && !inner.retired
                && inner.live.len() < limits.instance_concurrency as usize
            {
                inner.given += 1;
                inner.retired = inner.given >= limits.instance_requests;
                inner.live.push((key, tracker.clone()));
                return Slot {
                    shared: shared.clone(),
                    key,
                    completed: false,
                    _permit: permit,
                };
            }
        }
        let (jobs, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            jobs,
            inner: Mutex::new(Inner {
                given: 1,
                retired: limits.instance_requests <= 1,
                stop: None,
                live: vec![(key, tracker.clone())],
                idle_since: Instant::now(),
            }),
            check: Notify::new(),
            dead: watch::Sender::new(false),
            peak: Arc::default(),
        });
        live.push(shared.clone());
        drop(live);
        start(shared.clone(), rx);
        Slot {
            shared,
            key,
            completed: false,
            _permit: permit,
        }
    }
}

/// Hands `req` to the instance of `slot`; the head comes on the returned
/// channel (dropped if the instance ends first).
pub(super) fn send(
    slot: &Slot,
    req: Request<ReplayBody>,
) -> oneshot::Receiver<Result<Response<ResponseBody>, String>> {
    let (tx, rx) = oneshot::channel();
    let _ = slot.shared.jobs.send(Job {
        key: slot.key,
        req,
        tx,
    });
    rx
}

/// The worker of one shared instance: instantiates it in `store`, serves
/// the jobs it is sent until it must end, then sets the end of the
/// requests it still serves (a trap, a stop) and drops the store.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut store: Store<Host>,
    pre: wasmtime_wasi_http::p3::bindings::ServicePre<Host>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    enum Failed {
        /// Instantiation.
        Start(wasmtime::Error),
        /// The call serving one request.
        Call(u64, wasmtime::Error),
        /// The event loop, in no request's call.
        Loop(wasmtime::Error),
    }
    let result: Result<(), Failed> = async {
        let service = pre
            .instantiate_async(&mut store)
            .await
            .map_err(Failed::Start)?;
        let serve = store.run_concurrent(
            async move |acc| -> Result<std::convert::Infallible, (u64, wasmtime::Error)> {
                let mut running = futures::stream::FuturesUnordered::new();
                let handle = *service.wasi_http_handler().func_handle().func();
                loop {
                    // A job is taken once the instance can start a call (no
                    // backpressure, no sync call in progress): a call queued
                    // in the instance instead is not started again.
                    let next = async {
                        std::future::poll_fn(|cx| acc.poll_ready_for_concurrent_call(handle, cx))
                            .await;
                        rx.recv().await
                    };
                    tokio::select! {
                        job = next => match job {
                            Some(job) => running.push(serve(acc, &service, job)),
                            // Never: the instance holds its sender.
                            None => std::future::pending::<()>().await,
                        },
                        // Every completion is taken here (a refuted pattern
                        // would leave the other calls unpolled until a job came).
                        done = running.next(), if !running.is_empty() => {
                            if let Some(Err(failed)) = done {
                                return Err(failed);
                            }
                        }
                    }
                }
            },
        );
        let mut serve = std::pin::pin!(serve);
        loop {
            if shared.must_end() {
                return Ok(());
            }
            tokio::select! {
                ended = &mut serve => {
                    return Err(match ended {
                        Ok(Err((key, e))) => Failed::Call(key, e),
                        Ok(Ok(never)) => match never {},
                        Err(e) => Failed::Loop(e),
                    });
                }
                () = shared.check.notified() => {}
                () = tokio::time::sleep(IDLE / 4) => {
                    if shared.idle_out() {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    let stop = shared.inner.lock().stop.take();
    match (result, stop) {
        (_, Some(stop)) => shared.fail_all(
            Some(stop.culprit),
            stop.culprit_id,
            stop.outcome,
            &stop.error,
        ),
        (Ok(()), None) => shared.fail_all(
            None,
            None,
            Outcome::Error,
            "ended while serving it (this is a bug in Nimbus)",
        ),
        (Err(failed), None) => {
            let (culprit, e) = match failed {
                Failed::Start(e) => {
                    let error = format!("could not be started: {}", describe_error(&e));
                    shared.fail_all(None, None, Outcome::Error, &error);
                    drop(store);
                    shared.dead.send_replace(true);
                    return;
                }
                Failed::Call(key, e) => (Some(key), e),
                Failed::Loop(e) => (None, e),
            };
            let error = describe_error(&e);
            let serving = shared.inner.lock().live.len();
            let (outcome, error) = if store.data().limiter.hit {
                (Outcome::MemoryLimit, format!("was stopped: {error}"))
            } else if culprit.is_none() && serving > 1 {
                (
                    Outcome::Trap,
                    format!(
                        "trapped ({error}) in one of the {serving} requests it was serving at once (which one, the logs may tell: a Rust panic's message is there)"
                    ),
                )
            } else {
                (
                    Outcome::Trap,
                    format!(
                        "trapped ({error}); a Rust panic ends this way, its message is in the logs"
                    ),
                )
            };
            shared.fail_all(culprit, None, outcome, &error);
        }
    }
    drop(store);
    shared.dead.send_replace(true);
}

/// One request in the instance's event loop: the guest's `handle`, whose
/// response head goes back to the request; an `Err` is a trap, which ends
/// the instance.
async fn serve(
    acc: &wasmtime::component::Accessor<Host>,
    service: &wasmtime_wasi_http::p3::bindings::Service,
    job: Job,
) -> Result<(), (u64, wasmtime::Error)> {
    let Job { key, req, tx } = job;
    let (req, io) = acc.with(|mut s| {
        let (req, io) = wasmtime_wasi_http::p3::Request::from_http(s.data_mut().http().hooks, req);
        let io: Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>> =
            Box::pin(io);
        (req, io)
    });
    let head = match service.handle(acc, req).await.map_err(|e| (key, e))? {
        Ok(res) => acc
            .with(|mut s| res.into_http(&mut s, io))
            .map_err(|e| guest_error(format!("its response cannot be sent: {e}"))),
        Err(code) => Err(guest_error(format!("{code:?}"))),
    };
    let _ = tx.send(head);
    Ok(())
}

/// A request bound for a shared instance, set up by `Runtime::invoke`.
pub(super) struct SharedCall<'a> {
    pub(super) f: &'a Arc<Function>,
    pub(super) pre: &'a wasmtime_wasi_http::p3::bindings::ServicePre<Host>,
    pub(super) req: Request<ReplayBody>,
    pub(super) tracker: Arc<Tracker>,
    pub(super) permit: crate::Permit,
    pub(super) id: &'a str,
    pub(super) method: http::Method,
    pub(super) deadline: Instant,
}

impl Runtime {
    /// Serves a request on a shared instance of its function (instance
    /// reuse): a slot in an instance with room, or a new instance; the
    /// response head within `first_byte_timeout_ms`; the body, complete
    /// within `timeout_ms`. A request past either stops its instance.
    pub(super) async fn invoke_shared(
        self: &Arc<Self>,
        c: SharedCall<'_>,
    ) -> Response<ResponseBody> {
        let SharedCall {
            f,
            pre,
            req,
            tracker,
            permit,
            id,
            method,
            deadline,
        } = c;
        let slot = f
            .instances
            .acquire(&f.limits, &tracker, permit, |shared, rx| {
                let route: Arc<dyn Route> = shared.clone();
                let store = self.new_store(
                    f,
                    StoreParts {
                        stdout: Capture::routed(route.clone(), Stream::Stdout),
                        stderr: Capture::routed(route, Stream::Stderr),
                        config: &f.config(),
                        // A request's span is its own: calls the instance
                        // makes belong to none of them.
                        traceparent: None,
                        peak: shared.peak.clone(),
                        ops: Arc::default(),
                        shared: Some(shared.clone()),
                    },
                );
                tokio::spawn(
                    self.fair
                        .gate(f.app_name.clone(), run(shared, store, pre.clone(), rx)),
                );
            });
        let rx = send(&slot, req);
        let first_byte = Duration::from_millis(f.limits.first_byte_timeout_ms);
        let head = match tokio::time::timeout(first_byte, rx).await {
            Err(_) => {
                let msg = format!(
                    "did not start its response within its first_byte_timeout_ms of {} ms, so it was stopped, with the instance serving it",
                    f.limits.first_byte_timeout_ms
                );
                tracker.finish(Outcome::Timeout, Some(msg.clone()));
                slot.shared.expire(slot.key, Outcome::Timeout, msg.clone());
                tracker.status.store(504, Ordering::Relaxed);
                return text_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("function {f} {msg} (invocation {id})"),
                );
            }
            Ok(Err(_)) => {
                // The instance ended before the head: its worker sets why.
                slot.shared.gone().await;
                let (outcome, msg) = tracker.end_now();
                let status = if outcome == Outcome::Timeout {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                tracker.status.store(status.as_u16(), Ordering::Relaxed);
                return text_response(
                    status,
                    format!(
                        "function {f} {msg} (invocation {id}; see `nimbus logs {} {} --invocation {id}`)",
                        f.app, f.name
                    ),
                );
            }
            Ok(Ok(head)) => head,
        };
        match head {
            Ok(resp) => {
                tracker
                    .status
                    .store(resp.status().as_u16(), Ordering::Relaxed);
                let bodiless = is_bodiless(&method, resp.status());
                let length = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                // Ends the request at its deadline (stopping the instance),
                // or with the instance.
                let shared = slot.shared.clone();
                let (key, t, timeout_ms) = (slot.key, tracker.clone(), f.limits.timeout_ms);
                let ends: GuestFuture = Box::pin(async move {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline.into()) => {
                            let msg = format!(
                                "timed out: still running after its timeout_ms of {timeout_ms} ms, so it was stopped, with the instance serving it"
                            );
                            t.finish(Outcome::Timeout, Some(msg.clone()));
                            shared.expire(key, Outcome::Timeout, msg.clone());
                        }
                        () = shared.gone() => {}
                    }
                    let (outcome, error) = t.end_now();
                    TaskEnd {
                        outcome,
                        error: Some(error),
                    }
                });
                let tracker = tracker.clone();
                resp.map(move |body| {
                    GuestBody {
                        guest: Some(ends),
                        inner: Counted {
                            inner: body,
                            tracker,
                            outbound: true,
                        },
                        inner_done: false,
                        bodiless,
                        length,
                        slot: Some(slot),
                    }
                    .boxed_unsync()
                })
            }
            Err(code) => {
                let msg =
                    format!("function {f} answered with an error instead of a response: {code}");
                tracker.finish(Outcome::Error, Some(msg.clone()));
                tracker.status.store(502, Ordering::Relaxed);
                slot.complete();
                text_response(StatusCode::BAD_GATEWAY, msg)
            }
        }
    }
}
