//! Operating Nimbus: metering and usage reports against a known workload.

mod common;

use common::{Server, app_dir};
use serde_json::Value;

const APP: &str = r#"
[app]
name = "metered"

[functions.hello]
component = "@WASM@/hello.wasm"
memory_mb = 16

[functions.echo]
component = "@WASM@/echo.wasm"
memory_mb = 32

[functions.chaos]
component = "@WASM@/chaos.wasm"
memory_mb = 64

[queues.backlog]

[[triggers.http]]
route = "/hello"
function = "hello"

[[triggers.http]]
route = "/echo"
function = "echo"

[[triggers.http]]
route = "/chaos/{*what}"
function = "chaos"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn usage_matches_a_known_workload() {
    let s = Server::start(&[]);
    let dir = app_dir(APP);
    s.deploy(dir.path());
    for _ in 0..20 {
        assert_eq!(s.get_text("/hello").await.0, 200);
    }
    for _ in 0..7 {
        let r = s
            .http
            .post(format!("{}/echo", s.url))
            .body(vec![b'x'; 100])
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 100);
    }
    for _ in 0..3 {
        assert_eq!(s.get_text("/chaos/panic").await.0, 500);
    }
    let rows = s
        .api_wait("/v1/apps/metered/invocations?limit=1000", 20, |v| {
            v.as_array().unwrap().len() == 30
        })
        .await;
    let rows = rows.as_array().unwrap();
    let usage = s.api("/v1/apps/metered/usage?since=1h").await;
    let by_fn = |name: &str| -> Value {
        usage["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == format!("metered/{name}"))
            .unwrap_or_else(|| panic!("no usage row for {name}: {usage}"))
            .clone()
    };
    for (name, n, mb, errors) in [
        ("hello", 20, 16, 0),
        ("echo", 7, 32, 0),
        ("chaos", 3, 64, 3),
    ] {
        let mine: Vec<&Value> = rows.iter().filter(|r| r["function"] == name).collect();
        let duration: i64 = mine
            .iter()
            .map(|r| r["duration_us"].as_i64().unwrap())
            .sum();
        let bytes_in: i64 = mine.iter().map(|r| r["bytes_in"].as_i64().unwrap()).sum();
        let bytes_out: i64 = mine.iter().map(|r| r["bytes_out"].as_i64().unwrap()).sum();
        let cold = mine.iter().filter(|r| r["cold"] == true).count() as i64;
        assert!(mine.iter().all(|r| r["memory_mb"] == mb));
        let u = by_fn(name);
        assert_eq!(u["invocations"], n, "{name}: {u}");
        assert_eq!(u["errors"], errors, "{name}: {u}");
        assert_eq!(u["duration_us"], duration, "{name}: the sum of its records");
        assert_eq!(u["bytes_in"], bytes_in);
        assert_eq!(u["bytes_out"], bytes_out);
        assert_eq!(u["cold_starts"], cold);
        let gb_s = mb as f64 / 1024.0 * duration as f64 / 1e6;
        assert!(
            (u["gb_seconds"].as_f64().unwrap() - gb_s).abs() < 1e-12,
            "{name}: {u}"
        );
        let cost = gb_s * 0.000_016_666_7 + n as f64 / 1e6 * 0.20;
        assert!(
            (u["cost"].as_f64().unwrap() - cost).abs() < 1e-12,
            "{name}: {u}"
        );
    }
    assert_eq!(by_fn("echo")["bytes_in"], 700);
    assert_eq!(by_fn("echo")["bytes_out"], 700);
    assert!(
        rows.iter()
            .filter(|r| r["function"] == "hello")
            .all(|r| r["peak_memory_bytes"].as_u64().unwrap() > 0),
        "peak memory is recorded"
    );
    assert_eq!(usage["total"]["invocations"], 30);

    // The other groupings and the CLI.
    let by_day = s.api("/v1/usage?since=1d&by=day").await;
    assert_eq!(by_day["rows"].as_array().unwrap().len(), 1);
    assert_eq!(by_day["rows"][0]["invocations"], 30);
    let out = s.cli_ok(&["usage", "--app", "metered", "--since", "1h"]);
    assert!(
        out.contains("metered/hello") && out.contains("GB-SECONDS"),
        "{out}"
    );
    let out = s.cli_ok(&["usage", "--by", "app"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("metered") && l.contains(" 30 ")),
        "{out}"
    );
    let bad = s.cli_err(&["usage", "--by", "week"]);
    assert!(bad.contains("function, hour, day or app"), "{bad}");
    let by_hour = s.api("/v1/apps/metered/usage?by=hour&since=1h").await;
    let hours = by_hour["rows"].as_array().unwrap();
    assert!(matches!(hours.len(), 1 | 2), "{by_hour}"); // the test may straddle an hour
    assert_eq!(
        hours
            .iter()
            .map(|r| r["invocations"].as_i64().unwrap())
            .sum::<i64>(),
        30
    );
    assert!(
        hours[0]["key"].as_str().unwrap().ends_with(":00Z"),
        "{by_hour}"
    );
}

/// Scrapes `/v1/metrics` and parses it with a Prometheus parser.
async fn scrape(s: &Server) -> prometheus_parse::Scrape {
    let r = s
        .http
        .get(format!("{}/v1/metrics", s.control))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the metrics parse")
}

/// The value of a sample with these labels (counters and gauges), or the
/// count of a histogram, summed over the samples that match: 0 when none
/// has these labels, but a metric missing from the scrape altogether (one
/// renamed or never registered) fails, so an expected 0 proves something.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    assert!(
        scrape.samples.iter().any(|s| s.metric == name),
        "the scrape has no metric {name}"
    );
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => panic!("{name} is a summary: no metric is"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_metrics_move() {
    let s = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let dir = app_dir(APP);
    s.deploy(dir.path());
    for _ in 0..5 {
        assert_eq!(s.get_text("/hello").await.0, 200);
    }
    assert_eq!(s.get_text("/chaos/panic").await.0, 500);
    for i in 0..3 {
        let r = s
            .api_post(
                "/v1/apps/metered/queues/backlog/messages",
                &[],
                format!("m{i}"),
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    s.api_wait("/v1/apps/metered/invocations", 20, |v| {
        v.as_array().unwrap().len() == 6
    })
    .await;
    let m = scrape(&s).await;
    let hello = [("app", "metered"), ("function", "hello")];
    let chaos = [("app", "metered"), ("function", "chaos")];
    assert_eq!(value(&m, "nimbus_invocations_total", &hello), 5.0);
    assert_eq!(
        value(
            &m,
            "nimbus_invocations_total",
            &[("function", "chaos"), ("outcome", "trap")]
        ),
        1.0
    );
    assert_eq!(value(&m, "nimbus_invocation_errors_total", &chaos), 1.0);
    assert_eq!(value(&m, "nimbus_invocation_errors_total", &hello), 0.0);
    assert_eq!(value(&m, "nimbus_invocation_duration_seconds", &hello), 5.0);
    assert_eq!(
        value(
            &m,
            "nimbus_queue_messages",
            &[("channel", "queue:backlog"), ("state", "queued")]
        ),
        3.0
    );
    assert!(
        value(
            &m,
            "nimbus_queue_oldest_age_seconds",
            &[("channel", "queue:backlog")]
        ) >= 0.0
    );
    assert_eq!(value(&m, "nimbus_function_in_flight", &hello), 0.0);

    // Counters move.
    for _ in 0..4 {
        s.get_text("/hello").await;
    }
    s.api_wait("/v1/apps/metered/invocations", 20, |v| {
        v.as_array().unwrap().len() == 10
    })
    .await;
    let m = scrape(&s).await;
    assert_eq!(value(&m, "nimbus_invocations_total", &hello), 9.0);
    assert_eq!(value(&m, "nimbus_invocation_duration_seconds", &hello), 9.0);

    // The unauthenticated listener serves the same; the API needs a key.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.data_dir.join("server.json")).unwrap())
            .unwrap();
    let text = reqwest::get(info["metrics_url"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("nimbus_invocations_total"));
    let r = s
        .http
        .get(format!("{}/v1/metrics", s.control))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_grep_and_json() {
    let s = Server::start(&[]);
    let dir = app_dir(APP);
    s.deploy(dir.path());
    for word in ["alpha", "beta", "ALPHA2"] {
        let r = s
            .http
            .post(format!("{}/echo?word={word}", s.url))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let out = s.wait_for_log("metered", &["echo"], "word=beta").await;
    assert!(out.contains("word=alpha"), "{out}");
    let out = s.cli_ok(&["logs", "metered", "echo", "--grep", "Alpha"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "case-insensitive, only matching lines: {out}"
    );
    assert!(lines.iter().all(|l| l.to_lowercase().contains("alpha")));
    let out = s.cli_ok(&["logs", "metered", "--json", "--grep", "word=beta"]);
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["function"], "echo");
    assert_eq!(v["stream"], "stdout");
    assert!(v["line"].as_str().unwrap().contains("word=beta"));
    assert!(!v["invocation_id"].as_str().unwrap().is_empty());
    let out = s.cli_ok(&["logs", "metered", "--grep", "100%_not_there"]);
    assert!(out.trim().is_empty(), "{out}");
}

const BROKEN: &str = r#"
[app]
name = "replayed"

[functions.api]
component = "@WASM@/chaos.wasm"
memory_mb = 32

[[triggers.http]]
route = "/api/{*what}"
function = "api"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn replay_reproduces_a_failure_and_checks_a_fix() {
    let s = Server::start(&[]);
    let broken = app_dir(BROKEN);
    s.deploy(broken.path());
    let set = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "secrets",
            "set",
            "replayed",
            "token",
            "s3cr3t-value-123",
            "--data-dir",
        ])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let r = s
        .http
        .post(format!("{}/api/parse?case=7", s.url))
        .header("authorization", "Bearer user-credential")
        .header("x-trace-me", "yes")
        .body("payload with s3cr3t-value-123 inside")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let id = common::invocation_id(&r);
    s.api_wait("/v1/apps/replayed/invocations", 20, |v| {
        v.as_array().unwrap().iter().any(|r| r["outcome"] == "trap")
    })
    .await;

    // The kept input: no credentials, no secret values.
    let kept = s
        .api(&format!("/v1/apps/replayed/invocations/{id}/input"))
        .await;
    let input = &kept["input"];
    assert_eq!(input["method"], "POST");
    assert_eq!(input["path"], "/api/parse?case=7");
    assert_eq!(input["complete"], true);
    let headers = input["headers"].to_string();
    assert!(
        headers.contains("x-trace-me") && !headers.to_lowercase().contains("authorization"),
        "{headers}"
    );
    let body = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            input["body_base64"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        !body.contains("s3cr3t-value-123") && body.starts_with("payload with"),
        "{body}"
    );

    // Replayed against the same revision, it fails the same way.
    let out = s.cli_ok(&["replay", &id]);
    assert!(
        out.contains("original (revision 1): HTTP 500 trap"),
        "{out}"
    );
    assert!(out.contains("replay   (revision 1"), "{out}");
    assert_eq!(out.matches("HTTP 500 trap").count(), 2, "{out}");

    // A fixed revision (here: a function that echoes instead of panicking).
    let fixed = app_dir(&BROKEN.replace("chaos.wasm", "echo.wasm"));
    s.deploy(fixed.path());
    let out = s.cli_ok(&["replay", &id, "--app", "replayed"]);
    assert!(out.contains("replay   (revision 2"), "{out}");
    assert!(out.contains("HTTP 200 ok"), "{out}");
    assert!(out.contains("body   | payload with"), "{out}");
    let out = s.cli_ok(&["replay", &id, "--revision", "1"]);
    assert_eq!(out.matches("HTTP 500 trap").count(), 2, "{out}");

    // On this machine, against locally built components.
    let local_fix = common::wasm("echo");
    let out = s.cli_ok(&["replay", &id, "--local", local_fix.to_str().unwrap()]);
    assert!(
        out.contains("original (revision 1, on the server): HTTP 500 trap"),
        "{out}"
    );
    assert!(
        out.contains("replay   (local") && out.contains("HTTP 200 ok"),
        "{out}"
    );
    let local_bug = common::wasm("chaos");
    let out = s.cli_ok(&["replay", &id, "--local", local_bug.to_str().unwrap()]);
    assert_eq!(out.matches("HTTP 500 trap").count(), 2, "{out}");

    // Successful invocations keep nothing.
    let ok = s.http.get(format!("{}/api/x", s.url)).send().await.unwrap();
    let ok_id = common::invocation_id(&ok);
    let err = s.cli_err(&["replay", &ok_id, "--app", "replayed"]);
    assert!(err.contains("only failed invocations"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_follows_a_request_across_functions() {
    let s = Server::start(&[]);
    let dir = app_dir(
        r#"
[app]
name = "traced"

[kv.counters]

[queues.jobs]

[functions.front]
component = "@WASM@/fetch.wasm"
allowed_outbound_hosts = ["127.0.0.1:*"]

[functions.back]
component = "@WASM@/consumer.wasm"
env = { FORWARD_QUEUE = "jobs" }

[functions.worker]
component = "@WASM@/consumer.wasm"

[functions.data]
component = "@WASM@/data.wasm"
kv = ["counters"]

[[triggers.http]]
route = "/front"
function = "front"

[[triggers.http]]
route = "/back"
function = "back"

[[triggers.http]]
route = "/incr/{*rest}"
function = "data"

[[triggers.queue]]
queue = "jobs"
function = "worker"
"#,
    );
    s.deploy(dir.path());
    // gateway -> front -> (outbound HTTP) back -> (queue send) jobs -> worker
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = s
        .http
        .get(format!("{}/front?url={}/back", s.url, s.url))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let front_id = common::invocation_id(&r);
    assert_eq!(r.text().await.unwrap(), "ok");
    let rows = s
        .api_wait("/v1/apps/traced/invocations", 20, |v| {
            v.as_array().unwrap().len() == 3
        })
        .await;
    let rows = rows.as_array().unwrap();
    let by_fn = |f: &str| rows.iter().find(|r| r["function"] == f).unwrap();
    let (front, back, worker) = (by_fn("front"), by_fn("back"), by_fn("worker"));
    assert_eq!(
        front["trace_id"], trace_id,
        "the client's trace is continued"
    );
    assert_eq!(front["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(back["trace_id"], trace_id);
    assert_eq!(
        back["parent_span_id"], front["span_id"],
        "front called back"
    );
    assert_eq!(worker["trace_id"], trace_id, "the queue carried the trace");
    assert_eq!(worker["trigger"], "queue");
    let by_trace = s.api(&format!("/v1/traces/{trace_id}")).await;
    assert_eq!(by_trace["spans"].as_array().unwrap().len(), 3);
    let ops = by_trace["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{by_trace:#}");
    let send = &ops[0];
    assert_eq!(
        (&send["service"], &send["op"], &send["target"], &send["ok"]),
        (
            &"events".into(),
            &"send".into(),
            &"jobs".into(),
            &true.into()
        )
    );
    assert_eq!(send["invocation_id"], back["id"]);
    assert_eq!(
        worker["parent_span_id"], send["span_id"],
        "the delivery is a child of the send"
    );
    // One tree, found by the trace id or by an invocation id in it.
    let out = s.cli_ok(&["trace", &front_id]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0], format!("trace {trace_id}"));
    assert!(lines[1].starts_with("  traced/front http GET"), "{out}");
    assert!(
        lines[2].starts_with("    traced/back http GET /back"),
        "{out}"
    );
    assert!(lines[3].starts_with("      events send jobs ok +"), "{out}");
    assert!(
        lines[4].starts_with("        traced/worker queue POST"),
        "{out}"
    );

    // A guest's KV operations are spans under its invocation.
    let r = s
        .http
        .get(format!("{}/incr/counters/n", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = common::invocation_id(&r);
    s.api_wait("/v1/apps/traced/invocations", 20, |v| {
        v.as_array().unwrap().len() == 4
    })
    .await;
    let out = s.cli_ok(&["trace", &id]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("  traced/data http GET /incr/counters/n"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("    kv increment counters ok +"),
        "{out}"
    );
    assert!(
        !out.contains(trace_id),
        "without a traceparent, a new trace"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_operations_and_storage_are_metered() {
    let s = Server::start(&["--storage-sample-secs", "1"]);
    let dir = app_dir(
        r#"
[app]
name = "stored"

[kv.counters]

[collections.notes]

[functions.data]
component = "@WASM@/data.wasm"
kv = ["counters"]
collections = ["notes"]

[[triggers.http]]
route = "/incr/{*rest}"
function = "data"

[[triggers.http]]
route = "/docs/{*rest}"
function = "data"
"#,
    );
    s.deploy(dir.path());
    // 5 guest increments (one KV operation each), 2 document puts.
    for i in 1..=5 {
        assert_eq!(
            s.get_text("/incr/counters/visits").await,
            (200, i.to_string())
        );
    }
    for id in ["a", "b"] {
        let r = s
            .http
            .put(format!("{}/docs/notes/{id}", s.url))
            .body(r#"{"text": "0123456789"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    // 3 client calls over REST: two puts and a read; a read of a missing
    // key, an anonymous refused call and a call naming another app are
    // not metered.
    let kv = |key: &str| format!("{}/v1/apps/stored/kv/counters/{key}", s.url);
    for key in ["x", "y"] {
        let r = s
            .http
            .put(kv(key))
            .bearer_auth(s.token())
            .body("12345")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let r = s
        .http
        .get(kv("x"))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "12345");
    let r = s
        .http
        .get(kv("nope"))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s.http.get(kv("x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .http
        .get(format!("{}/v1/apps/nobody/kv/counters/x", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let usage = s
        .api_wait("/v1/apps/stored/usage?since=1h", 20, |v| {
            v["rows"].as_array().unwrap().len() == 2
                && v["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["key"] == "stored/(api)" && r["operations"]["kv"] == 3)
                && v["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["invocations"].as_i64().unwrap())
                    .sum::<i64>()
                    == 7
        })
        .await;
    let row = |key: &str| {
        usage["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("no row {key}: {usage:#}"))
            .clone()
    };
    let guest = row("stored/data");
    assert_eq!(guest["operations"]["kv"], 5, "{guest}");
    assert_eq!(guest["operations"]["docs"], 2, "{guest}");
    let clients = row("stored/(api)");
    assert_eq!(clients["operations"]["kv"], 3, "{clients}");
    assert_eq!(clients["invocations"], 0);

    // Stored bytes: "visits" = "5" (7 bytes), "x" and "y" with 5-byte
    // values (12 bytes), two documents; sampled every second.
    let usage = s
        .api_wait("/v1/apps/stored/usage?since=1h", 20, |v| {
            let st = &v["storage"][0];
            st["stored_bytes"]["kv"] == 7 + 12 && st["gb_hours"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await;
    let st = &usage["storage"][0];
    assert_eq!(st["key"], "stored");
    let doc_bytes = st["stored_bytes"]["docs"].as_i64().unwrap();
    assert!((2 * 18..=2 * 40).contains(&doc_bytes), "{st}");
    assert!(usage["total"]["cost"].as_f64().unwrap() > 0.0);
    let table = s.cli_ok(&["usage", "--app", "stored", "--since", "1h"]);
    assert!(table.contains("stored/(api)"), "{table}");
    assert!(table.contains("GB-HOURS"), "{table}");

    // The metrics count both sources.
    let m = scrape(&s).await;
    let ops = |service: &str, source: &str| {
        value(
            &m,
            "nimbus_store_operations_total",
            &[("app", "stored"), ("service", service), ("source", source)],
        )
    };
    assert_eq!(ops("kv", "function"), 5.0);
    assert_eq!(ops("docs", "function"), 2.0);
    assert_eq!(ops("kv", "client"), 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_are_exported_over_otlp() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;
    use std::sync::{Arc, Mutex};

    // A collector endpoint that decodes what it receives (OTLP/HTTP, protobuf).
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = received.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    let req = ExportTraceServiceRequest::decode(body).expect("valid OTLP protobuf");
                    for rs in req.resource_spans {
                        for ss in rs.scope_spans {
                            sink.lock().unwrap().extend(ss.spans);
                        }
                    }
                    ""
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let s = Server::start(&["--otlp-endpoint", &endpoint]);
    let dir = app_dir(
        r#"
[app]
name = "exported"

[kv.counters]

[functions.data]
component = "@WASM@/data.wasm"
kv = ["counters"]

[[triggers.http]]
route = "/incr/{*rest}"
function = "data"
"#,
    );
    s.deploy(dir.path());
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let r = s
        .http
        .get(format!("{}/incr/counters/n", s.url))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = common::invocation_id(&r);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while received.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the collector got no spans"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let spans = received.lock().unwrap().clone();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let inv = spans.iter().find(|s| s.name == "exported/data").unwrap();
    let op = spans
        .iter()
        .find(|s| s.name == "kv increment counters")
        .unwrap();
    assert_eq!(hex(&inv.trace_id), trace_id);
    assert_eq!(hex(&inv.parent_span_id), "b7ad6b7169203331");
    assert_eq!(op.trace_id, inv.trace_id);
    assert_eq!(op.parent_span_id, inv.span_id);
    assert!(inv.end_time_unix_nano >= op.end_time_unix_nano);
    let attr = |s: &Span, k: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone()?.value)
    };
    assert_eq!(
        attr(inv, "nimbus.invocation_id"),
        Some(Any::StringValue(id.clone()))
    );
    assert_eq!(
        attr(inv, "http.response.status_code"),
        Some(Any::IntValue(200))
    );
    // The same trace reads back from Nimbus itself.
    // (The record may still be on its way to the store: poll, 404 included.)
    let mut t = serde_json::Value::Null;
    for _ in 0..400 {
        let r = s
            .http
            .get(format!("{}/v1/traces/{trace_id}", s.control))
            .bearer_auth(s.token())
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            t = r.json().await.unwrap();
            if t["operations"].as_array().is_some_and(|o| !o.is_empty()) {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(t["spans"][0]["id"], id);
    assert_eq!(t["operations"][0]["span_id"], hex(&op.span_id));
}
