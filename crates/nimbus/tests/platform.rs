//! End-to-end tests: real `nimbus up` processes, real guests from
//! `examples/`, real HTTP, the real CLI.

mod common;

use common::{Server, app_dir};
use std::time::{Duration, Instant};

const BASIC: &str = r#"
[app]
name = "basic"

[functions.hello]
component = "@WASM@/hello.wasm"
memory_mb = 16

[functions.echo]
component = "@WASM@/echo.wasm"
env = { GREETING = "hi there" }

[functions.chaos]
component = "@WASM@/chaos.wasm"
memory_mb = 16
timeout_ms = 1000

[[triggers.http]]
route = "/hello"
methods = ["GET"]
function = "hello"

[[triggers.http]]
route = "/echo/{name}"
function = "echo"

[[triggers.http]]
route = "/files/{*path}"
methods = ["GET"]
function = "echo"

[[triggers.http]]
route = "/chaos/*"
function = "chaos"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn routes_params_and_methods() {
    let server = Server::start(&[]);
    let app = app_dir(BASIC);
    let out = server.deploy(app.path());
    assert!(out.contains("deployed basic revision 1"), "{out}");

    let (status, body) = server.get_text("/hello").await;
    assert_eq!((status, body.as_str()), (200, "hello"));

    let r = server
        .http
        .get(format!("{}/echo/bob?x=1", server.url))
        .header("nimbus-param-evil", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("nimbus-invocation-id"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/echo/bob?x=1");
    assert_eq!(
        v["params"],
        serde_json::json!({ "name": "bob" }),
        "client-sent nimbus-* headers must be stripped"
    );
    assert_eq!(v["greeting"], "hi there");

    let v: serde_json::Value = server.get("/files/a/b/c.txt").await.json().await.unwrap();
    assert_eq!(v["params"]["path"], "a/b/c.txt");

    let r = server
        .http
        .post(format!("{}/hello", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let (status, body) = server.get_text("/nowhere").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route for GET /nowhere"), "{body}");

    // A client that gives up before the response starts stops the function,
    // and the record says so (not a silent "ok" without a status).
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(
        impatient
            .get(format!("{}/chaos/slowhead?ms=600", server.url))
            .send()
            .await
            .is_err()
    );
    let list = server
        .api_wait("/v1/apps/basic/invocations?function=chaos", 10, |v| {
            v.as_array()
                .unwrap()
                .iter()
                .any(|r| r["path"].as_str().unwrap().contains("slowhead"))
        })
        .await;
    let cancelled = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"].as_str().unwrap().contains("slowhead"))
        .unwrap();
    assert_eq!(cancelled["outcome"], "error", "{cancelled}");
    assert!(
        cancelled["error"]
            .as_str()
            .unwrap()
            .contains("cancelled before the response started"),
        "{cancelled}"
    );

    // A fresh instance per request: a guest's global counter never survives.
    for _ in 0..3 {
        assert_eq!(
            server.get_text("/chaos/count").await,
            (200, "1".to_string())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_invoke_lists_and_logs() {
    let server = Server::start(&[]);
    let app = app_dir(BASIC);
    server.deploy(app.path());

    let out = server.cli_ok(&["invoke", "basic/echo", "--data", r#"{"x":1}"#]);
    assert!(out.contains("HTTP 200 OK"), "{out}");
    assert!(out.contains(r#"{"x":1}"#), "{out}");
    assert!(out.contains("nimbus-invocation-id:"), "{out}");
    let out = server.cli_ok(&["invoke", "basic/echo", "--path", "/echo/zed"]);
    assert!(out.contains(r#""path":"/echo/zed""#), "{out}");

    let out = server.cli_ok(&["apps"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("basic") && l.contains(" 1 ")),
        "{out}"
    );
    let out = server.cli_ok(&["functions", "basic"]);
    assert!(
        out.contains("/echo/{name}")
            && out.contains("/files/{*path}")
            && out.contains("memory 16 MiB"),
        "{out}"
    );
    let out = server.cli_ok(&["revisions", "basic"]);
    assert!(out.contains("hello"), "{out}");

    let out = server
        .wait_for_log("basic", &["echo"], "echo: POST /")
        .await;
    assert!(out.contains("stderr | echo: streamed 7 bytes"), "{out}");
    let err = server.cli_err(&["invoke", "basic/nope"]);
    assert!(err.contains("no function basic/nope is deployed"), "{err}");
    let err = server.cli_err(&["functions", "ghost"]);
    assert!(err.contains("not deployed"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_the_previous_revision() {
    let server = Server::start(&[]);
    let v1 = app_dir(
        r#"
[app]
name = "roll"
[functions.main]
component = "@WASM@/hello.wasm"
[[triggers.http]]
route = "/v"
function = "main"
"#,
    );
    let v2 = app_dir(
        r#"
[app]
name = "roll"
[functions.main]
component = "@WASM@/echo.wasm"
[[triggers.http]]
route = "/v"
function = "main"
[[triggers.http]]
route = "/only-in-v2"
function = "main"
"#,
    );
    server.deploy(v1.path());
    assert_eq!(server.get_text("/v").await.1, "hello");
    let out = server.deploy(v2.path());
    assert!(out.contains("revision 2"), "{out}");
    assert!(server.get_text("/v").await.1.contains("\"method\":\"GET\""));
    assert_eq!(server.get_text("/only-in-v2").await.0, 200);

    let out = server.cli_ok(&["rollback", "roll"]);
    assert!(out.contains("revision 1 is active"), "{out}");
    assert_eq!(server.get_text("/v").await.1, "hello");
    assert_eq!(
        server.get_text("/only-in-v2").await.0,
        404,
        "a revision's routes go with it"
    );
    let out = server.cli_ok(&["revisions", "roll"]);
    let active: Vec<&str> = out.lines().filter(|l| l.contains('*')).collect();
    assert_eq!(active.len(), 1, "{out}");
    assert!(active[0].trim_start().starts_with('1'), "{out}");
    let err = server.cli_err(&["rollback", "roll"]);
    assert!(err.contains("no revision before 1"), "{err}");
    server.cli_ok(&["rollback", "roll", "--to", "2"]);
    assert_eq!(server.get_text("/only-in-v2").await.0, 200);

    // Redeploying unchanged code does not compile again.
    let out = server.deploy(v1.path());
    assert!(
        out.contains("revision 3") && !out.contains("compiled in"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_deploys_leave_the_old_revision_serving() {
    let server = Server::start(&[]);
    let good = app_dir(
        r#"
[app]
name = "keep"
[functions.main]
component = "@WASM@/hello.wasm"
[[triggers.http]]
route = "/keep"
function = "main"
"#,
    );
    server.deploy(good.path());

    let check_old =
        || async { assert_eq!(server.get_text("/keep").await, (200, "hello".to_string())) };

    // Unknown function in a route: named with its line, nothing uploaded.
    let bad = app_dir(
        "[app]\nname = \"keep\"\n[functions.main]\ncomponent = \"@WASM@/hello.wasm\"\n\n[[triggers.http]]\nroute = \"/keep\"\nfunction = \"mian\"\n",
    );
    let err = server.cli_err(&["deploy", bad.path().to_str().unwrap()]);
    assert!(
        err.contains("line 6") && err.contains("points at function \"mian\""),
        "{err}"
    );
    check_old().await;

    // Not WebAssembly at all.
    let bad = app_dir(
        "[app]\nname = \"keep\"\n[functions.main]\ncomponent = \"junk.wasm\"\n[[triggers.http]]\nroute = \"/keep\"\nfunction = \"main\"\n",
    );
    std::fs::write(bad.path().join("junk.wasm"), b"this is not wasm").unwrap();
    let err = server.cli_err(&["deploy", bad.path().to_str().unwrap()]);
    assert!(err.contains("not WebAssembly"), "{err}");
    check_old().await;

    // A core module, not a component.
    std::fs::write(bad.path().join("junk.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let err = server.cli_err(&["deploy", bad.path().to_str().unwrap()]);
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );
    check_old().await;

    // A valid component that is not an HTTP handler.
    let bad = app_dir(
        "[app]\nname = \"keep\"\n[functions.main]\ncomponent = \"@WASM@/not-http.wasm\"\n[[triggers.http]]\nroute = \"/keep\"\nfunction = \"main\"\n",
    );
    let err = server.cli_err(&["deploy", bad.path().to_str().unwrap()]);
    assert!(
        err.contains("exports no HTTP handler")
            && err.contains("wasi:http/incoming-handler@0.2 or wasi:http/handler@0.3.0"),
        "{err}"
    );
    check_old().await;

    // A memory limit above the platform's.
    let bad = app_dir(
        "[app]\nname = \"keep\"\n[functions.main]\ncomponent = \"@WASM@/hello.wasm\"\nmemory_mb = 4000\n",
    );
    let err = server.cli_err(&["deploy", bad.path().to_str().unwrap()]);
    assert!(err.contains("above this server's limit"), "{err}");
    check_old().await;

    // Routes colliding with another app.
    let other = app_dir(
        "[app]\nname = \"other\"\n[functions.main]\ncomponent = \"@WASM@/echo.wasm\"\n[[triggers.http]]\nroute = \"/keep\"\nfunction = \"main\"\n",
    );
    let err = server.cli_err(&["deploy", other.path().to_str().unwrap()]);
    assert!(
        err.contains("collides with route \"/keep\" of app \"keep\""),
        "{err}"
    );
    check_old().await;
    let err = server.cli_err(&["functions", "other"]);
    assert!(err.contains("not deployed"), "{err}");

    let out = server.cli_ok(&["revisions", "keep"]);
    assert_eq!(
        out.lines().count(),
        2,
        "only the good revision exists:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_brings_apps_back_without_recompiling() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &[]);
    let app = app_dir(BASIC);
    server.deploy(app.path());
    server.cli_ok(&["rollback", "basic", "--to", "1"]);
    server.stop();

    let server = Server::start_in(data.path(), &[]);
    assert_eq!(server.get_text("/hello").await, (200, "hello".to_string()));
    let v: serde_json::Value = server.get("/echo/x").await.json().await.unwrap();
    assert_eq!(v["params"]["name"], "x");
    let apps: Vec<nimbus_api::AppSummary> =
        serde_json::from_value(server.api("/v1/apps").await).unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(
        apps[0].active_revision,
        Some(1),
        "restored at its active revision"
    );

    // A new data dir sharing the compile cache loads native code from disk.
    let fresh = Server::start(&[]);
    let out = fresh.deploy(app.path());
    assert!(
        out.contains("loaded (compile cache)") && !out.contains("compiled in"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_is_stopped_while_others_keep_serving() {
    let server = Server::start(&[]);
    let app = app_dir(BASIC);
    server.deploy(app.path());

    let looping = {
        let http = server.http.clone();
        let url = format!("{}/chaos/loop", server.url);
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
    // While one guest spins, others are served.
    for _ in 0..20 {
        assert_eq!(server.get_text("/hello").await, (200, "hello".to_string()));
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

    // The record says what happened.
    for _ in 0..50 {
        let inv = server
            .api("/v1/apps/basic/invocations?function=chaos")
            .await;
        if let Some(i) = inv.as_array().unwrap().first() {
            assert_eq!(i["outcome"], "timeout");
            assert_eq!(i["status"], 504);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no invocation record for the loop");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_and_trap_fail_alone() {
    let server = Server::start(&[]);
    let app = app_dir(BASIC);
    server.deploy(app.path());

    let (status, body) = server.get_text("/chaos/alloc").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("memory limit exceeded") && body.contains("limit of 16 MiB"),
        "{body}"
    );
    // Within the limit it works.
    assert_eq!(
        server.get_text("/chaos/alloc?mb=4").await,
        (200, "allocated 4 MiB".to_string())
    );

    let r = server.get("/chaos/panic").await;
    assert_eq!(r.status(), 500);
    let id = common::invocation_id(&r);
    let body = r.text().await.unwrap();
    assert!(body.contains(&id) && body.contains("trapped"), "{body}");
    let logs = server
        .wait_for_log(
            "basic",
            &["chaos", "--invocation", &id],
            "chaos asked to panic",
        )
        .await;
    assert!(logs.contains("chaos: about to panic"), "{logs}");

    let (status, body) = server.get_text("/chaos/noresponse").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("returned without sending a response"),
        "{body}"
    );

    assert_eq!(server.get_text("/hello").await, (200, "hello".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn first_byte_and_total_timeouts_are_distinct() {
    let server = Server::start(&[]);
    let app = app_dir(
        r#"
[app]
name = "slow"
[functions.chaos]
component = "@WASM@/chaos.wasm"
first_byte_timeout_ms = 300
timeout_ms = 1500
[[triggers.http]]
route = "/{action}"
function = "chaos"
"#,
    );
    server.deploy(app.path());
    let start = Instant::now();
    let (status, body) = server.get_text("/slowhead?ms=1000").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("first_byte_timeout_ms of 300 ms"), "{body}");
    assert!(start.elapsed() < Duration::from_millis(1000));
    // Head at once, body within the total limit: fine.
    assert_eq!(
        server.get_text("/slowbody?ms=500").await,
        (200, "head sent\nbody done\n".to_string())
    );
    // Head at once, body past the total limit: the response is cut, not completed.
    let r = server.get("/slowbody?ms=5000").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.is_err(),
        "a response cut by the timeout must not look complete"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_limit_waits_then_throttles() {
    let server = Server::start(&["--admission-timeout-ms", "300", "--admission-queue", "10"]);
    let app = app_dir(
        r#"
[app]
name = "busy"
[functions.chaos]
component = "@WASM@/chaos.wasm"
max_concurrency = 1
[[triggers.http]]
route = "/{action}"
function = "chaos"
"#,
    );
    server.deploy(app.path());
    let slow = {
        let http = server.http.clone();
        let url = format!("{}/sleep?ms=1500", server.url);
        tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = server.get("/count").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body = r.text().await.unwrap();
    assert!(body.contains("concurrency limit (1 per function"), "{body}");
    assert_eq!(slow.await.unwrap(), 200);

    // A request that fits within the wait bound is queued, not refused.
    let short = {
        let http = server.http.clone();
        let url = format!("{}/sleep?ms=100", server.url);
        tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(server.get_text("/count").await, (200, "1".to_string()));
    assert_eq!(short.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_http_only_to_allowed_hosts() {
    let server = Server::start(&[]);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let app = app_dir(&format!(
        r#"
[app]
name = "net"
[functions.hello]
component = "@WASM@/hello.wasm"
[functions.closed]
component = "@WASM@/fetch.wasm"
[functions.open]
component = "@WASM@/fetch.wasm"
allowed_outbound_hosts = ["127.0.0.1:{port}"]
[[triggers.http]]
route = "/hello"
function = "hello"
[[triggers.http]]
route = "/closed"
function = "closed"
[[triggers.http]]
route = "/open"
function = "open"
"#
    ));
    server.deploy(app.path());
    let target = format!("{}/hello", server.url);
    let (status, body) = server.get_text(&format!("/closed?url={target}")).await;
    assert_eq!(status, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    server
        .wait_for_log(
            "net",
            &["closed"],
            "denied: add its host to allowed_outbound_hosts",
        )
        .await;
    assert_eq!(
        server.get_text(&format!("/open?url={target}")).await,
        (200, "hello".to_string())
    );
    let (status, body) = server.get_text("/open?url=http://127.0.0.2:9/").await;
    assert_eq!(status, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_stream_both_ways() {
    let server = Server::start(&[]);
    let app = app_dir(
        r#"
[app]
name = "big"
[functions.echo]
component = "@WASM@/echo.wasm"
memory_mb = 8
[functions.stream]
component = "@WASM@/stream.wasm"
memory_mb = 8
[[triggers.http]]
route = "/echo/{name}"
function = "echo"
[[triggers.http]]
route = "/stream"
function = "stream"
"#,
    );
    server.deploy(app.path());

    // 24 MiB through a guest limited to 8 MiB of memory: it must stream.
    let data: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let r = server
        .http
        .post(format!("{}/echo/big", server.url))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let back = r.bytes().await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back[..] == data[..], "echoed bytes differ");

    let r = server.get("/stream?bytes=67108864").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 64 << 20);

    // Server-sent events arrive one by one, while the guest is still running.
    let mut r = server.get("/stream?count=3&interval_ms=400").await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut seen = Vec::new();
    while !seen.ends_with(b"\n\n") {
        seen.extend_from_slice(&r.chunk().await.unwrap().unwrap());
    }
    let t = Instant::now();
    assert_eq!(
        &seen[..],
        b"data: tick 1\n\n",
        "the first event arrives alone"
    );
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"data: tick 2\n\ndata: tick 3\n\n");
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "later events came after the first"
    );

    let inv = server.api("/v1/apps/big/invocations?function=echo").await;
    assert_eq!(inv[0]["bytes_in"], 24 << 20);
    assert_eq!(inv[0]["bytes_out"], 24 << 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn control_api_requires_the_admin_token_and_checks_uploads() {
    let server = Server::start(&["--max-component-mb", "1"]);
    let r = server
        .http
        .get(format!("{}/v1/apps", server.control))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .http
        .get(format!("{}/v1/apps", server.control))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .http
        .get(format!("{}/v1/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let hash = "0".repeat(64);
    let put = |body: Vec<u8>| {
        server
            .http
            .put(format!("{}/v1/components/{hash}", server.control))
            .bearer_auth(server.token())
            .body(body)
            .send()
    };
    let r = put(b"abc".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("expected SHA-256"));
    // The server answers 413 before reading the whole body and closes that
    // connection; a separate client keeps it out of the shared pool.
    let r = reqwest::Client::new()
        .put(format!("{}/v1/components/{hash}", server.control))
        .bearer_auth(server.token())
        .body(vec![0u8; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("--max-component-mb"));
    let r = server
        .http
        .put(format!("{}/v1/components/..%2Fx", server.control))
        .bearer_auth(server.token())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A deploy naming a component that was never uploaded is refused.
    let r = server
        .http
        .post(format!("{}/v1/apps/x/revisions", server.control))
        .bearer_auth(server.token())
        .json(&serde_json::json!({
            "manifest": "[app]\nname = \"x\"\n[functions.f]\ncomponent = \"f.wasm\"\n",
            "components": { "f": "1".repeat(64) }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("was not uploaded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_can_be_bound_to_a_host_and_deleted() {
    let server = Server::start(&[]);
    let a = app_dir(
        "[app]\nname = \"plain\"\n[functions.f]\ncomponent = \"@WASM@/hello.wasm\"\n[[triggers.http]]\nroute = \"/same\"\nfunction = \"f\"\n",
    );
    let b = app_dir(
        "[app]\nname = \"hosted\"\nhost = \"api.example.test\"\n[functions.f]\ncomponent = \"@WASM@/echo.wasm\"\n[[triggers.http]]\nroute = \"/same\"\nfunction = \"f\"\n",
    );
    server.deploy(a.path());
    server.deploy(b.path());
    assert_eq!(server.get_text("/same").await.1, "hello");
    let r = server
        .http
        .get(format!("{}/same", server.url))
        .header("host", "api.example.test")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("\"method\":\"GET\""));
    server.cli_ok(&["delete", "hosted"]);
    let r = server
        .http
        .get(format!("{}/same", server.url))
        .header("host", "api.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    assert!(
        server
            .cli_ok(&["apps"])
            .lines()
            .all(|l| !l.starts_with("hosted"))
    );
}

/// The hello component with a custom section naming `tag`: a component of
/// its own (its hash, its compile cache entry), with the hello's behaviour.
fn tagged_hello(tag: &str) -> (Vec<u8>, String) {
    use sha2::Digest as _;
    let mut bytes = std::fs::read(common::guests().join("hello.wasm")).unwrap();
    let (name, payload) = (b"nimbus-test".as_slice(), tag.as_bytes());
    let body = [&[name.len() as u8][..], name, payload].concat();
    assert!(body.len() < 128, "one-byte LEB128 sizes");
    bytes.extend([0, body.len() as u8]);
    bytes.extend(body);
    let hash = hex::encode(sha2::Sha256::digest(&bytes));
    (bytes, hash)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_serves_before_loading_and_a_broken_function_spares_its_app() {
    let tag = format!(
        "{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
    );
    let (fresh, fresh_hash) = tagged_hello(&format!("fresh {tag}"));
    let (broken, broken_hash) = tagged_hello(&format!("broken {tag}"));
    let app = app_dir(
        r#"
[app]
name = "lazy"

[functions.any]
component = "@WASM@/hello.wasm"

[functions.fresh]
component = "fresh.wasm"

[functions.broken]
component = "broken.wasm"

[[triggers.http]]
route = "/any"
function = "any"

[[triggers.http]]
route = "/fresh"
function = "fresh"

[[triggers.http]]
route = "/broken"
function = "broken"
"#,
    );
    std::fs::write(app.path().join("fresh.wasm"), fresh).unwrap();
    std::fs::write(app.path().join("broken.wasm"), broken).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &[]);
    server.deploy(app.path());
    assert_eq!(server.get_text("/broken").await, (200, "hello".to_string()));
    server.stop();

    // The two tagged components leave the compile cache (as after an
    // upgrade that changed the engine), and the broken one's stored bytes
    // rot on disk.
    let cached = |hash: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(common::shared_cache())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                name.starts_with(hash) && name.ends_with(".cwasm")
            })
            .collect()
    };
    for hash in [&fresh_hash, &broken_hash] {
        let files = cached(hash);
        assert_eq!(files.len(), 1, "{hash}: {files:?}");
        std::fs::remove_file(&files[0]).unwrap();
    }
    let stored = data
        .path()
        .join("components")
        .join(&broken_hash[..2])
        .join(format!("{broken_hash}.wasm"));
    std::fs::write(&stored, b"\0asm\x0d\0\x01\0 rotten").unwrap();

    // Room in memory for one component: the warm-up loads the first
    // function's (`any`) and only precompiles the others'.
    let server = Server::start_in(data.path(), &["--loaded-capacity", "1"]);
    // With no request, the node compiles the fresh one again in the
    // background (its first request will not compile)...
    let deadline = Instant::now() + Duration::from_secs(60);
    while cached(&fresh_hash).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the warm-up did not compile the component"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... without loading it ...
    let status = server.api("/v1/status").await;
    assert_eq!(status["loaded_components"], 1, "{status}");
    // ... the app is back (the broken function did not take it down) ...
    assert_eq!(server.get_text("/any").await, (200, "hello".to_string()));
    assert_eq!(server.get_text("/fresh").await, (200, "hello".to_string()));
    // ... and the broken function says why it cannot run; its next
    // requests get the remembered failure instead of another attempt.
    for _ in 0..2 {
        let (status, body) = server.get_text("/broken").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("function lazy/broken cannot be loaded: invalid component"),
            "{body}"
        );
    }
    let (_, body) = server.get_text("/broken").await;
    assert!(body.contains("this load failed"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn evicted_functions_reload_from_the_compile_cache() {
    // Room for one pre-linked component: the two functions evict each other.
    let server = Server::start(&["--loaded-capacity", "1"]);
    let app = app_dir(BASIC);
    server.deploy(app.path());
    for _ in 0..3 {
        assert_eq!(server.get_text("/hello").await, (200, "hello".to_string()));
        assert_eq!(
            server.get_text("/chaos/count").await,
            (200, "1".to_string())
        );
    }
    let status = server.api("/v1/status").await;
    assert_eq!(status["loaded_components"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_app_deploys_and_serves() {
    let server = Server::start(&[]);
    let demo = common::repo().join("examples/demo");
    // Runs the manifest's build commands, as a user's `nimbus deploy` does.
    let out = server.deploy(&demo);
    assert!(out.contains("deployed demo revision 1"), "{out}");
    assert_eq!(server.get_text("/hello").await, (200, "hello".to_string()));
    let v: serde_json::Value = server.get("/echo/you").await.json().await.unwrap();
    assert_eq!(v["params"]["name"], "you");
    assert_eq!(v["greeting"], "hello from Nimbus");
    let (status, body) = server.get_text("/clock?count=2&interval_ms=10").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "data: tick 1\n\ndata: tick 2\n\n")
    );
    let hello = format!("{}/hello", server.url);
    assert_eq!(
        server.get_text(&format!("/fetch?url={hello}")).await,
        (200, "hello".to_string())
    );
    // The demo's data: a counter, configuration, a leaderboard query.
    let r = server
        .http
        .post(format!("{}/incr/counters/visits", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "1");
    assert_eq!(
        server.get_text("/config/greeting").await,
        (200, "hello from wasi:config".to_string())
    );
    let r = server
        .http
        .post(format!("{}/query/scores", server.url))
        .body(r#"{"order_by": [["score", "desc"]], "limit": 10}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The demo's identity: sign up, then reach the members-only route.
    assert_eq!(server.get_text("/whoami").await.0, 401);
    let session: serde_json::Value = server
        .http
        .post(format!("{}/v1/apps/demo/auth/signup", server.url))
        .json(&serde_json::json!({"email": "demo@example.com", "password": "demo password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: serde_json::Value = server
        .http
        .get(format!("{}/whoami", server.url))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["auth"]["subject"], session["user"]["id"]);
    // The demo's events: a topic copy lands in the jobs queue, the worker logs it.
    let out = server.cli_ok(&["topic", "publish", "demo/news", "extra!"]);
    let id = out.trim().to_string();
    server
        .wait_for_log(
            "demo",
            &["worker"],
            &format!("dev.nimbus.topic.message {id} attempt 1"),
        )
        .await;
}
