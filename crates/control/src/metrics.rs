//! Prometheus metrics, through the `metrics` facade and its Prometheus
//! exporter. Invocation metrics are counted from each invocation record as
//! it is submitted (one place, off the guest's path); gauges — in-flight
//! invocations, queue depths and ages, dead letters — are read when scraped.

use crate::api::Ctx;
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
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("nimbus_invocation_duration_seconds".into()),
            &DURATION_BUCKETS,
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("installing the metrics recorder failed: {e}"))
}

/// Counts one finished invocation.
pub fn observe(r: &InvocationRecord) {
    let app = r.app.clone();
    let function = r.function.clone();
    metrics::counter!(
        "nimbus_invocations_total",
        "app" => app.clone(),
        "function" => function.clone(),
        "trigger" => r.trigger.clone(),
        "outcome" => r.outcome.as_str()
    )
    .increment(1);
    if r.outcome != Outcome::Ok || r.status >= 500 {
        metrics::counter!("nimbus_invocation_errors_total", "app" => app.clone(), "function" => function.clone())
            .increment(1);
    }
    if r.cold {
        metrics::counter!("nimbus_cold_starts_total", "app" => app.clone(), "function" => function.clone())
            .increment(1);
    }
    if !r.ops.is_empty() {
        for service in nimbus_core::Service::ALL {
            let n = r.ops.get(service);
            if n > 0 {
                metrics::counter!(
                    "nimbus_store_operations_total",
                    "app" => app.clone(),
                    "service" => service.as_str(),
                    "source" => "function"
                )
                .increment(n);
            }
        }
    }
    metrics::histogram!("nimbus_invocation_duration_seconds", "app" => app, "function" => function)
        .record(r.duration_us as f64 / 1e6);
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
        return crate::api::ApiError(
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
