//! Several Nimbus nodes sharing one PostgreSQL database and one shared
//! directory: changes through any node reach the others, and a node killed
//! with `kill -9` loses no accepted event.
//!
//! These need PostgreSQL whichever backend the rest of the suite runs on:
//! the server named by `NIMBUS_TEST_DATABASE` or `NIMBUS_CLUSTER_DATABASE`,
//! else a private one started with `scripts/postgres` (left running).

mod common;

use common::{Relay, Server, app_dir, repo, s3_key, s3_url};
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A PostgreSQL server's admin URL.
fn admin_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        for var in ["NIMBUS_TEST_DATABASE", "NIMBUS_CLUSTER_DATABASE"] {
            if let Ok(u) = std::env::var(var)
                && !u.is_empty()
            {
                return u;
            }
        }
        let dir = std::env::temp_dir().join("nimbus-cluster-pg");
        let out = std::process::Command::new(repo().join("scripts/postgres"))
            .arg("start")
            .arg(&dir)
            .arg("25433")
            .output()
            .expect("running scripts/postgres");
        assert!(
            out.status.success(),
            "starting PostgreSQL failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
    .clone()
}

/// A new database for one cluster.
fn cluster_database() -> String {
    common::new_database(&admin_url())
}

/// The nodes of a cluster: each has its own data dir; all share the
/// database and the shared dir.
struct Cluster {
    db: String,
    shared: tempfile::TempDir,
    dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            db: cluster_database(),
            shared: tempfile::tempdir().unwrap(),
            dirs: Vec::new(),
        }
    }

    fn node(&mut self, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        // The test harness passes this database to `nimbus up`.
        std::fs::write(dir.path().join("test-database-url"), &self.db).unwrap();
        let shared = self.shared.path().to_str().unwrap().to_string();
        let mut all = vec!["--shared-dir", shared.as_str()];
        all.extend_from_slice(args);
        let s = Server::start_in(dir.path(), &all);
        self.dirs.push(dir);
        s
    }
}

/// Polls `GET path` on a node until its body satisfies `pred`; how long it took.
async fn until_served(s: &Server, path: &str, pred: impl Fn(u16, &str) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let (st, body) = s.get_text(path).await;
        if pred(st, &body) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path} on {} never changed: last {st} {body}",
            s.url
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn greeting_app(greeting: &str) -> tempfile::TempDir {
    app_dir(&format!(
        r#"
[app]
name = "c"

[variables]
mode = "initial"

[functions.echo]
component = "@WASM@/echo.wasm"
env = {{ GREETING = "{greeting}" }}

[functions.data]
component = "@WASM@/data.wasm"

[[triggers.http]]
route = "/hi"
function = "echo"

[[triggers.http]]
route = "/config/{{key}}"
function = "data"
"#
    ))
}

fn greeting(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["greeting"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_through_one_node_reach_the_others() {
    let mut cluster = Cluster::new();
    let a = cluster.node(&[]);
    let b = cluster.node(&[]);

    // Both nodes migrated the schema at start (taking turns); nothing is left.
    let out = a.cli_ok(&["migrate", "--database", &cluster.db]);
    assert!(out.contains("the schema is up to date"), "{out}");

    // A deploy through A: B serves it, LISTEN/NOTIFY makes it prompt.
    a.deploy(greeting_app("one").path());
    let took = until_served(&b, "/hi", |st, body| st == 200 && greeting(body) == "one").await;
    eprintln!("deploy through A served by B after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A new revision through B, a rollback through A.
    b.deploy(greeting_app("two").path());
    until_served(&a, "/hi", |_, body| greeting(body) == "two").await;
    a.cli_ok(&["rollback", "c"]);
    until_served(&b, "/hi", |_, body| greeting(body) == "one").await;
    until_served(&a, "/hi", |_, body| greeting(body) == "one").await;
    let revs: Vec<nimbus_api::RevisionSummary> =
        serde_json::from_value(b.api("/v1/apps/c/revisions").await).unwrap();
    assert_eq!(revs.len(), 2, "{revs:?}");
    let active: Vec<i64> = revs.iter().filter(|r| r.active).map(|r| r.number).collect();
    assert_eq!(
        active,
        [1],
        "the rollback through A activated revision 1 for B too"
    );

    // Configuration set through B applies on A without a new revision.
    until_served(&a, "/config/mode", |_, body| body == "initial").await;
    b.cli_ok(&["config", "set", "c", "mode", "changed"]);
    until_served(&a, "/config/mode", |_, body| body == "changed").await;

    // An API key created through A works on B; revoked through B, A refuses it.
    let out = a.cli_ok(&["keys", "create", "ops", "--scope", "admin"]);
    let key = out.lines().next().unwrap().trim().to_string();
    let with_key = |s: &Server| {
        let (http, url) = (s.http.clone(), format!("{}/v1/apps", s.control));
        let key = key.clone();
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let started = Instant::now();
    while with_key(&b).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B never accepted the key"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.cli_ok(&["keys", "revoke", "ops"]);
    let started = Instant::now();
    while with_key(&a).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "A still accepts a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A deleted app is gone everywhere.
    b.cli_ok(&["delete", "c"]);
    until_served(&a, "/hi", |st, _| st == 404).await;
}

/// Slow requests at once, `n` to each node; how many were served (the rest
/// get 429 once the admission wait runs out).
async fn served_at_once(nodes: &[&Server], n: usize) -> usize {
    let mut calls = Vec::new();
    for s in nodes {
        for _ in 0..n {
            let (http, url) = (s.http.clone(), format!("{}/slow/sleep?ms=1500", s.url));
            calls.push(tokio::spawn(async move {
                http.get(url).send().await.unwrap().status().as_u16()
            }));
        }
    }
    let mut ok = 0;
    for c in calls {
        match c.await.unwrap() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_wide_concurrency_limit_holds_across_nodes() {
    let mut cluster = Cluster::new();
    let args = ["--admission-timeout-ms", "300"];
    let a = cluster.node(&args);
    let b = cluster.node(&args);
    let v = b.api("/v1/cluster").await;
    assert_eq!(v["backend"], "postgres", "{v:#}");
    let live = |v: &Value| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["live"] == true)
            .count()
    };
    assert_eq!(live(&v), 2, "{v:#}");
    let app = |scope: &str| {
        app_dir(&format!(
            r#"
[app]
name = "limits"

[functions.slow]
component = "@WASM@/chaos.wasm"
max_concurrency = 3
concurrency_scope = "{scope}"

[[triggers.http]]
route = "/slow/{{what}}"
function = "slow"
"#
        ))
    };
    // Per node (the default): 3 on each.
    a.deploy(app("node").path());
    until_served(&b, "/slow/count", |st, _| st == 200).await;
    assert_eq!(served_at_once(&[&a, &b], 5).await, 6);
    // Cluster-wide: 3 in all, split 2 + 1 between the two nodes.
    a.deploy(app("cluster").path());
    let started = Instant::now();
    while b.api("/v1/apps/limits").await["active_revision"] != 2 {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(served_at_once(&[&a, &b], 5).await, 3);
    // One node left: it takes the whole limit.
    drop(b);
    let started = Instant::now();
    while served_at_once(&[&a], 5).await != 3 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the surviving node never took over the dead node's share"
        );
    }
}

/// Three nodes, one killed with `kill -9` while 10,000 queued events and
/// steady HTTP traffic are in flight: the other two deliver every event,
/// HTTP fails only on the dead node, and the schedule fires once per tick.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_flight_loses_no_event() {
    const N: usize = 10_000;
    let relay = Relay::start().await;
    let mut cluster = Cluster::new();
    let nodes = [cluster.node(&[]), cluster.node(&[]), cluster.node(&[])];
    let manifest = format!(
        r#"
[app]
name = "f"

[functions.work]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "{relay}" }}
allowed_outbound_hosts = ["127.0.0.1:*"]
timeout_ms = 2000

[functions.tick]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "{relay}" }}
allowed_outbound_hosts = ["127.0.0.1:*"]

[functions.hello]
component = "@WASM@/hello.wasm"

[queues.jobs]

[[triggers.queue]]
queue = "jobs"
function = "work"
batch_size = 16
max_concurrency = 16
visibility_timeout = "3s"

[[triggers.schedule]]
every = "1s"
function = "tick"

[[triggers.http]]
route = "/hello"
function = "hello"
"#,
        relay = relay.url
    );
    let app = app_dir(&manifest);
    nodes[0].deploy(app.path());
    for n in &nodes {
        until_served(n, "/hello", |st, _| st == 200).await;
    }

    // Steady HTTP load on every node, counting failures per node.
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let (url, http) = (format!("{}/hello", n.url), reqwest::Client::new());
        let (stop, killed) = (stop.clone(), killed.clone());
        load.push(tokio::spawn(async move {
            let (ok, failed_live, failed_dead) =
                (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    // Failed on the node that was killed (before or while
                    // this request was on it).
                    _ if i == 2 && killed.load(Ordering::SeqCst) => {
                        failed_dead.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => {
                        failed_live.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (
                ok.into_inner(),
                failed_live.into_inner(),
                failed_dead.into_inner(),
            )
        }));
    }

    // 10,000 events, spread over the three nodes.
    let http = reqwest::Client::new();
    let token = nodes[0].token();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}/v1/apps/f/queues/jobs/messages", n.control))
        .collect();
    let mut accepted: Vec<String> = futures::stream::iter(0..N)
        .map(|i| {
            let (http, url, token) = (http.clone(), urls[i % 3].clone(), token.clone());
            async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .body(format!("event-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), N);

    // Kill the third node while the events are being delivered.
    let [n0, n1, mut n2] = nodes;
    let deliveries_at_kill = relay.count();
    killed.store(true, Ordering::SeqCst);
    n2.kill();
    assert!(
        deliveries_at_kill < N,
        "the kill must happen while events are still being delivered ({deliveries_at_kill} of {N} done)"
    );

    let seen = relay
        .wait_until(120, "every accepted event", |s| {
            let ids: HashSet<&str> = s
                .iter()
                .filter(|r| r["type"] != "dev.nimbus.schedule.tick")
                .map(|r| r["id"].as_str().unwrap())
                .collect();
            accepted.iter().all(|a| ids.contains(a.as_str()))
        })
        .await;
    // A few more ticks after the kill, on the surviving nodes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_node = Vec::new();
    for l in load {
        per_node.push(l.await.unwrap());
    }
    let seen_all = relay.seen();

    let mut runs: HashMap<&str, usize> = HashMap::new();
    for r in seen
        .iter()
        .filter(|r| r["type"] != "dev.nimbus.schedule.tick")
    {
        *runs.entry(r["id"].as_str().unwrap()).or_default() += 1;
    }
    let duplicates: usize = runs.values().map(|n| n - 1).sum();
    assert_eq!(runs.len(), N, "no other events appeared");

    // Each tick time fired once: one event per tick, whichever node fired it
    // (an event redelivered after the kill keeps its id).
    let mut ticks: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for r in seen_all
        .iter()
        .filter(|r| r["type"] == "dev.nimbus.schedule.tick")
    {
        ticks
            .entry(r["time"].as_str().unwrap())
            .or_default()
            .insert(r["id"].as_str().unwrap());
    }
    assert!(ticks.len() >= 3, "the schedule kept firing: {ticks:?}");
    for (time, ids) in &ticks {
        assert_eq!(ids.len(), 1, "tick {time} fired {} times", ids.len());
    }

    eprintln!(
        "failover: {N} events accepted by 3 nodes, {deliveries_at_kill} delivered when node 3 was killed; \
         all {N} delivered by the other two ({duplicates} delivered more than once); \
         {} schedule ticks, each fired once; HTTP (ok, failed on live nodes, failed on the dead node) per node: {per_node:?}",
        ticks.len()
    );
    for (i, (ok, failed_live, _)) in per_node.iter().enumerate() {
        assert!(*ok > 0, "node {i} served HTTP");
        if i < 2 {
            assert_eq!(*failed_live, 0, "node {i} is alive: no HTTP errors");
        }
    }
    drop((n0, n1));
}

#[test]
fn a_database_that_cannot_be_used_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let up = |url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--database",
                url,
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url} was accepted");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = up("mysql://root@127.0.0.1/nimbus");
    assert!(err.contains("is not a PostgreSQL URL"), "{err}");
    assert!(
        err.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        "{err}"
    );
    // Nothing listens on port 1; the password never appears in the message.
    let err = up("postgres://nimbus:hunter2@127.0.0.1:1/nimbus");
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://nimbus:***@127.0.0.1:1/nimbus"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let err = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "migrate",
            "--database",
            "postgres://nimbus@127.0.0.1:1/nimbus",
        ])
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("check that the server runs"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}

/// One boto3 request (`tests/s3/probe.py`): the status and S3 error code.
fn s3_probe(url: &str, key: &(String, String), check: &str, args: &[&str]) -> (u64, String) {
    let bin = repo().join("target/pyenv/bin/python");
    assert!(bin.exists(), "boto3 venv missing: run ./scripts/test");
    let out = std::process::Command::new(bin)
        .arg(repo().join("crates/nimbus/tests/s3/probe.py"))
        .args([url, &key.0, &key.1, check])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    (
        v["status"].as_u64().unwrap(),
        v["code"].as_str().unwrap_or("").to_string(),
    )
}

/// What one node revokes or deletes, the others refuse at once: an S3 key
/// (no node caches them), an API key (within the generation's
/// notification), and a deleted app's routes and S3 keys.
#[tokio::test(flavor = "multi_thread")]
async fn revoked_keys_and_deleted_apps_are_refused_on_every_node() {
    let mut cluster = Cluster::new();
    let a = cluster.node(&["--s3-listen", "127.0.0.1:0"]);
    let b = cluster.node(&["--s3-listen", "127.0.0.1:0"]);
    a.deploy(greeting_app("one").path());
    until_served(&b, "/hi", |st, _| st == 200).await;
    let (s3_a, s3_b) = (s3_url(&a), s3_url(&b));
    let kept = s3_key(&a, "c");
    let doomed = s3_key(&a, "c");
    assert_eq!(s3_probe(&s3_a, &kept, "mb", &["c-data"]).0, 200);
    assert_eq!(s3_probe(&s3_b, &kept, "put", &["c-data", "k", "v"]).0, 200);
    assert_eq!(s3_probe(&s3_b, &doomed, "get", &["c-data", "k"]).0, 200);
    let out = a.cli_ok(&[
        "keys",
        "create",
        "c-logs",
        "--app",
        "c",
        "--scope",
        "read-logs",
    ]);
    let api_key = out.lines().next().unwrap().trim().to_string();
    let with_key = |s: &Server| {
        let (http, url) = (s.http.clone(), format!("{}/v1/apps/c/functions", s.control));
        let key = api_key.clone();
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let started = Instant::now();
    while with_key(&b).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B never accepted the key"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Revoked through A: B refuses the S3 key on its next request, and the
    // API key within 2 s.
    a.cli_ok(&["keys", "revoke", "--s3", &doomed.0]);
    a.cli_ok(&["keys", "revoke", "c-logs"]);
    let revoked = Instant::now();
    assert_eq!(
        s3_probe(&s3_b, &doomed, "get", &["c-data", "k"]),
        (403, "InvalidAccessKeyId".to_string()),
        "B still accepts a revoked S3 key"
    );
    while with_key(&b).await != 401 {
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "B still accepts a revoked API key after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "revocations through A refused by B after {:?}",
        revoked.elapsed()
    );
    assert_eq!(
        s3_probe(&s3_b, &kept, "get", &["c-data", "k"]).0,
        200,
        "the other key"
    );

    // Deleted through A: gone on B — its routes, its API, its S3 keys.
    a.cli_ok(&["delete", "c"]);
    let took = until_served(&b, "/hi", |st, _| st == 404).await;
    assert!(
        took < Duration::from_secs(2),
        "B served the deleted app for {took:?}"
    );
    assert_eq!(
        s3_probe(&s3_b, &kept, "get", &["c-data", "k"]),
        (403, "InvalidAccessKeyId".to_string()),
        "B accepts the deleted app's S3 key"
    );
    let r = b
        .http
        .get(format!("{}/v1/apps/c", b.control))
        .bearer_auth(b.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "B still knows the deleted app");
    // A new app of the same name, through B, starts empty on A.
    b.deploy(greeting_app("two").path());
    until_served(&a, "/hi", |st, body| st == 200 && greeting(body) == "two").await;
    let fresh = s3_key(&b, "c");
    let (st, code) = s3_probe(&s3_a, &fresh, "get", &["c-data", "k"]);
    assert_eq!(
        (st, code.as_str()),
        (404, "NoSuchBucket"),
        "the old bucket on A"
    );
}

/// Polls until `pred` holds for the status of `GET /v1/apps/APP/auth/me` on
/// a node with this access token; how long it took.
async fn until_me(s: &Server, app: &str, token: &str, pred: impl Fn(u16) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let st = s
            .http
            .get(format!("{}/v1/apps/{app}/auth/me", s.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if pred(st) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/auth/me on {} stayed {st}",
            s.url
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_session_is_refused_on_every_node() {
    let mut c = Cluster::new();
    let a = c.node(&[]);
    let b = c.node(&[]);
    let dir = app_dir(
        r#"
[app]
name = "pool"

[auth]

[functions.hello]
component = "@WASM@/hello.wasm"
"#,
    );
    a.deploy(dir.path());
    let r = a
        .http
        .post(format!("{}/v1/apps/pool/auth/signup", a.url))
        .json(&serde_json::json!({ "email": "n@pool.test", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let session: Value = r.json().await.unwrap();
    let token = session["access_token"].as_str().unwrap();
    // B verifies A's tokens (the signing keys are shared).
    until_me(&b, "pool", token, |st| st == 200).await;
    let r = a
        .http
        .post(format!("{}/v1/apps/pool/auth/logout", a.url))
        .json(&serde_json::json!({ "refresh_token": session["refresh_token"], "everywhere": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let took = until_me(&a, "pool", token, |st| st == 401).await;
    assert!(
        took < Duration::from_millis(100),
        "A accepted it for {took:?}"
    );
    let took = until_me(&b, "pool", token, |st| st == 401).await;
    assert!(
        took < Duration::from_secs(2),
        "B accepted the ended session's token for {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_connections_are_reached_from_every_node() {
    use common::ws::{ask, closed_with, connect, next_binary, next_text};
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut c = Cluster::new();
    let a = c.node(&[]);
    let b = c.node(&[]);
    let dir = app_dir(
        r#"
[app]
name = "chat"

[functions.chat]
component = "@WASM@/chat.wasm"

[[triggers.websocket]]
route = "/rooms/{room}"
connect = "chat"
message = "chat"
disconnect = "chat"
"#,
    );
    a.deploy(dir.path());
    let rival = app_dir(
        r#"
[app]
name = "rival"

[functions.chat]
component = "@WASM@/chat.wasm"

[[triggers.websocket]]
route = "/rival/{room}"
connect = "chat"
message = "chat"
"#,
    );
    a.deploy(rival.path());
    until_served(&b, "/rooms/lobby?name=x", |st, _| st == 426).await;
    until_served(&b, "/rival/lobby?name=x", |st, _| st == 426).await;

    // ann is held by A, bob by B, both in the lobby's channel.
    let mut ann = connect(&a, "/rooms/lobby?name=ann").await;
    let mut bob = connect(&b, "/rooms/lobby?name=bob").await;
    let ann_id = ask(&mut ann, "whoami").await.replace("id:", "");
    let bob_id = ask(&mut bob, "whoami").await.replace("id:", "");

    // Published on A, received on B (and on A).
    ann.send(Message::text("say across")).await.unwrap();
    assert_eq!(next_text(&mut ann).await, "lobby ann: across");
    assert_eq!(next_text(&mut bob).await, "lobby ann: across");
    bob.send(Message::text("say back")).await.unwrap();
    assert_eq!(next_text(&mut bob).await, "lobby bob: back");
    assert_eq!(next_text(&mut ann).await, "lobby bob: back");

    // A lists both, and says which node holds each.
    let listed = a.api("/v1/apps/chat/connections").await;
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    let bob_row = rows.iter().find(|r| r["id"] == bob_id.as_str()).unwrap();
    let ann_row = rows.iter().find(|r| r["id"] == ann_id.as_str()).unwrap();
    assert_ne!(bob_row["node"], ann_row["node"], "{listed}");
    assert_eq!(bob_row["messages_in"], Value::Null, "only B counts them");
    assert_eq!(ann_row["messages_in"], 2);

    // A's control API and A's functions reach bob on B: a send, a large
    // publish (past a notification's 8,000 bytes), a binary one, a close.
    let r = a
        .api_post(
            &format!("/v1/apps/chat/connections/{bob_id}/messages"),
            &[("content-type", "text/plain")],
            "via A",
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(next_text(&mut bob).await, "via A");
    assert_eq!(ask(&mut ann, &format!("tell {bob_id} psst")).await, "ok");
    assert_eq!(next_text(&mut bob).await, "psst");
    assert_eq!(ask(&mut bob, &format!("tell {ann_id} back")).await, "ok");
    assert_eq!(next_text(&mut ann).await, "back");

    // A subscribes bob, on B, to a channel, and publishes there: he gets
    // it (B applies what A relays in the order A committed it); after A
    // unsubscribes him, he no longer does.
    assert_eq!(ask(&mut ann, &format!("add {bob_id} extra")).await, "ok");
    assert_eq!(ask(&mut ann, "shout extra one").await, "ok");
    assert_eq!(next_text(&mut bob).await, "one");
    assert_eq!(ask(&mut ann, &format!("drop {bob_id} extra")).await, "ok");
    assert_eq!(ask(&mut ann, "shout extra two").await, "ok");
    let r = a
        .api_post(
            &format!("/v1/apps/chat/connections/{bob_id}/messages"),
            &[("content-type", "text/plain")],
            "after two",
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(next_text(&mut bob).await, "after two");

    // Another app, through either node, reaches none of it: not bob on B
    // from A, not ann on A from B, not the lobby's channel.
    let mut rex = connect(&a, "/rival/lobby?name=rex").await;
    let mut ria = connect(&b, "/rival/lobby?name=ria").await;
    for (ws, target) in [(&mut rex, &bob_id), (&mut ria, &ann_id)] {
        for attempt in [
            format!("tell {target} gotcha"),
            format!("add {target} stolen"),
            format!("kick {target}"),
        ] {
            let answer = ask(ws, &attempt).await;
            assert!(answer.contains("NotOpen("), "{attempt}: {answer}");
        }
    }
    // (rex is in the rival's lobby: he hears it first, then the answer.)
    assert_eq!(
        ask(&mut rex, "shout room:lobby from rival").await,
        "from rival"
    );
    assert_eq!(next_text(&mut rex).await, "ok");
    let r = a
        .api_post(
            &format!("/v1/apps/chat/connections/{bob_id}/messages"),
            &[("content-type", "text/plain")],
            "sentinel",
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        next_text(&mut bob).await,
        "sentinel",
        "nothing from the rival app first"
    );
    let rival_list = a.api("/v1/apps/rival/connections").await;
    assert_eq!(rival_list.as_array().unwrap().len(), 2, "{rival_list}");
    let big = "b".repeat(20_000);
    let r = a
        .api_post(
            "/v1/apps/chat/channels/room:lobby/messages",
            &[("content-type", "text/plain")],
            big.clone(),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(next_text(&mut bob).await, big);
    assert_eq!(next_text(&mut ann).await, big);
    let r = a
        .api_post(
            "/v1/apps/chat/channels/room:lobby/messages",
            &[("content-type", "application/octet-stream")],
            vec![0u8, 159, 146, 150],
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(next_binary(&mut bob).await, [0u8, 159, 146, 150]);
    assert_eq!(next_binary(&mut ann).await, [0u8, 159, 146, 150]);
    // A large binary one, through the table, from B this time.
    let bytes: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = b
        .api_post(
            "/v1/apps/chat/channels/room:lobby/messages",
            &[("content-type", "application/octet-stream")],
            bytes.clone(),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(next_binary(&mut ann).await, bytes);
    assert_eq!(next_binary(&mut bob).await, bytes);
    assert_eq!(ask(&mut ann, &format!("kick {bob_id}")).await, "ok");
    assert_eq!(
        closed_with(&mut bob).await,
        (4001.into(), "kicked".to_string())
    );
    b.wait_for_log(
        "chat",
        &["chat"],
        &format!("disconnect {bob_id} 4001 kicked"),
    )
    .await;

    // Once B forgot it, a send through A fails clearly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = a
            .api_post(
                &format!("/v1/apps/chat/connections/{bob_id}/messages"),
                &[("content-type", "text/plain")],
                "late",
            )
            .await;
        if r.status() == 404 {
            assert!(r.text().await.unwrap().contains("is not open"));
            break;
        }
        assert!(Instant::now() < deadline, "still {}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
