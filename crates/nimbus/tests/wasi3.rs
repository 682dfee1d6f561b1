//! WASI 0.3 functions (`wasi:http/handler@0.3.0`) against a real server:
//! the `wasi3` guest from `examples/` (built with the `wasip3` crate) beside
//! 0.2 guests in one app, through the gateway, the invoke API and events,
//! under the same limits as 0.2 functions.

mod common;

use common::{Server, app_dir, boto3, s3_key};
use std::time::{Duration, Instant};

const APP: &str = r#"
[app]
name = "w3"

[kv.counters]

[variables]
greeting = "hello from config"

[queues.jobs]

[functions.v3]
component = "@WASM@/wasi3.wasm"
memory_mb = 16
timeout_ms = 1000
kv = ["counters"]

[functions.consumer]
component = "@WASM@/wasi3.wasm"
env = { ACTION = "consume" }
kv = ["counters"]

[functions.v2]
component = "@WASM@/hello.wasm"

[functions.echo3]
component = "@WASM@/wasi3.wasm"
memory_mb = 8
timeout_ms = 20000

[[triggers.http]]
route = "/v3/{action}"
function = "v3"

[functions.late]
component = "@WASM@/wasi3.wasm"
first_byte_timeout_ms = 300
timeout_ms = 5000

[[triggers.http]]
route = "/late/{action}"
function = "late"

[[triggers.http]]
route = "/v2/hello"
function = "v2"

[[triggers.http]]
route = "/stream/{action}"
function = "echo3"

[[triggers.queue]]
queue = "jobs"
function = "consumer"
"#;

fn start() -> Server {
    let server = Server::start(&[]);
    let app = app_dir(APP);
    let out = server.deploy(app.path());
    assert!(out.contains("deployed w3 revision 1"), "{out}");
    assert!(
        out.contains("WASI 0.3") && out.contains("WASI 0.2"),
        "{out}"
    );
    server
}

/// The invocation records of `function` of the app `w3`, newest first,
/// once there are at least `n` (they are written in the background).
async fn records(server: &Server, function: &str, n: usize) -> Vec<serde_json::Value> {
    app_records(server, "w3", function, n).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi3_and_a_wasi2_function_serve_side_by_side() {
    let server = start();
    for _ in 0..3 {
        let r = server.get("/v3/hello").await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("nimbus-invocation-id"));
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.text().await.unwrap(), "hello from WASI 0.3\n");
        assert_eq!(
            server.get_text("/v2/hello").await,
            (200, "hello".to_string())
        );
    }
    // The guest sees its request as a 0.2 guest does.
    let host = server.url.trim_start_matches("http://").to_string();
    assert_eq!(
        server.get_text("/v3/url?x=1").await,
        (200, format!("http://{host}/v3/url?x=1"))
    );
    // A fresh instance per request: the guest's global counter starts over.
    for _ in 0..3 {
        assert_eq!(server.get_text("/v3/count").await, (200, "1".to_string()));
    }
    // The guest's own error code becomes a 502 that names it.
    let (status, body) = server.get_text("/v3/fail").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("answered with an error") && body.contains("failed on purpose"),
        "{body}"
    );
    // Async host waits (the clock) work inside the handler.
    let start = Instant::now();
    assert_eq!(
        server.get_text("/v3/sleep?ms=200").await,
        (200, "slept".to_string())
    );
    assert!(start.elapsed() >= Duration::from_millis(200));

    // Every invocation is recorded, 0.3 or not.
    let inv = records(&server, "v3", 9).await;
    assert_eq!(inv.len(), 9, "{inv:?}");
    assert!(
        inv.iter().any(|i| i["status"] == 502
            && i["outcome"] == "error"
            && i["error"].as_str().unwrap().contains("failed on purpose")),
        "{inv:?}"
    );
    assert!(
        inv.iter()
            .any(|i| i["status"] == 200 && i["outcome"] == "ok" && i["bytes_out"] == 20),
        "{inv:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi3_function_streams_both_ways() {
    let server = start();
    // 24 MiB through a guest limited to 8 MiB of memory: it must stream.
    let data: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let r = server
        .http
        .post(format!("{}/stream/echo", server.url))
        .header("content-type", "application/x-test")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-test");
    let back = r.bytes().await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back[..] == data[..], "echoed bytes differ");
    let inv = records(&server, "echo3", 1).await;
    assert_eq!(inv[0]["bytes_in"], 24 << 20);
    assert_eq!(inv[0]["bytes_out"], 24 << 20);

    // A sized body is complete at its last byte, though the guest's task
    // works on: recorded as a success, its later output in the logs.
    let r = server.get("/stream/sized").await;
    assert_eq!(r.headers()["content-length"], "26");
    let id = common::invocation_id(&r);
    assert_eq!(r.text().await.unwrap(), "exactly 26 bytes of body\n!");
    server
        .wait_for_log(
            "w3",
            &["echo3", "--invocation", &id],
            "sized: done after the body",
        )
        .await;
    let inv = records(&server, "echo3", 2).await;
    let sized = inv.iter().find(|i| i["id"] == id.as_str()).unwrap();
    assert_eq!(sized["outcome"], "ok", "{sized}");
    assert_eq!(sized["error"], serde_json::Value::Null, "{sized}");

    // Lines arrive one by one while the guest still runs.
    let mut r = server.get("/stream/drip?n=3&ms=400").await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    let t = Instant::now();
    assert_eq!(&first[..], b"line 0\n", "the first line arrives alone");
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"line 1\nline 2\n");
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "later lines came after the first"
    );
}

/// Waits until the usage of `w3/v3` counts `n` KV operations (it panics
/// with the last answer if it does not).
async fn wait_for_kv_ops(server: &Server, n: u64) {
    server
        .api_wait("/v1/apps/w3/usage?since=1h", 20, |v| {
            v["rows"].as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["key"] == "w3/v3" && r["operations"]["kv"] == n)
            })
        })
        .await;
}

/// POSTs `body` to the send action at `path` with `?queue=jobs` and waits
/// until the consumer kept it under `event:ID` in `store` (`APP/STORE`);
/// then checks that `?queue=nope` is the guest's clear error, not a trap.
/// The message id.
async fn sent_and_consumed(server: &Server, path: &str, store: &str, body: &str) -> String {
    let (status, id) = server.post_text(&format!("{path}?queue=jobs"), body).await;
    assert_eq!(status, 202, "{id}");
    let key = format!("event:{id}");
    let mut kept = String::new();
    for _ in 0..100 {
        let out = server.cli(&["kv", "get", store, &key]);
        if out.status.success() {
            kept = String::from_utf8_lossy(&out.stdout).trim().to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kept, body, "event {id} was not consumed");
    let (status, text) = server.post_text(&format!("{path}?queue=nope"), "x").await;
    assert_eq!(status, 400);
    assert!(text.contains("UnknownTarget"), "{text}");
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi3_function_uses_kv_config_and_events() {
    let server = start();
    assert_eq!(server.get_text("/v3/incr?key=n").await, (200, "1".into()));
    assert_eq!(server.get_text("/v3/incr?key=n").await, (200, "2".into()));
    assert_eq!(
        server.cli_ok(&["kv", "get", "w3/counters", "n"]).trim(),
        "2"
    );
    // The same store through nimbus:kv, whose calls are async for 0.3
    // guests: increment, set, get-many, delete, exists.
    assert_eq!(
        server.get_text("/v3/kv3?key=n").await,
        (200, "3 3 false".into())
    );
    assert_eq!(server.get_text("/v3/get?key=n").await, (200, "3".into()));
    assert_eq!(server.get_text("/v3/get?key=n:copy").await.0, 404);
    // Each call is metered, as from a 0.2 binding: two increments, the
    // kv3 round (increment, set, a get-many of 2 keys, delete, exists: 6)
    // and two gets.
    wait_for_kv_ops(&server, 10).await;
    // A store the function is not granted is refused, not trapped.
    assert_eq!(
        server.get_text("/late/kv3?key=n").await,
        (500, "Error::AccessDenied".into())
    );
    assert_eq!(
        server.get_text("/v3/config?name=greeting").await,
        (200, "hello from config".into())
    );

    // Sent from a 0.3 guest, delivered to a 0.3 consumer.
    let id = sent_and_consumed(&server, "/v3/send", "w3/counters", "payload from wasi 0.3").await;
    let logs = server
        .wait_for_log("w3", &["consumer"], &format!("event {id}: 21 bytes"))
        .await;
    assert!(logs.contains(&id), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi3_limits_loop_memory_and_trap() {
    let server = start();
    let looping = {
        let http = server.http.clone();
        let url = format!("{}/v3/loop", server.url);
        tokio::spawn(async move {
            let start = Instant::now();
            let r = http.get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                r.text().await.unwrap(),
                start.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While one 0.3 guest spins, others are served.
    for _ in 0..10 {
        assert_eq!(server.get_text("/v3/count").await, (200, "1".into()));
        assert_eq!(server.get_text("/v2/hello").await, (200, "hello".into()));
    }
    let (status, body, took) = looping.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains("timeout_ms of 1000 ms") && body.contains("stopped"),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // The head is late: the first-byte limit stops it before the total one.
    let start = Instant::now();
    let (status, body) = server.get_text("/late/sleep?ms=2000").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("first_byte_timeout_ms of 300 ms"), "{body}");
    assert!(start.elapsed() < Duration::from_millis(1500));

    let (status, body) = server.get_text("/v3/alloc").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("memory limit exceeded") && body.contains("limit of 16 MiB"),
        "{body}"
    );
    assert_eq!(
        server.get_text("/v3/alloc?mb=4").await,
        (200, "allocated 4 MiB".to_string())
    );

    let r = server.get("/v3/panic").await;
    assert_eq!(r.status(), 500);
    let id = common::invocation_id(&r);
    let body = r.text().await.unwrap();
    assert!(body.contains(&id) && body.contains("trapped"), "{body}");
    let logs = server
        .wait_for_log(
            "w3",
            &["v3", "--invocation", &id],
            "wasi3 panicked on purpose",
        )
        .await;
    assert!(logs.contains("about to panic on purpose"), "{logs}");
    // Replayed on the server, and on this machine in-process, it fails the
    // same way.
    let out = server.cli_ok(&["replay", &id]);
    assert_eq!(out.matches("HTTP 500 trap").count(), 2, "{out}");
    let local = common::wasm("wasi3");
    let out = server.cli_ok(&["replay", &id, "--local", local.to_str().unwrap()]);
    assert!(
        out.contains("replay   (local") && out.matches("HTTP 500 trap").count() == 2,
        "{out}"
    );

    let inv = records(&server, "v3", 14).await;
    let outcomes: Vec<&str> = inv.iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    for o in ["timeout", "memory_limit", "trap"] {
        assert!(outcomes.contains(&o), "{o} not among {outcomes:?}");
    }
    assert_eq!(server.get_text("/v3/hello").await.0, 200);
}

const REUSE: &str = r#"
[app]
name = "reuse"

[variables]
greeting = "hello"

[functions.shared]
component = "@WASM@/wasi3.wasm"
instance_requests = 5
instance_concurrency = 4

[functions.blast]
component = "@WASM@/wasi3.wasm"
memory_mb = 16
timeout_ms = 1500
instance_requests = 100
instance_concurrency = 4

[[triggers.http]]
route = "/shared/{action}"
function = "shared"

[[triggers.http]]
route = "/blast/{action}"
function = "blast"
"#;

/// The records of `app`/`function`, newest first, once there are `n`.
async fn app_records(
    server: &Server,
    app: &str,
    function: &str,
    n: usize,
) -> Vec<serde_json::Value> {
    let mut inv = Vec::new();
    for _ in 0..50 {
        inv = server
            .api(&format!(
                "/v1/apps/{app}/invocations?function={function}&limit=100"
            ))
            .await
            .as_array()
            .unwrap()
            .clone();
        if inv.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    inv
}

/// Starts a GET in the background: its status, body and invocation id.
fn spawn_get(server: &Server, path: &str) -> tokio::task::JoinHandle<(u16, String, String)> {
    let http = server.http.clone();
    let url = format!("{}{path}", server.url);
    tokio::spawn(async move {
        let r = http.get(url).send().await.unwrap();
        let id = common::invocation_id(&r);
        (r.status().as_u16(), r.text().await.unwrap(), id)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi3_function_may_reuse_its_instances() {
    let server = Server::start(&[]);
    let app = app_dir(REUSE);
    let out = server.deploy(app.path());
    assert!(out.contains("deployed reuse revision 1"), "{out}");

    // One instance serves instance_requests = 5 requests (its global
    // counter goes on), then a fresh one takes over.
    for n in 1..=5 {
        assert_eq!(server.get_text("/shared/count").await, (200, n.to_string()));
    }
    assert_eq!(server.get_text("/shared/count").await, (200, "1".into()));
    // ... serving up to instance_concurrency = 4 at once: four requests
    // waiting together saw each other in one instance.
    let waits: Vec<_> = (0..4)
        .map(|_| spawn_get(&server, "/shared/overlap?ms=600"))
        .collect();
    for w in waits {
        let (status, body, _) = w.await.unwrap();
        assert_eq!((status, body.as_str()), (200, "4"));
    }
    // A reused instance's guest sees its request as a fresh one's does.
    let host = server.url.trim_start_matches("http://").to_string();
    assert_eq!(
        server.get_text("/shared/url?x=1").await,
        (200, format!("http://{host}/shared/url?x=1"))
    );
    // Each request keeps its own record.
    let inv = app_records(&server, "reuse", "shared", 11).await;
    assert_eq!(inv.len(), 11, "{inv:?}");
    assert!(
        inv.iter()
            .all(|i| i["status"] == 200 && i["outcome"] == "ok"),
        "{inv:?}"
    );
    let ids: std::collections::HashSet<_> = inv.iter().map(|i| i["id"].clone()).collect();
    assert_eq!(ids.len(), 11);
    // What the last request's task does after its response (here: a line
    // logged 200 ms after the body) still counts for it.
    let r = server.get("/shared/sized").await;
    assert_eq!(r.status(), 200);
    let sized = common::invocation_id(&r);
    r.bytes().await.unwrap();
    let logs = server
        .wait_for_log(
            "reuse",
            &["shared", "--invocation", &sized],
            "sized: done after the body",
        )
        .await;
    assert!(logs.contains("sized: done after the body"), "{logs}");
    // A configuration change retires the instances running with the old
    // one: the next request gets a fresh instance seeing the new value.
    assert_eq!(server.get_text("/shared/count").await, (200, "1".into()));
    server.cli_ok(&["config", "set", "reuse", "greeting", "changed"]);
    assert_eq!(
        server.get_text("/shared/config?name=greeting").await,
        (200, "changed".into())
    );
    assert_eq!(server.get_text("/shared/count").await, (200, "1".into()));

    // A trap stops the instance, failing every request it serves: which
    // of them trapped, the instance cannot tell (wasmtime reports the trap
    // from its event loop), so each is recorded with the trap, and the
    // panic's message is in the logs.
    let waiting = spawn_get(&server, "/blast/sleep?ms=3000");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = server.get("/blast/panic").await;
    assert_eq!(r.status(), 500);
    let culprit = common::invocation_id(&r);
    let body = r.text().await.unwrap();
    assert!(body.contains("trapped"), "{body}");
    let (status, body, bystander) = waiting.await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("was stopped with the instance serving it")
            && body.contains("in one of the 2 requests it was serving at once"),
        "{body}"
    );
    let logs = server
        .wait_for_log(
            "reuse",
            &["blast", "--invocation", &culprit],
            "wasi3 panicked on purpose",
        )
        .await;
    assert!(logs.contains("about to panic on purpose"), "{logs}");
    let inv = app_records(&server, "reuse", "blast", 2).await;
    let outcome = |id: &str| {
        inv.iter()
            .find(|i| i["id"] == id)
            .map(|i| i["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(outcome(&culprit).as_deref(), Some("trap"), "{inv:?}");
    assert_eq!(outcome(&bystander).as_deref(), Some("trap"), "{inv:?}");
    // Alone in its instance, a trapping request is the trap too.
    let r = server.get("/blast/panic").await;
    assert_eq!(r.status(), 500);
    let alone = common::invocation_id(&r);
    let body = r.text().await.unwrap();
    assert!(body.contains("which trapped"), "{body}");
    let inv = app_records(&server, "reuse", "blast", 3).await;
    assert!(
        inv.iter()
            .any(|i| i["id"] == alone.as_str() && i["outcome"] == "trap"),
        "{inv:?}"
    );

    // A loop past its timeout ends with a 504, and its instance takes no
    // more requests; a busy loop holds the whole instance, so the request
    // it blocked there runs into its own timeout; the next gets a new one.
    let start = Instant::now();
    let looping = spawn_get(&server, "/blast/loop");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = server.get_text("/blast/sleep?ms=10").await;
    let (loop_status, loop_body, _) = looping.await.unwrap();
    assert_eq!(loop_status, 504, "{loop_body}");
    assert!(
        loop_body.contains("first_byte_timeout_ms of 1500 ms")
            && loop_body.contains("takes no more requests"),
        "{loop_body}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("first_byte_timeout_ms of 1500 ms"), "{body}");
    assert_eq!(server.get_text("/blast/count").await, (200, "1".into()));

    // memory_mb is the instance's: a bomb stops it, the next gets a new one.
    let (status, body) = server.get_text("/blast/alloc").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("memory limit exceeded"), "{body}");
    assert_eq!(server.get_text("/blast/count").await, (200, "1".into()));
    assert_eq!(server.get_text("/blast/count").await, (200, "2".into()));

    // Reuse needs a 0.3 component: a 0.2 one is refused at deploy.
    let app = app_dir(
        "[app]\nname = \"reuse2\"\n[functions.v2]\ncomponent = \"@WASM@/hello.wasm\"\ninstance_requests = 10\n",
    );
    let err = server.cli_err(&["deploy", app.path().to_str().unwrap()]);
    assert!(
        err.contains("needs a WASI 0.3 component") && err.contains("this one is WASI 0.2"),
        "{err}"
    );
}

const DATA3: &str = r#"
[app]
name = "d3"

[kv.counters]

[collections.notes]

[queues.jobs]

[functions.api]
component = "@WASM@/wasi3.wasm"
kv = ["counters"]
collections = ["notes"]
buckets = ["files"]
timeout_ms = 20000
instance_requests = 100
instance_concurrency = 4

[functions.plain]
component = "@WASM@/wasi3.wasm"

[functions.consumer]
component = "@WASM@/wasi3.wasm"
env = { ACTION = "consume" }
kv = ["counters"]

[[triggers.http]]
route = "/api/{action}"
function = "api"

[[triggers.http]]
route = "/plain/{action}"
function = "plain"

[[triggers.queue]]
queue = "jobs"
function = "consumer"
"#;

/// `nimbus:kv/extras`, `nimbus:data@0.2.0` (documents, objects) and
/// `nimbus:events@0.2.0` from a 0.3 guest: async host calls, granted and
/// metered as the 0.2 bindings are, that leave the instance serving its
/// other requests while one waits on the host.
#[tokio::test(flavor = "multi_thread")]
async fn a_wasi3_function_uses_documents_objects_and_events_asynchronously() {
    let server = Server::start(&["--s3-listen", "127.0.0.1:0"]);
    let out = server.deploy(app_dir(DATA3).path());
    assert!(out.contains("deployed d3 revision 1"), "{out}");

    // KV extras: compare-and-swap, a TTL, a prefix listing.
    assert_eq!(
        server.get_text("/api/extras3?key=x").await,
        (200, "true false x,x:ttl".into())
    );
    // A document's life: put (version 1), merge (2), read, query, delete.
    let (status, body) = server.get_text("/api/docs3?id=d1").await;
    assert_eq!(status, 200, "{body}");
    let json = body
        .strip_prefix("1 2 ")
        .and_then(|b| b.strip_suffix(" true true"))
        .unwrap_or_else(|| panic!("{body}"));
    let json: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(json, serde_json::json!({"n": 1, "m": 2}));
    // A collection the function is not granted is its error, not a trap.
    let (status, body) = server.get_text("/plain/docs3?id=d1").await;
    assert_eq!(status, 500);
    assert!(body.contains("NoSuchCollection"), "{body}");

    // A watch waits on the host without holding the instance: a write
    // served by the same instance (it has room for 4 requests) meanwhile
    // wakes it at once, and the watch saw both requests in the instance
    // at once. Were the call blocking, the write would wait in
    // the instance until the watch gave up (15 s), which answers `none`.
    let watch = spawn_get(&server, "/api/watch3?id=w&after=0&ms=15000");
    // The watch is in the instance (it counts itself) before the write.
    let mut waiting = String::new();
    for _ in 0..100 {
        waiting = server.get_text("/api/inflight").await.1;
        if waiting == "1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting, "1", "the watch never started");
    let started = Instant::now();
    let put = server.post_text("/api/put3?id=w", r#"{"a":1}"#).await;
    assert_eq!(put, (200, "1".to_string()));
    let (status, body, _) = watch.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "1 2"));
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "the watch answered {waited:?} after the write"
    );

    // One instance has room for 16 async host calls per request it may
    // serve at once (4 here): more answer the guest an error, unmetered,
    // and the instance goes on serving.
    let (status, body) = server.get_text("/api/flood3?n=100").await;
    assert_eq!(status, 200, "{body}");
    let (served, refusal) = body.split_once(" served; ").unwrap();
    let served: u64 = served.parse().unwrap();
    assert!((64..100).contains(&served), "{body}");
    assert!(
        refusal.contains("64 host calls in flight, the most it may"),
        "{body}"
    );
    // Their room came back: a second flood is served as far.
    let (status, again) = server.get_text("/api/flood3?n=100").await;
    assert_eq!(status, 200, "{again}");
    let again: u64 = again.split_once(" served; ").unwrap().0.parse().unwrap();
    assert!((64..100).contains(&again), "{again}");

    // Objects, in a bucket the app created through S3.
    let (id, secret) = s3_key(&server, "d3");
    boto3(&server, (&id, &secret), "c.create_bucket(Bucket='files')");
    let put = server.post_text("/api/blobs3?key=k1", "hello blobs").await;
    assert_eq!(put, (200, "11 hello blobs 1 true".to_string()));
    assert_eq!(
        boto3(
            &server,
            (&id, &secret),
            "print(c.list_objects_v2(Bucket='files').get('KeyCount'))"
        ),
        "0"
    );
    let (status, body) = server.get_text("/plain/blobs3?key=k1").await;
    assert_eq!(status, 500);
    assert!(body.contains("not granted"), "{body}");

    // Sent through nimbus:events@0.2.0, delivered to the consumer.
    sent_and_consumed(&server, "/api/send3", "d3/counters", "sent asynchronously").await;

    // Every call is metered: 4 KV (two swaps, a TTL write, a listing); 7
    // documents (put, patch, get, query, delete, watch, put) and the
    // flood's watches that were served; 4 objects (put, get, list,
    // delete); 2 sends (the refused one too).
    server
        .api_wait("/v1/apps/d3/usage?since=1h", 20, |v| {
            v["rows"].as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    let o = &r["operations"];
                    r["key"] == "d3/api"
                        && o["kv"] == 4
                        && o["docs"] == 7 + served + again
                        && o["objects"] == 4
                        && o["events"] == 2
                })
            })
        })
        .await;
}
