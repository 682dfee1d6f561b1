//! Egress: a guest allowed every host (`allowed_outbound_hosts = ["*"]`)
//! still reaches nothing inside the node's network — loopback services,
//! the node's own listeners, cloud metadata, names that resolve there —
//! unless the operator opens ranges with `nimbus up --allow-egress`. And
//! the client address the gateway's policies see comes from
//! `X-Forwarded-For` only when the peer is a `--trusted-proxy`.
//!
//! Every server here is started with `Server::start_guarded` (no loopback
//! allowance of the test harness) unless the test gives the flags itself.

use crate::common::{Server, app_dir};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Tenant B: one function allowed to call any host.
const PROBER: &str = r#"
[app]
name = "prober"

[functions.fetch]
component = "@WASM@/fetch.wasm"
allowed_outbound_hosts = ["*"]
timeout_ms = 5000

[functions.hello]
component = "@WASM@/hello.wasm"

[[triggers.http]]
route = "/fetch"
function = "fetch"

[[triggers.http]]
route = "/hello"
function = "hello"
"#;

/// A service on loopback inside the node's network (a database admin
/// page, a sidecar): counts the requests that reach it.
struct Internal {
    port: u16,
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn internal_service() -> Internal {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "internal secret"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Internal {
        port,
        url: format!("http://127.0.0.1:{port}/admin"),
        hits,
    }
}

/// What the prober's guest got for `url`: its status and body.
async fn fetch(s: &Server, url: &str) -> (u16, String) {
    s.get_text(&format!("/fetch?url={url}")).await
}

/// The guest saw the egress guard's error, not a response or another failure.
fn assert_refused((status, body): (u16, String), what: &str) {
    assert_eq!(status, 502, "{what} was not refused: {body}");
    assert!(
        body.contains("DestinationIpProhibited"),
        "{what} was not refused by the egress guard: {body}"
    );
}

fn prober() -> Server {
    let s = Server::start_guarded(&[]);
    s.deploy(app_dir(PROBER).path());
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loopback_service_is_refused_to_a_guest_allowed_every_host() {
    let svc = internal_service().await;
    let s = prober();
    let port = svc.port;
    assert_refused(fetch(&s, &svc.url).await, "127.0.0.1");
    // The same address spelled otherwise.
    assert_refused(
        fetch(&s, &format!("http://[::ffff:127.0.0.1]:{port}/admin")).await,
        "IPv4-mapped 127.0.0.1",
    );
    assert_refused(
        fetch(&s, &format!("http://2130706433:{port}/admin")).await,
        "127.0.0.1 as one decimal number",
    );
    assert_refused(
        fetch(&s, &format!("http://[::1]:{port}/admin")).await,
        "::1",
    );
    assert_eq!(svc.hits.load(Ordering::SeqCst), 0, "a request got through");
    // The invocation's log says what was refused and what opens it.
    let logs = s.wait_for_log("prober", &["fetch"], "--allow-egress").await;
    assert!(logs.contains("127.0.0.1"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nodes_own_listeners_are_refused() {
    let s = prober();
    assert_eq!(s.get_text("/hello").await, (200, "hello".to_string()));
    // The control API (behind the admin token, but also the console and
    // the unauthenticated endpoints) and the app listener, where the call
    // would arrive from 127.0.0.1, past other apps' IP allow-lists.
    assert_refused(
        fetch(&s, &format!("{}/v1/status", s.control)).await,
        "the control API",
    );
    assert_refused(
        fetch(&s, &format!("{}/hello", s.url)).await,
        "the node's app listener",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_metadata_is_refused_at_once() {
    let s = prober();
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
    ] {
        let started = Instant::now();
        let got = fetch(&s, url).await;
        // Refused before any packet: no connect attempt to time out.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{url} took {:?}",
            started.elapsed()
        );
        assert_refused(got, url);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_resolving_to_loopback_is_refused() {
    let svc = internal_service().await;
    let s = prober();
    assert_refused(
        fetch(&s, &format!("http://localhost:{}/admin", svc.port)).await,
        "localhost",
    );
    assert_eq!(svc.hits.load(Ordering::SeqCst), 0, "a request got through");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_opens_ranges_with_allow_egress() {
    let svc = internal_service().await;
    // Comma-separated; the harness adds nothing when --allow-egress is given.
    let s = Server::start(&["--allow-egress", "10.0.0.0/8,127.0.0.0/8"]);
    s.deploy(app_dir(PROBER).path());
    assert_eq!(
        fetch(&s, &svc.url).await,
        (200, "internal secret".to_string()),
        "the allowed range is reached: the guard is not just broken networking"
    );
    assert_eq!(svc.hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        fetch(&s, &format!("http://localhost:{}/admin", svc.port)).await,
        (200, "internal secret".to_string()),
        "a name is connected to at the allowed address it resolved to"
    );
    // What the ranges do not cover stays refused.
    assert_refused(
        fetch(&s, "http://169.254.169.254/latest/meta-data/").await,
        "metadata outside the allowed ranges",
    );
}

#[test]
fn a_malformed_allow_egress_range_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--allow-egress",
            "10.0.0.0/33",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-egress") && err.contains("10.0.0.0/33") && err.contains("CIDR"),
        "{err}"
    );
}

/// Tenant A: an office-only route and a route limited per client address.
const OFFICE: &str = r#"
[app]
name = "office"

[functions.hello]
component = "@WASM@/hello.wasm"

[policies.office]
allow = ["203.0.113.0/24"]

[policies.metered]
rate_limit = { requests = 1, per = "1h", burst = 1, by = "ip" }

[[triggers.http]]
route = "/office"
function = "hello"
policy = "office"

[[triggers.http]]
route = "/metered"
function = "hello"
policy = "metered"
"#;

/// The status of `GET path` sent with these `X-Forwarded-For` lines.
async fn status(s: &Server, path: &str, forwarded: &[&str]) -> u16 {
    let mut rb = s.http.get(format!("{}{path}", s.url));
    for f in forwarded {
        rb = rb.header("x-forwarded-for", *f);
    }
    rb.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_forwarded_for_changes_nothing_without_a_trusted_proxy() {
    let s = Server::start_guarded(&[]);
    s.deploy(app_dir(OFFICE).path());
    assert_eq!(status(&s, "/office", &[]).await, 403);
    assert_eq!(status(&s, "/office", &["203.0.113.7"]).await, 403);
    assert_eq!(status(&s, "/metered", &["198.51.100.1"]).await, 200);
    assert_eq!(
        status(&s, "/metered", &["198.51.100.2"]).await,
        429,
        "a forged address got a rate-limit bucket of its own"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_forwards_the_client_address() {
    let s = Server::start_guarded(&[
        "--trusted-proxy",
        "192.0.2.0/24",
        "--trusted-proxy",
        "127.0.0.1/32",
    ]);
    s.deploy(app_dir(OFFICE).path());
    // The proxy's own address is not in the office.
    assert_eq!(status(&s, "/office", &[]).await, 403);
    assert_eq!(status(&s, "/office", &["203.0.113.7"]).await, 200);
    // The right-most address that is not a trusted proxy is the client: an
    // address a client wrote itself, to the left, counts for nothing.
    assert_eq!(
        status(&s, "/office", &["203.0.113.7, 198.51.100.9"]).await,
        403
    );
    assert_eq!(
        status(&s, "/office", &["198.51.100.9, 203.0.113.7"]).await,
        200
    );
    assert_eq!(
        status(&s, "/office", &["203.0.113.7, 192.0.2.10"]).await,
        200
    );
    assert_eq!(
        status(&s, "/office", &["198.51.100.9", "203.0.113.7"]).await,
        200
    );
    assert_eq!(
        status(&s, "/office", &["203.0.113.7", "198.51.100.9"]).await,
        403
    );
    // Rate limits count clients, not the proxy.
    assert_eq!(status(&s, "/metered", &["198.51.100.1"]).await, 200);
    assert_eq!(status(&s, "/metered", &["198.51.100.2"]).await, 200);
    assert_eq!(status(&s, "/metered", &["198.51.100.1"]).await, 429);
}
