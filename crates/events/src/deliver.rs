//! Consumers: one task per channel with a consumer. It leases batches of
//! ready messages and delivers each to its function as an HTTP request in
//! CloudEvents binary mode (the headers were fixed when the message was
//! stored). A 2xx response acknowledges; anything else, a trap or a timeout
//! is a failure, retried with exponential backoff and jitter until the
//! policy's last attempt, then dead-lettered.
//!
//! Bounds: at most `max_concurrency` messages of a channel are leased and
//! unfinished at once, so a leased message starts at once (and each still
//! takes the function's, the app's and the platform's admission permits,
//! waiting for them: `InvokeRequest::patient`); a lease takes at most
//! `batch_size` of them. Everything else waits in the database.
//!
//! A retry waits the policy's backoff with equal jitter (between half and
//! all of it). A lease lasts the function's timeout plus 30 s, or the
//! queue's `visibility_timeout`; one that runs out (its node died) is
//! delivered again by any node. An idle consumer sleeps until notified
//! (every source of work on the node notifies: sends, settlements,
//! redrives, expired leases, ticks) or until its next retry is due, so an
//! idle function costs nothing; on PostgreSQL it also looks at least every
//! second, as sends through other nodes do not wake it.

use crate::writer::Writer;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use nimbus_core::events::{Consumer, RetryPolicy};
use nimbus_runtime::{Caller, EventMeta, Function, InvokeRequest, Runtime};
use nimbus_store::{EventOp, EventResult, Leased, Settlement, Store, now_us};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

use tokio_util::sync::CancellationToken;

/// A running consumer.
pub(crate) struct ConsumerHandle {
    pub(crate) consumer: Consumer,
    pub(crate) function: Arc<Function>,
    pub(crate) notify: Arc<Notify>,
    stop: CancellationToken,
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Extra lease time beyond the function's timeout, for the settlement to land.
const LEASE_SLACK_MS: u64 = 30_000;
/// After a failed lease, wait this long before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Longest sleep until a known due time (then the consumer looks again).
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// In a cluster (PostgreSQL), the longest an idle consumer sleeps: sends
/// on other nodes do not notify this one, so it looks at least this often
/// (a message sent to a node that died before delivering it is picked up
/// by the others within this bound).
const CLUSTER_MAX_SLEEP: Duration = Duration::from_secs(1);
/// Most of a failed response's body quoted in the error.
const ERROR_BODY_LIMIT: usize = 512;

struct Ctx {
    app: String,
    channel: String,
    trigger: &'static str,
    consumer: Consumer,
    function: Arc<Function>,
    runtime: Arc<Runtime>,
    writer: Writer,
    notify: Arc<Notify>,
}

/// Starts a consumer. `notify` belongs to the channel, not to this
/// consumer: it outlives redeploys, so deliveries still running for a
/// replaced consumer wake its successor.
pub(crate) fn start(
    app: &str,
    consumer: Consumer,
    function: Arc<Function>,
    runtime: Arc<Runtime>,
    store: Store,
    writer: Writer,
    notify: Arc<Notify>,
) -> ConsumerHandle {
    let stop = CancellationToken::new();
    let ctx = Arc::new(Ctx {
        app: app.to_string(),
        channel: consumer.channel.to_string(),
        trigger: consumer.channel.trigger(),
        consumer: consumer.clone(),
        function: function.clone(),
        runtime,
        writer,
        notify: notify.clone(),
    });
    tokio::spawn(run(ctx, store, stop.clone()));
    ConsumerHandle {
        consumer,
        function,
        notify,
        stop,
    }
}

async fn run(ctx: Arc<Ctx>, store: Store, stop: CancellationToken) {
    let batch = ctx.consumer.batch_size.max(1);
    // Leased but unfinished deliveries: never more than can run at once, so
    // a leased message starts at once (its lease is not spent waiting here).
    let outstanding = Arc::new(Semaphore::new(ctx.consumer.max_concurrency.max(1) as usize));
    let max_sleep = match store.backend() {
        nimbus_store::Backend::Sqlite => MAX_SLEEP,
        nimbus_store::Backend::Postgres => CLUSTER_MAX_SLEEP,
    };
    let lease_ms = ctx
        .consumer
        .visibility_timeout_ms
        .unwrap_or(ctx.function.limits.timeout_ms + LEASE_SLACK_MS);
    loop {
        let mut permits = tokio::select! {
            p = outstanding.clone().acquire_owned() => p.expect("never closed"),
            _ = stop.cancelled() => return,
        };
        // Up to a batch: whatever else is free now.
        while permits.num_permits() < batch as usize {
            match outstanding.clone().try_acquire_owned() {
                Ok(p) => permits.merge(p),
                Err(_) => break,
            }
        }
        let max = permits.num_permits() as u32;
        // Whatever was ready before this instant and is not leased now is
        // held back by its FIFO group (see the wake-up below).
        let lease_started = now_us();
        let leased = ctx
            .writer
            .call(EventOp::Lease {
                app: ctx.app.clone(),
                channel: ctx.channel.clone(),
                function: ctx.function.name.clone(),
                max,
                lease_ms,
            })
            .await;
        let leased = match leased {
            Ok(EventResult::Leased(l)) => l,
            Ok(other) => unreachable!("lease answered {other:?}"),
            Err(e) => {
                tracing::error!(app = %ctx.app, channel = %ctx.channel, error = %e, "leasing messages failed");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(ERROR_BACKOFF) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        let got = leased.len();
        let mut permits = permits;
        for msg in leased {
            let permit = permits.split(1).expect("one permit per leased message");
            let ctx = ctx.clone();
            tokio::spawn(async move {
                deliver(&ctx, msg).await;
                drop(permit);
            });
        }
        drop(permits);
        if got == max as usize {
            continue;
        }
        // Drained for now. An idle consumer costs nothing: it sleeps until
        // notified (a send, a settlement, a redrive, an expired lease, a
        // schedule tick: every source of work on this node notifies), or
        // until its next retry is due. Messages that are ready but not
        // leased belong to a FIFO group whose head is unfinished; its
        // settlement notifies.
        let wake = match store
            .next_available(&ctx.app, &ctx.channel, lease_started)
            .await
        {
            Ok(Some(at)) => Duration::from_micros((at - now_us()).max(0) as u64).min(max_sleep),
            Ok(None) => max_sleep,
            Err(e) => {
                tracing::error!(app = %ctx.app, channel = %ctx.channel, error = %e, "reading the next due message failed");
                ERROR_BACKOFF
            }
        };
        tokio::select! {
            _ = ctx.notify.notified() => {}
            _ = tokio::time::sleep(wake) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The delay before attempt `next`: the policy's backoff with "equal
/// jitter" (between half and all of it), so retries of a burst spread out.
fn jittered(policy: &RetryPolicy, next: u32) -> Duration {
    let d = policy.backoff(next).as_micros() as u64;
    let half = d / 2;
    Duration::from_micros(half + rand::rng().random_range(0..=d - half))
}

fn request(msg: &Leased) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::from(msg.body.clone())));
    *req.method_mut() =
        http::Method::from_bytes(msg.method.as_bytes()).unwrap_or(http::Method::POST);
    *req.uri_mut() = msg
        .path
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    let headers = req.headers_mut();
    for (k, v) in &msg.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            headers.append(k, v);
        }
    }
    req
}

async fn deliver(ctx: &Ctx, msg: Leased) {
    let policy = ctx.consumer.retry;
    let settlement = if msg.attempt > policy.max_attempts {
        // Its lease ran out (or its node died) during the last attempt.
        Settlement::Dead {
            error: format!(
                "attempt {} of {} did not finish (its lease ran out)",
                msg.attempt - 1,
                policy.max_attempts
            ),
        }
    } else {
        match attempt(ctx, &msg).await {
            Ok(()) => Settlement::Succeeded,
            Err(mut error) => {
                // The function's answer may quote a secret: keep it out of
                // the store and the server log.
                ctx.function.config().redact(&mut error);
                let error = format!(
                    "attempt {} of {}: {error}",
                    msg.attempt, policy.max_attempts
                );
                if msg.attempt >= policy.max_attempts {
                    Settlement::Dead { error }
                } else {
                    Settlement::Retry {
                        at_us: now_us() + jittered(&policy, msg.attempt + 1).as_micros() as i64,
                        error,
                    }
                }
            }
        }
    };
    if let Settlement::Dead { error } = &settlement {
        tracing::warn!(app = %ctx.app, channel = %ctx.channel, event = %msg.id, %error, "event dead-lettered");
    }
    // A settlement may unblock the next message of a FIFO group, and a
    // retry must be looked at when it becomes due: wake the consumer.
    let wake = msg.group_key.is_some() || !matches!(settlement, Settlement::Succeeded);
    ctx.writer
        .submit(EventOp::Settle(vec![(msg.seq, msg.attempt, settlement)]))
        .await;
    if wake {
        ctx.notify.notify_one();
    }
}

/// The verified caller an async invocation was accepted for, kept as
/// `:auth-*` pseudo-headers.
fn stored_caller(headers: &[(String, String)]) -> Option<Caller> {
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let kind = match get(":auth-kind")?.as_str() {
        "jwt" => "jwt",
        "api_key" => "api_key",
        _ => return None,
    };
    Some(Caller {
        kind,
        subject: get(":auth-subject")?,
        claims: get(":auth-claims"),
    })
}

/// One delivery; `Err` says why it failed.
async fn attempt(ctx: &Ctx, msg: &Leased) -> Result<(), String> {
    let meta = InvokeRequest {
        trigger: ctx.trigger,
        // An async invocation through a route keeps the route and its
        // parameters as pseudo-headers (`:route`, `:param:NAME`), which are
        // never sent as headers.
        route: msg
            .headers
            .iter()
            .find(|(k, _)| k == ":route")
            .map(|(_, v)| v.clone()),
        params: msg
            .headers
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(":param:")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect(),
        event: Some(EventMeta {
            id: msg.id.clone(),
            attempt: msg.attempt,
        }),
        patient: true,
        caller: stored_caller(&msg.headers),
        // The event continues the trace of whatever sent it.
        trace: msg
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
            .and_then(|(_, v)| nimbus_core::trace::TraceContext::parse(v)),
        secret: None,
        trusted: Vec::new(),
    };
    let resp = ctx.runtime.invoke(&ctx.function, request(msg), meta).await;
    let status = resp.status();
    let body = resp.into_body().collect().await;
    match body {
        Err(e) => Err(format!(
            "the function failed while sending its response ({e})"
        )),
        Ok(_) if status.is_success() => Ok(()),
        Ok(body) => {
            let bytes = body.to_bytes();
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_BODY_LIMIT)]);
            Err(format!("the function answered {status}: {}", text.trim()))
        }
    }
}

/// Whether two consumers deliver the same way (a redeploy that changes
/// neither keeps its consumer task).
pub(crate) fn same(h: &ConsumerHandle, c: &Consumer, f: &Arc<Function>) -> bool {
    h.consumer == *c && Arc::ptr_eq(&h.function, f)
}
