//! Prometheus metrics, through the `metrics` facade and its Prometheus
//! exporter. Invocation metrics are counted from each invocation record as
//! it is submitted (one place, off the guest's path); gauges — in-flight
//! invocations, queue depths and ages, dead letters — are read when scraped.

use crate::ctx::Ctx;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use nimbus_core::{InvocationRecord, Outcome};

/// Histogram buckets of invocation durations, in seconds.
const DURATION_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

/// Installs the process-wide recorder; its handle renders the text format.
pub fn install() -> Result<PrometheusHandle, String> {
    // The recorder is global: nodes in one process (tests) share it, and
    // the first to start installs it.
    static INSTALLED: std::sync::Mutex<Option<PrometheusHandle>> = std::sync::Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = installed.as_ref() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("nimbus_invocation_duration_seconds".into()),
            &DURATION_BUCKETS,
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("installing the metrics recorder failed: {e}"))?;
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The metric handles of one (app, function, trigger, outcome): registered
/// once, so counting an invocation allocates nothing and hashes no labels.
struct Handles {
    app: String,
    function: String,
    trigger: String,
    outcome: Outcome,
    invocations: metrics::Counter,
    errors: metrics::Counter,
    cold_starts: metrics::Counter,
    duration: metrics::Histogram,
}

impl Handles {
    fn new(r: &InvocationRecord) -> Handles {
        let (app, function) = (r.app.clone(), r.function.clone());
        Handles {
            invocations: metrics::counter!(
                "nimbus_invocations_total",
                "app" => app.clone(),
                "function" => function.clone(),
                "trigger" => r.trigger.clone(),
                "outcome" => r.outcome.as_str()
            ),
            errors: metrics::counter!("nimbus_invocation_errors_total", "app" => app.clone(), "function" => function.clone()),
            cold_starts: metrics::counter!("nimbus_cold_starts_total", "app" => app.clone(), "function" => function.clone()),
            duration: metrics::histogram!("nimbus_invocation_duration_seconds", "app" => app.clone(), "function" => function.clone()),
            app,
            function,
            trigger: r.trigger.clone(),
            outcome: r.outcome,
        }
    }

    fn matches(&self, r: &InvocationRecord) -> bool {
        self.outcome == r.outcome
            && self.app == r.app
            && self.function == r.function
            && self.trigger == r.trigger
    }
}

type HandleCache = parking_lot::RwLock<std::collections::HashMap<u64, Vec<Handles>>>;

static HANDLES: std::sync::LazyLock<(std::collections::hash_map::RandomState, HandleCache)> =
    std::sync::LazyLock::new(Default::default);

/// Runs `f` with the handles of `r`'s labels, registering them on first use.
fn with_handles(r: &InvocationRecord, f: impl FnOnce(&Handles)) {
    use std::hash::BuildHasher;
    let (hasher, cache) = &*HANDLES;
    let key = hasher.hash_one((&r.app, &r.function, &r.trigger, r.outcome.as_str()));
    if let Some(h) = cache
        .read()
        .get(&key)
        .and_then(|list| list.iter().find(|h| h.matches(r)))
    {
        return f(h);
    }
    let mut cache = cache.write();
    // Deleted apps' handles go with the cache now and then.
    if cache.len() > 100_000 {
        cache.clear();
    }
    let list = cache.entry(key).or_default();
    if let Some(h) = list.iter().find(|h| h.matches(r)) {
        return f(h);
    }
    list.push(Handles::new(r));
    f(list.last().expect("just pushed"))
}

/// Counts one finished invocation.
pub fn observe(r: &InvocationRecord) {
    with_handles(r, |h| {
        h.invocations.increment(1);
        if r.failed() {
            h.errors.increment(1);
        }
        if r.cold {
            h.cold_starts.increment(1);
        }
        h.duration.record(r.duration_us as f64 / 1e6);
    });
    if !r.ops.is_empty() {
        for service in nimbus_core::Service::ALL {
            let n = r.ops.get(service);
            if n > 0 {
                metrics::counter!(
                    "nimbus_store_operations_total",
                    "app" => r.app.clone(),
                    "service" => service.as_str(),
                    "source" => "function"
                )
                .increment(n);
            }
        }
    }
}

/// Drains histogram samples into their buckets every few seconds, so their
/// memory stays bounded between scrapes (the exporter only does it when
/// rendering).
pub fn spawn_upkeep(handle: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

/// A router serving only `GET /metrics`, without authentication, for a
/// separate listener that only the monitoring network reaches
/// (`nimbus up --metrics-listen`).
pub fn router(platform: std::sync::Arc<crate::Platform>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(Ctx::new(platform))
}

/// `GET /v1/metrics` (and `/metrics` on the metrics listener): the
/// Prometheus text format.
pub(crate) async fn scrape(State(ctx): State<Ctx>) -> Response {
    let Some(handle) = ctx.platform.metrics.clone() else {
        return crate::ctx::ApiError(
            axum::http::StatusCode::NOT_FOUND,
            "metrics are off on this server".into(),
        )
        .into_response();
    };
    let p = &ctx.platform;
    let admission = p.runtime.admission();
    metrics::gauge!("nimbus_in_flight").set(admission.in_flight() as f64);
    metrics::gauge!("nimbus_admission_waiting").set(admission.waiting() as f64);
    metrics::gauge!("nimbus_records_dropped").set(p.records.dropped() as f64);
    let table = p.gateway.table();
    let now = nimbus_store::now_us();
    for app in table.apps() {
        for (name, f) in &app.functions {
            metrics::gauge!("nimbus_function_in_flight", "app" => app.spec.name.clone(), "function" => name.clone())
                .set(f.in_flight() as f64);
        }
        let depths = match p.store.channel_depths(&app.spec.name).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(app = %app.spec.name, error = %e, "reading queue depths for metrics failed");
                continue;
            }
        };
        for d in depths {
            for (state, n) in [
                ("queued", d.queued),
                ("running", d.running),
                ("failed", d.failed),
                ("dead", d.dead),
            ] {
                metrics::gauge!("nimbus_queue_messages", "app" => app.spec.name.clone(), "channel" => d.channel.clone(), "state" => state)
                    .set(n as f64);
            }
            let age = d
                .oldest_waiting_us
                .map_or(0.0, |t| (now - t).max(0) as f64 / 1e6);
            metrics::gauge!("nimbus_queue_oldest_age_seconds", "app" => app.spec.name.clone(), "channel" => d.channel.clone())
                .set(age);
        }
    }
    handle.run_upkeep();
    let mut r = handle.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
