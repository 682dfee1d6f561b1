//! Instance reuse, opt-in for WASI 0.3 functions: one instance serves up to
//! `instance_concurrency` requests at once and `instance_requests` in its
//! life.
//!
//! An instance is a worker task owning its `Store`: it instantiates the
//! component, then runs the store's event loop (`Store::run_concurrent`),
//! taking a request from its channel whenever the instance is ready for a
//! call and calling `handler.handle` for it as a concurrent guest task, all
//! inside [`crate::FairCpu::gate`] like a fresh instance. A request takes a
//! [`Slot`] in an instance with room (or starts one) under its function's
//! [`Instances`] lock, holds it until its response is complete, and keeps
//! its own record, status, bytes and timeouts.
//!
//! What the requests of one instance share, and what it means:
//! - memory (`memory_mb` is the instance's) and globals;
//! - a trap: it stops the instance and fails every request it serves
//!   (wasmtime reports a trap from the event loop, not from the call that
//!   trapped, so with several in flight each is recorded with the trap);
//! - a timeout: the request past it ends (504, or its body cut), and its
//!   instance takes no more requests and ends once the others it serves
//!   have (a guest task cannot be stopped alone; a busy loop holds the
//!   whole instance, so they may run into their own timeouts);
//! - output: what the instance writes goes to the logs of every request it
//!   serves at that moment (exact with one at a time), or, between
//!   requests, to the last one it served;
//! - service calls (KV, documents, events...) count for the oldest request
//!   it serves when the call ends (an async call may outlive the request
//!   it began under), or the last one; calls it makes carry no
//!   `traceparent`;
//! - configuration: an instance serves only requests that see the
//!   configuration of its start (a change retires it), so a rotated secret
//!   is redacted from its output as from a fresh instance's.
//!
//! The last request an instance served keeps its record open (its work
//! after the response counts for it) until the guest has no task left, the
//! instance takes another request, or it ends. An instance stops taking requests once it has taken
//! `instance_requests`, once a request ended other than by completing its
//! response, when the configuration changes, or after [`IDLE`] without
//! requests; then, once it serves none, it lets its tasks finish what they
//! do after their responses (within `timeout_ms`, unless a request was
//! abandoned) and ends.

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
    /// The configuration it was started with (and its requests see).
    config: Arc<ConfigSnapshot>,
    /// Wakes the worker to check whether it must end.
    check: Notify,
    /// Tells the event loop to take no more requests and wind down.
    drain: Notify,
    /// Tells the event loop it serves nothing now (see `Inner::last`).
    settle: Notify,
    /// Set once the instance is gone and every request it served has its end.
    dead: watch::Sender<bool>,
    peak: Arc<AtomicU64>,
}

struct Inner {
    /// Requests taken, toward `instance_requests`.
    given: u32,
    /// Takes no more requests.
    retired: bool,
    /// A request ended other than by completing its response: its task
    /// may still run, so the instance does not wait for its tasks to end.
    abandoned: bool,
    /// The requests it serves, oldest first.
    live: Vec<(u64, Arc<Tracker>)>,
    /// The last request it served, while it serves none and its tasks
    /// still run (work after the response counts for it; its record is
    /// written once they end).
    last: Option<Arc<Tracker>>,
    /// When it last served nothing.
    idle_since: Instant,
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
        let shared = &self.shared;
        let mut inner = shared.inner.lock();
        let Some(i) = inner.live.iter().position(|(k, _)| *k == self.key) else {
            return; // the instance ended and set its end
        };
        let (_, tracker) = inner.live.remove(i);
        tracker
            .peak_memory
            .fetch_max(shared.peak.load(Ordering::Relaxed), Ordering::Relaxed);
        let mut done = None;
        if self.completed {
            if inner.live.is_empty() {
                done = inner.last.replace(tracker);
                shared.settle.notify_one();
            }
        } else {
            // Ended early (a timeout, a client gone): its task runs on.
            tracker.finish(
                Outcome::Error,
                Some("the client went away before the response started; its task ran on in its shared instance, which takes no more requests".into()),
            );
            inner.retired = true;
            inner.abandoned = true;
        }
        let end = inner.live.is_empty() && inner.retired;
        if inner.live.is_empty() {
            inner.idle_since = Instant::now();
        }
        drop(inner);
        drop(done);
        if end {
            shared.check.notify_one();
        }
    }
}

impl Route for Shared {
    fn write(&self, stream: Stream, data: &[u8]) {
        let inner = self.inner.lock();
        let write = |t: &Tracker| match stream {
            Stream::Stdout => t.stdout.write(data),
            Stream::Stderr => t.stderr.write(data),
        };
        inner.live.iter().for_each(|(_, t)| write(t));
        if inner.live.is_empty()
            && let Some(t) = &inner.last
        {
            write(t);
        }
    }
}

impl Shared {
    /// The operations log of the oldest request it serves, or of the last
    /// one it served.
    pub(crate) fn ops(&self) -> Option<Arc<OpLog>> {
        let inner = self.inner.lock();
        inner
            .live
            .first()
            .map(|(_, t)| t)
            .or(inner.last.as_ref())
            .map(|t| t.ops.clone())
    }

    /// Waits until the instance is gone and its requests' ends are set.
    pub(super) async fn gone(&self) {
        let mut rx = self.dead.subscribe();
        let _ = rx.wait_for(|dead| *dead).await;
    }

    /// Whether the worker must wind down: retired with nothing to serve.
    fn must_end(&self) -> bool {
        let inner = self.inner.lock();
        inner.retired && inner.live.is_empty()
    }

    /// Returns once the worker must wind down.
    async fn ending(&self) {
        while !self.must_end() {
            self.check.notified().await;
        }
    }

    /// Takes no more requests; ends once it serves none.
    fn retire(&self) {
        let mut inner = self.inner.lock();
        inner.retired = true;
        if inner.live.is_empty() {
            drop(inner);
            self.check.notify_one();
        }
    }

    /// Retires the instance if it served nothing for [`IDLE`].
    fn idle_out(&self) -> bool {
        let mut inner = self.inner.lock();
        if inner.live.is_empty() && inner.idle_since.elapsed() >= IDLE {
            inner.retired = true;
        }
        inner.retired && inner.live.is_empty()
    }

    /// Sets the end of every request it still serves (`culprit`, if known,
    /// with `outcome`, the others as stopped because of it; all of them
    /// with `outcome` when which one is not known), or, serving none, of
    /// the last one it served (the failure came after its response).
    fn fail_all(&self, culprit: Option<u64>, outcome: Outcome, error: &str) {
        let mut inner = self.inner.lock();
        inner.retired = true;
        let peak = self.peak.load(Ordering::Relaxed);
        let culprit_id = culprit
            .and_then(|c| inner.live.iter().find(|(k, _)| *k == c))
            .map(|(_, t)| t.id.clone());
        for (key, t) in &inner.live {
            t.peak_memory.fetch_max(peak, Ordering::Relaxed);
            match &culprit_id {
                _ if Some(*key) == culprit => t.finish(outcome, Some(error.to_string())),
                Some(id) => t.finish(
                    Outcome::Error,
                    Some(format!(
                        "was stopped with the instance serving it, because invocation {id} in the same instance {error}"
                    )),
                ),
                None => t.finish(
                    outcome,
                    Some(format!(
                        "was stopped with the instance serving it, which {error}"
                    )),
                ),
            }
        }
        inner.live.clear();
        if let Some(t) = &inner.last
            && outcome != Outcome::Ok
        {
            t.peak_memory.fetch_max(peak, Ordering::Relaxed);
            t.set_end(
                outcome,
                Some(format!("{error}, after its response was complete")),
            );
        }
    }
}

impl Instances {
    /// A slot for `tracker` in an instance with room that runs with
    /// `config`, or in a new one (whose worker is started with `start`).
    pub(super) fn acquire(
        &self,
        limits: &Limits,
        config: &Arc<ConfigSnapshot>,
        tracker: &Arc<Tracker>,
        permit: crate::Permit,
        start: impl FnOnce(Arc<Shared>, mpsc::UnboundedReceiver<Job>),
    ) -> Slot {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let mut live = self.live.lock();
        let mut done = Vec::new();
        live.retain(|s| {
            let mut inner = s.inner.lock();
            // (Snapshots are replaced whole, sometimes with equal content.)
            if !inner.retired && !Arc::ptr_eq(&s.config, config) && *s.config != **config {
                // The configuration changed: new requests see the new one.
                inner.retired = true;
                if inner.live.is_empty() {
                    s.check.notify_one();
                }
            }
            !inner.retired
        });
        let room = live.iter().find(|shared| {
            let mut inner = shared.inner.lock();
            // Retired since `retain` (a timeout, idle, a trap): no more.
            if inner.retired || inner.live.len() >= limits.instance_concurrency as usize {
                return false;
            }
            inner.given += 1;
            if inner.given >= limits.instance_requests {
                inner.retired = true;
            }
            inner.live.push((key, tracker.clone()));
            // The request before it is done for good: its record goes.
            done.extend(inner.last.take());
            true
        });
        if let Some(shared) = room.cloned() {
            drop(live);
            drop(done);
            return Slot {
                shared,
                key,
                completed: false,
                _permit: permit,
            };
        }
        let (jobs, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            jobs,
            inner: Mutex::new(Inner {
                given: 1,
                retired: limits.instance_requests <= 1,
                abandoned: false,
                live: vec![(key, tracker.clone())],
                last: None,
                idle_since: Instant::now(),
            }),
            config: config.clone(),
            check: Notify::new(),
            drain: Notify::new(),
            settle: Notify::new(),
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

/// How a worker failed.
enum Failed {
    /// Instantiation.
    Start(wasmtime::Error),
    /// The call serving one request.
    Call(u64, wasmtime::Error),
    /// The event loop, in no known request's call.
    Loop(wasmtime::Error),
}

/// The worker of one shared instance: instantiates it in `store`, serves
/// the jobs it is sent until it must wind down, lets its tasks finish
/// (within `timeout_ms`), then sets the end of the requests it still
/// serves (a trap) and drops the store.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut store: Store<Host>,
    pre: wasmtime_wasi_http::p3::bindings::ServicePre<Host>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    timeout: Duration,
) {
    /// Whatever way the worker ends (a panic included), the requests it
    /// served get their end and their answer.
    struct Ended(Arc<Shared>);
    impl Drop for Ended {
        fn drop(&mut self) {
            if !*self.0.dead.borrow() {
                self.0.fail_all(
                    None,
                    Outcome::Error,
                    "ended unexpectedly (a panic in Nimbus: see the server log)",
                );
                self.0.inner.lock().last.take();
                self.0.dead.send_replace(true);
            }
        }
    }
    let _ended = Ended(shared.clone());
    let result: Result<(), Failed> = async {
        // A start function that never returns is stopped once the requests
        // waiting for it have given up (their first-byte timeouts).
        let service = tokio::select! {
            service = pre.instantiate_async(&mut store) => service.map_err(Failed::Start)?,
            () = shared.ending() => return Ok(()),
        };
        let sh = &*shared;
        let serve = store.run_concurrent(async move |acc| -> Result<(), (u64, wasmtime::Error)> {
            let mut running = futures::stream::FuturesUnordered::new();
            let handle = *service.wasi_http_handler().func_handle().func();
            loop {
                // A job is taken once the instance can start a call (no
                // backpressure, no sync call in progress): a call queued
                // in the instance instead is not started again.
                let next = async {
                    std::future::poll_fn(|cx| acc.poll_ready_for_concurrent_call(handle, cx)).await;
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
                    () = sh.drain.notified() => break,
                    () = sh.settle.notified() => {}
                    // Serving nothing, its tasks ended: so is the last
                    // request's work, whose record can go.
                    () = quiet(acc, sh) => {
                        let last = {
                            let mut inner = sh.inner.lock();
                            if inner.live.is_empty() { inner.last.take() } else { None }
                        };
                        drop(last);
                    }
                }
            }
            // What the guest's tasks do after their responses.
            std::future::poll_fn(|cx| acc.poll_no_interesting_tasks(cx)).await;
            Ok(())
        });
        let mut serve = std::pin::pin!(serve);
        let ended = |r: wasmtime::Result<Result<(), (u64, wasmtime::Error)>>| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err((key, e))) => Err(Failed::Call(key, e)),
            Err(e) => Err(Failed::Loop(e)),
        };
        loop {
            if shared.must_end() {
                break;
            }
            tokio::select! {
                r = &mut serve => return ended(r),
                () = shared.check.notified() => {}
                () = tokio::time::sleep(IDLE / 4) => {
                    if shared.idle_out() {
                        break;
                    }
                }
            }
        }
        if shared.inner.lock().abandoned {
            return Ok(());
        }
        shared.drain.notify_one();
        match tokio::time::timeout(timeout, &mut serve).await {
            Ok(r) => ended(r),
            // Work after the responses cut at timeout_ms.
            Err(_) => Ok(()),
        }
    }
    .await;
    match result {
        Ok(()) => {
            if !shared.inner.lock().live.is_empty() {
                shared.fail_all(
                    None,
                    Outcome::Error,
                    "ended while serving it (this is a bug in Nimbus)",
                );
            }
        }
        Err(Failed::Start(e)) => shared.fail_all(
            None,
            Outcome::Error,
            &format!("could not be started: {}", describe_error(&e)),
        ),
        Err(Failed::Call(key, e)) => {
            let (outcome, error) = trap(&store, &e, 1);
            shared.fail_all(Some(key), outcome, &error);
        }
        Err(Failed::Loop(e)) => {
            let serving = shared.inner.lock().live.len();
            let (outcome, error) = trap(&store, &e, serving);
            shared.fail_all(None, outcome, &error);
        }
    }
    let last = shared.inner.lock().last.take();
    drop(store);
    drop(last);
    shared.dead.send_replace(true);
}

/// Resolves once the instance keeps a last request's record open and its
/// guest has no task left.
async fn quiet(acc: &wasmtime::component::Accessor<Host>, shared: &Shared) {
    if shared.inner.lock().last.is_none() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| acc.poll_no_interesting_tasks(cx)).await
}

/// The outcome and message of a trap that stopped an instance serving
/// `serving` requests.
fn trap(store: &Store<Host>, e: &wasmtime::Error, serving: usize) -> (Outcome, String) {
    let error = describe_error(e);
    if store.data().limiter.hit {
        (Outcome::MemoryLimit, format!("was stopped: {error}"))
    } else if serving > 1 {
        (
            Outcome::Trap,
            format!(
                "trapped ({error}) in one of the {serving} requests it was serving at once (which one, the logs may tell: a Rust panic's message is there)"
            ),
        )
    } else {
        (
            Outcome::Trap,
            format!("trapped ({error}); a Rust panic ends this way, its message is in the logs"),
        )
    }
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
    pub(super) config: Arc<ConfigSnapshot>,
    pub(super) permit: crate::Permit,
    pub(super) id: &'a str,
    pub(super) method: http::Method,
    pub(super) deadline: Instant,
}

impl Runtime {
    /// Winds down every shared instance (on shutdown): they take no more
    /// requests and end once they serve none, their last records written;
    /// waits for them until `deadline`.
    pub async fn wind_down_shared(&self, deadline: tokio::time::Instant) {
        let all: Vec<Arc<Shared>> = self
            .shared
            .lock()
            .drain(..)
            .filter_map(|s| s.upgrade())
            .collect();
        for s in &all {
            s.retire();
        }
        for s in &all {
            let _ = tokio::time::timeout_at(deadline, s.gone()).await;
        }
    }

    /// Serves a request on a shared instance of its function (instance
    /// reuse): a slot in an instance with room, or a new instance; the
    /// response head within `first_byte_timeout_ms`; the body, complete
    /// within `timeout_ms`. A request past either ends, and its instance
    /// takes no more requests.
    pub(super) async fn invoke_shared(
        self: &Arc<Self>,
        c: SharedCall<'_>,
    ) -> Response<ResponseBody> {
        let SharedCall {
            f,
            pre,
            req,
            tracker,
            config,
            permit,
            id,
            method,
            deadline,
        } = c;
        let timeout = Duration::from_millis(f.limits.timeout_ms);
        let slot = f
            .instances
            .acquire(&f.limits, &config, &tracker, permit, |shared, rx| {
                {
                    let mut all = self.shared.lock();
                    all.retain(|s| s.strong_count() > 0);
                    all.push(Arc::downgrade(&shared));
                }
                let route: Arc<dyn Route> = shared.clone();
                let store = self.new_store(
                    f,
                    StoreParts {
                        stdout: Capture::routed(route.clone(), Stream::Stdout),
                        stderr: Capture::routed(route, Stream::Stderr),
                        config: &config,
                        // A request's span is its own: calls the instance
                        // makes belong to none of them.
                        traceparent: None,
                        peak: shared.peak.clone(),
                        ops: Arc::default(),
                        shared: Some(shared.clone()),
                    },
                );
                tokio::spawn(self.fair.gate(
                    f.app_name.clone(),
                    run(shared, store, pre.clone(), rx, timeout),
                ));
            });
        let rx = send(&slot, req);
        let first_byte = Duration::from_millis(f.limits.first_byte_timeout_ms);
        let head = match tokio::time::timeout(first_byte, rx).await {
            Err(_) => {
                // Its task runs on in the instance, which takes no more
                // requests (the slot dropped here says so).
                let msg = format!(
                    "did not start its response within its first_byte_timeout_ms of {} ms (its shared instance takes no more requests)",
                    f.limits.first_byte_timeout_ms
                );
                tracker.finish(Outcome::Timeout, Some(msg.clone()));
                tracker.status.store(504, Ordering::Relaxed);
                return text_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("function {f} {msg} (invocation {id})"),
                );
            }
            Ok(Err(_)) => {
                // The instance ended before the head: its worker sets why
                // (or it ended before taking this request).
                slot.shared.gone().await;
                tracker.finish(
                    Outcome::Error,
                    Some("its shared instance ended before serving it".into()),
                );
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
                // Ends the request at its deadline (its body cut, the slot
                // dropped: the instance takes no more requests), or with
                // the instance.
                let shared = slot.shared.clone();
                let (t, timeout_ms) = (tracker.clone(), f.limits.timeout_ms);
                let ends: GuestFuture = Box::pin(async move {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline.into()) => {
                            t.finish(
                                Outcome::Timeout,
                                Some(format!(
                                    "timed out: still running after its timeout_ms of {timeout_ms} ms, so its response was cut (its shared instance takes no more requests)"
                                )),
                            );
                        }
                        () = shared.gone() => {}
                    }
                    let (outcome, error) = t.end_now();
                    TaskEnd {
                        outcome,
                        error: Some(error),
                    }
                });
                bodies::guest_response(&method, resp, &tracker, Some(ends), Some(slot))
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
