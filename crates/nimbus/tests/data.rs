//! Data services end to end: the `data` example guest using wasi:keyvalue,
//! wasi:config and nimbus:data against a real server, plus the REST API and
//! the CLI.

mod common;

use common::{Server, app_dir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const APP: &str = r#"
[app]
name = "d"

[kv.counters]

[kv.sessions]
max_value_kb = 1

[kv.private]

[collections.leaderboard]
indexes = [["-score"], ["player", "-finished_at"]]

[collections.games]

[variables]
greeting = "hello"
mode = "app"

[functions.api]
component = "@WASM@/data.wasm"
kv = ["counters", "sessions"]
collections = ["leaderboard"]
config = { mode = "function" }
max_concurrency = 64

[functions.other]
component = "@WASM@/data.wasm"
"#;

/// Calls the `api` (or another) function directly with a method, path and body.
async fn call(s: &Server, function: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = s
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}/v1/apps/d/functions/{function}/invoke{path}", s.control),
        )
        .bearer_auth(s.token())
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn start() -> Server {
    let s = Server::in_process(&[]);
    s.deploy(app_dir(APP).path());
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_from_guests_counters_cas_ttl_grants() {
    let s = start().await;

    // 50 concurrent increments end exactly right.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s2 = (s.http.clone(), s.control.clone(), s.token());
        tasks.push(tokio::spawn(async move {
            let r =
                s2.0.post(format!(
                    "{}/v1/apps/d/functions/api/invoke/incr/counters/hits",
                    s2.1
                ))
                .bearer_auth(&s2.2)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap().parse::<u64>().unwrap()
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap());
    }
    assert_eq!(
        seen,
        (1..=50).collect::<BTreeSet<u64>>(),
        "each increment saw its own value"
    );
    assert_eq!(s.cli_ok(&["kv", "get", "d/counters", "hits"]).trim(), "50");

    // Compare-and-swap: absent -> v1 succeeds once; a stale expected value conflicts.
    assert_eq!(
        call(&s, "api", "POST", "/cas/sessions/lock", "v1").await,
        (200, "swapped".into())
    );
    assert_eq!(
        call(&s, "api", "POST", "/cas/sessions/lock", "v2").await.0,
        409
    );
    assert_eq!(
        call(&s, "api", "POST", "/cas/sessions/lock?expected=v0", "v2")
            .await
            .0,
        409
    );
    assert_eq!(
        call(&s, "api", "POST", "/cas/sessions/lock?expected=v1", "v2")
            .await
            .0,
        200
    );
    assert_eq!(
        call(&s, "api", "GET", "/kv/sessions/lock", "").await,
        (200, "v2".into())
    );

    // TTL expiry.
    assert_eq!(
        call(&s, "api", "PUT", "/kv/sessions/tmp?ttl_ms=300", "soon gone")
            .await
            .0,
        204
    );
    assert_eq!(call(&s, "api", "GET", "/kv/sessions/tmp", "").await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(call(&s, "api", "GET", "/kv/sessions/tmp", "").await.0, 404);

    // Batch operations.
    let (st, body) = call(&s, "api", "GET", "/batch/counters", "").await;
    assert_eq!(
        (st, body.as_str()),
        (200, "a=1,b=2,- exists-after-delete=false")
    );

    // Limits and grants.
    let (st, body) = call(&s, "api", "PUT", "/kv/sessions/big", &"x".repeat(2048)).await;
    assert_eq!(st, 500);
    assert!(body.contains("over the limit of 1024 bytes"), "{body}");
    assert_eq!(
        call(&s, "api", "GET", "/kv/private/x", "").await,
        (403, "access-denied".into())
    );
    assert_eq!(
        call(&s, "other", "GET", "/incr/counters/hits", "").await,
        (403, "access-denied".into())
    );
    assert_eq!(
        call(&s, "api", "GET", "/kv/nope/x", "").await,
        (404, "no-such-store".into())
    );
    let (st, body) = call(
        &s,
        "api",
        "PUT",
        &format!("/kv/sessions/{}", "k".repeat(300)),
        "v",
    )
    .await;
    assert_eq!(st, 500);
    assert!(body.contains("keys are 1-256 bytes"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_over_rest_and_cli_with_prefix_pages() {
    let s = start().await;
    for i in 0..25 {
        s.cli_ok(&[
            "kv",
            "set",
            "d/sessions",
            &format!("user:{i:02}"),
            &format!("u{i}"),
        ]);
    }
    s.cli_ok(&["kv", "set", "d/sessions", "other", "x"]);
    // Pages of 10 by prefix, through the cursor.
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/apps/d/kv/sessions?prefix=user:&limit=10".to_string();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let v = s.api(&path).await;
        keys.extend(
            v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string()),
        );
        match v["cursor"].as_str() {
            Some(c) => after = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(keys.len(), 25);
    assert_eq!(keys[0], "user:00");
    assert_eq!(keys[24], "user:24");
    // The guest sees the same store, and pages the same way.
    let (st, body) = call(&s, "api", "GET", "/list/sessions?prefix=user:&limit=20", "").await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 20);
    assert_eq!(v["cursor"], "user:19");
    // CLI: ls, incr, ttl, del; REST errors.
    let out = s.cli_ok(&["kv", "ls", "d/sessions", "--prefix", "user:2"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("user:2")).count(),
        5,
        "{out}"
    );
    assert_eq!(
        s.cli_ok(&["kv", "incr", "d/counters", "n", "--by", "5"])
            .trim(),
        "5"
    );
    assert_eq!(
        s.cli_ok(&["kv", "incr", "d/counters", "n", "--by", "-2"])
            .trim(),
        "3"
    );
    let err = s.cli_err(&["kv", "incr", "d/sessions", "other"]);
    assert!(err.contains("not an integer"), "{err}");
    s.cli_ok(&["kv", "set", "d/sessions", "t", "x", "--ttl", "200ms"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.cli_err(&["kv", "get", "d/sessions", "t"])
            .contains("no key")
    );
    s.cli_ok(&["kv", "del", "d/sessions", "other"]);
    let err = s.cli_err(&["kv", "get", "d/nope", "x"]);
    assert!(err.contains("has no KV store \"nope\""), "{err}");
    let err = s.cli_err(&["kv", "set", "d/sessions", "big", &"y".repeat(2000)]);
    assert!(err.contains("413"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_leaderboard_and_optimistic_concurrency() {
    let s = start().await;
    // 10,000 results, imported in one bulk write.
    let docs: Vec<Value> = (0..10_000)
        .map(|i| {
            serde_json::json!({
                "id": format!("g{i:05}"),
                "player": format!("p{}", i % 97),
                "score": (i * 7919) % 100_003,
                "finished_at": 1_700_000_000 + i,
            })
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_string(&docs).unwrap()).unwrap();
    let out = s.cli_ok(&[
        "docs",
        "import",
        "d/leaderboard",
        file.path().to_str().unwrap(),
    ]);
    assert!(out.contains("10000 document(s) written"), "{out}");
    let mut want: Vec<i64> = docs.iter().map(|d| d["score"].as_i64().unwrap()).collect();
    want.sort_unstable_by(|a, b| b.cmp(a));

    // Top 10 from a guest.
    let q = r#"{"order_by": [["score", "desc"]], "limit": 10}"#;
    let (st, body) = call(&s, "api", "POST", "/query/leaderboard", q).await;
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let top: Vec<i64> = v["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["body"]["score"].as_i64().unwrap())
        .collect();
    assert_eq!(top, want[..10]);
    assert!(v["cursor"].is_string());
    // Over REST, with the plan: the declared index serves it.
    let r = s
        .api_post("/v1/apps/d/docs/leaderboard/_query?explain=true", &[], q)
        .await;
    let v: Value = r.json().await.unwrap();
    let plan = v["plan"].as_str().unwrap();
    assert!(plan.contains("docs_ix_"), "the score index is used: {plan}");
    assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
    // Filters, `in`, and the second page.
    let q = r#"{"where": [["player", "in", ["p1", "p2"]], ["score", ">=", 50000]], "order_by": [["finished_at", "desc"]], "limit": 5}"#;
    let v: Value = s
        .api_post("/v1/apps/d/docs/leaderboard/_query", &[], q)
        .await
        .json()
        .await
        .unwrap();
    let page = v["documents"].as_array().unwrap();
    assert_eq!(page.len(), 5);
    assert!(page.iter().all(
        |d| ["p1", "p2"].contains(&d["body"]["player"].as_str().unwrap())
            && d["body"]["score"].as_i64().unwrap() >= 50_000
    ));
    let cursor = v["cursor"].as_str().unwrap();
    let q2 = q.replace(
        "\"limit\": 5",
        &format!("\"limit\": 5, \"cursor\": \"{cursor}\""),
    );
    let v2: Value = s
        .api_post("/v1/apps/d/docs/leaderboard/_query", &[], q2)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        v2["documents"][0]["body"]["finished_at"].as_i64()
            < page[4]["body"]["finished_at"].as_i64()
    );

    // Optimistic concurrency from a guest (409) and over REST (412).
    let (st, body) = call(
        &s,
        "api",
        "PUT",
        "/docs/leaderboard/me?expected=0",
        r#"{"score": 1}"#,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"version\":1"), "{body}");
    let (st, body) = call(
        &s,
        "api",
        "PUT",
        "/docs/leaderboard/me?expected=0",
        r#"{"score": 2}"#,
    )
    .await;
    assert_eq!(st, 409);
    assert!(body.contains("already exists"), "{body}");
    let (st, _) = call(
        &s,
        "api",
        "PATCH",
        "/docs/leaderboard/me?expected=1",
        r#"{"name": "me"}"#,
    )
    .await;
    assert_eq!(st, 200);
    let r = s
        .http
        .put(format!("{}/v1/apps/d/docs/leaderboard/me", s.url))
        .bearer_auth(s.token())
        .header("if-match", "1")
        .body(r#"{"score": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let text = r.text().await.unwrap();
    assert!(text.contains("is at version 2, not 1"), "{text}");
    let out = s.cli_ok(&["docs", "get", "d/leaderboard", "me"]);
    assert!(
        out.contains("\"name\": \"me\"") && out.contains("\"version\": 2"),
        "{out}"
    );
    let err = s.cli_err(&[
        "docs",
        "put",
        "d/leaderboard",
        "me",
        r#"{"score": 4}"#,
        "--if-version",
        "7",
    ]);
    assert!(err.contains("not 7"), "{err}");

    // Not granted, not declared, malformed.
    let (st, body) = call(&s, "api", "GET", "/docs/games/x", "").await;
    assert_eq!(st, 404);
    assert!(body.contains("not granted"), "{body}");
    let (st, body) = call(
        &s,
        "api",
        "POST",
        "/query/leaderboard",
        r#"{"where": [["score", "~", 1]]}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("unknown operator"), "{body}");
    let (st, _) = call(&s, "api", "PUT", "/docs/leaderboard/bad", "[1, 2]").await;
    assert_eq!(st, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_and_secrets() {
    let s = start().await;
    assert_eq!(
        call(&s, "api", "GET", "/config/greeting", "").await,
        (200, "hello".into())
    );
    assert_eq!(
        call(&s, "api", "GET", "/config/mode", "").await,
        (200, "function".into())
    );
    assert_eq!(
        call(&s, "other", "GET", "/config/mode", "").await,
        (200, "app".into())
    );

    // A change applies to the next request, without a new revision.
    s.cli_ok(&["config", "set", "d", "greeting", "bonjour"]);
    assert_eq!(
        call(&s, "api", "GET", "/config/greeting", "").await,
        (200, "bonjour".into())
    );
    s.cli_ok(&[
        "config",
        "set",
        "d",
        "greeting",
        "hej",
        "--function",
        "other",
    ]);
    assert_eq!(
        call(&s, "other", "GET", "/config/greeting", "").await,
        (200, "hej".into())
    );
    assert_eq!(
        call(&s, "api", "GET", "/config/greeting", "").await,
        (200, "bonjour".into())
    );
    let v = s.api("/v1/apps/d").await;
    assert_eq!(v["active_revision"], 1);
    s.cli_ok(&["config", "unset", "d", "greeting"]);
    assert_eq!(
        call(&s, "api", "GET", "/config/greeting", "").await,
        (200, "hello".into())
    );

    // Secrets: readable by the guest, sealed at rest, never shown, redacted from logs.
    let secret = "sk_live_8c1f02ab99e4";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["secrets", "set", "d", "api_key", "--data-dir"])
        .arg(&s.data_dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        call(&s, "api", "GET", "/config/api_key", "").await,
        (200, secret.into())
    );
    assert_eq!(call(&s, "api", "GET", "/print/api_key", "").await.0, 200);
    let logs = s
        .wait_for_log("d", &["api"], "the value of api_key is")
        .await;
    assert!(
        logs.contains("the value of api_key is [redacted]"),
        "{logs}"
    );
    assert!(!logs.contains(secret), "{logs}");
    let out = s.cli_ok(&["secrets", "ls", "d"]);
    assert!(
        out.contains("api_key (secret)") && !out.contains(secret),
        "{out}"
    );
    let v = s.api("/v1/apps/d/config").await;
    assert!(!v.to_string().contains(secret), "{v}");
    let invs = s.api("/v1/apps/d/invocations?limit=100").await;
    assert!(!invs.to_string().contains(secret));
    // Nothing in the data dir holds it in clear (the database included).
    for entry in std::fs::read_dir(&s.data_dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret in clear",
                p.display()
            );
        }
    }
    // Bad names and unknown functions are refused clearly.
    let err = s.cli_err(&["config", "set", "d", "bad key", "x"]);
    assert!(err.contains("variable name"), "{err}");
    let err = s.cli_err(&["config", "set", "d", "k", "x", "--function", "ghost"]);
    assert!(err.contains("no function \"ghost\""), "{err}");
}
