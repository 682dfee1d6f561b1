//! OTLP export of traces: every invocation, and each call its guest made to
//! a Nimbus service, becomes a span sent to an OpenTelemetry collector over
//! OTLP/HTTP (protobuf, `POST {endpoint}/v1/traces`). Spans are built from
//! the invocation record as it is submitted, queued (bounded; dropped and
//! counted when the collector falls behind, never blocking a request), and
//! sent in batches by one task. The messages are `opentelemetry-proto`'s;
//! only the mapping from records is ours.

use nimbus_core::{InvocationRecord, Service};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Spans sent per request to the collector, at most.
const BATCH: usize = 512;
/// Spans waiting to be sent before new ones are dropped.
const QUEUE: usize = 65_536;

/// Sends spans to an OTLP/HTTP collector. Cheap to clone.
#[derive(Clone)]
pub struct OtlpExporter {
    tx: mpsc::Sender<Span>,
    dropped: Arc<AtomicU64>,
}

impl OtlpExporter {
    /// Starts the sender task for the collector at `endpoint` (its base
    /// URL, e.g. `http://127.0.0.1:4318`; `/v1/traces` is added unless the
    /// URL already names it).
    pub fn spawn(endpoint: &str) -> Result<OtlpExporter, String> {
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| format!("the OTLP endpoint {endpoint:?} is not a URL ({e}): write e.g. http://127.0.0.1:4318"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the OTLP endpoint {endpoint:?} must be http:// or https:// (OTLP/HTTP)"
            ));
        }
        let url = if url.path().ends_with("/v1/traces") {
            url
        } else {
            let base = url.as_str().trim_end_matches('/').to_string();
            reqwest::Url::parse(&format!("{base}/v1/traces")).map_err(|e| e.to_string())?
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(send_loop(url, rx, dropped.clone()));
        Ok(OtlpExporter { tx, dropped })
    }

    /// Queues the spans of one invocation record.
    pub fn submit(&self, r: &InvocationRecord) {
        for s in spans(r) {
            if self.tx.try_send(s).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Spans dropped (queue full or collector failing).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn send_loop(url: reqwest::Url, mut rx: mpsc::Receiver<Span>, dropped: Arc<AtomicU64>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a default HTTP client builds");
    let mut batch = Vec::with_capacity(BATCH);
    let mut failures = 0u64;
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        // Let a batch fill for up to a second while spans keep coming.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let n = batch.len() as u64;
        let body = request(std::mem::take(&mut batch)).encode_to_vec();
        let sent = http
            .post(url.clone())
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let error = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the collector answered {}", r.status())),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = error {
            dropped.fetch_add(n, Ordering::Relaxed);
            failures += 1;
            if failures.is_power_of_two() {
                tracing::warn!(url = %url, error = %e, failures, "exporting spans over OTLP failed; they are dropped");
            }
        }
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attr("service.name", "nimbus")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "nimbus".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn attr(key: &str, value: impl Into<Attr>) -> KeyValue {
    let value = match value.into() {
        Attr::S(s) => any_value::Value::StringValue(s),
        Attr::I(i) => any_value::Value::IntValue(i),
        Attr::B(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

enum Attr {
    S(String),
    I(i64),
    B(bool),
}

impl From<&str> for Attr {
    fn from(s: &str) -> Attr {
        Attr::S(s.to_string())
    }
}
impl From<i64> for Attr {
    fn from(i: i64) -> Attr {
        Attr::I(i)
    }
}
impl From<bool> for Attr {
    fn from(b: bool) -> Attr {
        Attr::B(b)
    }
}

fn nanos(us: i64) -> u64 {
    (us.max(0) as u64).saturating_mul(1000)
}

/// The spans of one record: the invocation (a child of its cause), and
/// each kept operation (children of the invocation).
pub fn spans(r: &InvocationRecord) -> Vec<Span> {
    let (Ok(trace_id), Ok(span_id)) = (hex::decode(&r.trace_id), hex::decode(&r.span_id)) else {
        return Vec::new();
    };
    if trace_id.len() != 16 || span_id.len() != 8 {
        return Vec::new();
    }
    let parent = r
        .parent_span_id
        .as_deref()
        .and_then(|p| hex::decode(p).ok())
        .unwrap_or_default();
    let failed = r.failed();
    let kind = match r.trigger.as_str() {
        "http" | "invoke" => span::SpanKind::Server,
        _ => span::SpanKind::Consumer,
    };
    let mut attributes = vec![
        attr("nimbus.app", r.app.as_str()),
        attr("nimbus.function", r.function.as_str()),
        attr("nimbus.revision", r.revision),
        attr("nimbus.trigger", r.trigger.as_str()),
        attr("nimbus.invocation_id", r.id.as_str()),
        attr("nimbus.outcome", r.outcome.as_str()),
        attr("nimbus.cold_start", r.cold),
        attr("nimbus.memory_limit_mb", i64::from(r.memory_mb)),
        attr("nimbus.peak_memory_bytes", r.peak_memory_bytes as i64),
        attr("http.request.method", r.method.as_str()),
        attr("url.path", r.path.as_str()),
        attr("http.response.status_code", i64::from(r.status)),
    ];
    if let Some(e) = &r.event_id {
        attributes.push(attr("cloudevents.event_id", e.as_str()));
        attributes.push(attr("nimbus.attempt", i64::from(r.attempt)));
    }
    let mut out = Vec::with_capacity(1 + r.op_spans.len());
    out.push(Span {
        trace_id: trace_id.clone(),
        span_id: span_id.clone(),
        parent_span_id: parent,
        flags: 1,
        name: format!("{}/{}", r.app, r.function),
        kind: kind as i32,
        start_time_unix_nano: nanos(r.started_at_us),
        end_time_unix_nano: nanos(r.started_at_us + r.duration_us),
        attributes,
        status: Some(Status {
            message: if failed {
                r.error.clone().unwrap_or_default()
            } else {
                String::new()
            },
            code: if failed {
                status::StatusCode::Error
            } else {
                status::StatusCode::Ok
            } as i32,
        }),
        ..Default::default()
    });
    for op in &r.op_spans {
        let Ok(op_id) = hex::decode(&op.span_id) else {
            continue;
        };
        let kind = match op.service {
            Service::Events | Service::Realtime => span::SpanKind::Producer,
            _ => span::SpanKind::Client,
        };
        out.push(Span {
            trace_id: trace_id.clone(),
            span_id: op_id,
            parent_span_id: span_id.clone(),
            flags: 1,
            name: format!("{} {} {}", op.service.as_str(), op.op, op.target),
            kind: kind as i32,
            start_time_unix_nano: nanos(op.started_at_us),
            end_time_unix_nano: nanos(op.started_at_us + op.duration_us),
            attributes: vec![
                attr("nimbus.service", op.service.as_str()),
                attr("nimbus.operation", op.op.as_str()),
                attr("nimbus.target", op.target.as_str()),
            ],
            status: Some(Status {
                message: String::new(),
                code: if op.ok {
                    status::StatusCode::Ok
                } else {
                    status::StatusCode::Error
                } as i32,
            }),
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::{OpSpan, Outcome};

    #[test]
    fn a_record_maps_to_an_invocation_span_and_its_operations() {
        let r = InvocationRecord {
            id: "inv".into(),
            app: "a".into(),
            function: "f".into(),
            revision: 2,
            trigger: "queue".into(),
            method: "POST".into(),
            path: "/".into(),
            started_at_us: 1_000,
            duration_us: 500,
            status: 500,
            outcome: Outcome::Ok,
            error: None,
            bytes_in: 0,
            bytes_out: 0,
            event_id: Some("ev".into()),
            attempt: 2,
            memory_mb: 64,
            peak_memory_bytes: 0,
            cold: false,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: Some("0000000000000001".into()),
            input: None,
            ops: Default::default(),
            op_spans: vec![OpSpan {
                span_id: "00000000000000aa".into(),
                service: Service::Kv,
                op: "get".into(),
                target: "s".into(),
                started_at_us: 1_100,
                duration_us: 10,
                ok: false,
            }],
            stdout: String::new(),
            stderr: String::new(),
        };
        let s = spans(&r);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "a/f");
        assert_eq!(s[0].parent_span_id, vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(s[0].kind, span::SpanKind::Consumer as i32);
        assert_eq!(
            (s[0].start_time_unix_nano, s[0].end_time_unix_nano),
            (1_000_000, 1_500_000)
        );
        assert_eq!(
            s[0].status.as_ref().unwrap().code,
            status::StatusCode::Error as i32,
            "a 500 is an error"
        );
        assert_eq!(s[1].parent_span_id, s[0].span_id);
        assert_eq!(s[1].trace_id, s[0].trace_id);
        assert_eq!(s[1].name, "kv get s");
        // Round trip through the wire format.
        let bytes = request(s).encode_to_vec();
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.resource_spans[0].scope_spans[0].spans.len(), 2);
        // Without a trace (telemetry off), nothing.
        assert!(
            spans(&InvocationRecord {
                trace_id: String::new(),
                ..r
            })
            .is_empty()
        );
    }
}
