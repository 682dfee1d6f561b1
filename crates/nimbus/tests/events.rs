//! Events end to end: real `nimbus up` processes, the `consumer` example
//! guest, and a relay endpoint in the test that records every delivery the
//! guest reports (its outside-world side effect).

mod common;

use common::{Relay, Server, app_dir};
use futures::StreamExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn manifest(relay: &Relay, body: &str) -> String {
    format!(
        "[app]\nname = \"ev\"\n{}",
        body.replace("@RELAY@", &relay.url)
    )
}

const ALLOW: &str = r#"allowed_outbound_hosts = ["127.0.0.1:*"]"#;

#[tokio::test(flavor = "multi_thread")]
async fn retries_until_success_for_queues_and_async_invocations() {
    let relay = Relay::start().await;
    let server = Server::start(&[]);
    let app = app_dir(&manifest(
        &relay,
        &format!(
            r#"
[functions.flaky]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "@RELAY@", FAIL_UNTIL_ATTEMPT = "3" }}
{ALLOW}
retry = {{ max_attempts = 4, backoff = "30ms" }}

[queues.jobs]

[[triggers.queue]]
queue = "jobs"
function = "flaky"
max_attempts = 5
backoff = "30ms"
"#
        ),
    ));
    server.deploy(app.path());

    // Queue: fails attempts 1 and 2, then succeeds.
    let id = server
        .cli_ok(&[
            "queue",
            "send",
            "ev/jobs",
            "payload-1",
            "--content-type",
            "text/plain",
        ])
        .trim()
        .to_string();
    let v = server
        .api_wait(&format!("/v1/apps/ev/invocations/{id}"), 20, |v| {
            v["state"] == "succeeded" && v["invocations"].as_array().map_or(0, |a| a.len()) == 3
        })
        .await;
    assert_eq!(v["attempts"], 3);
    let attempts: Vec<u64> = v["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [3, 2, 1], "newest first");
    assert_eq!(v["invocations"][2]["status"], 500);
    assert_eq!(v["invocations"][0]["status"], 200);
    assert_eq!(v["invocations"][0]["trigger"], "queue");
    let seen = relay.seen();
    let mine: Vec<&Value> = seen.iter().filter(|r| r["id"] == id.as_str()).collect();
    assert_eq!(mine.len(), 3);
    assert_eq!(mine[0]["type"], "dev.nimbus.queue.message");
    assert_eq!(mine[0]["source"], "/apps/ev/queues/jobs");
    assert_eq!(mine[0]["body"], "payload-1");
    assert_eq!(
        mine.iter()
            .map(|r| r["attempt"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );

    // Async invocation through the CLI: 202 at once, then the same retries.
    let out = server.cli_ok(&[
        "invoke",
        "ev/flaky",
        "--async",
        "-d",
        "async-body",
        "--path",
        "/work?x=1",
    ]);
    assert!(out.contains("HTTP 202"), "{out}");
    let json_line = out.lines().find(|l| l.starts_with('{')).unwrap();
    let accepted: Value = serde_json::from_str(json_line).unwrap();
    assert_eq!(accepted["state"], "queued");
    let aid = accepted["id"].as_str().unwrap().to_string();
    let v = server
        .api_wait(&format!("/v1/apps/ev/invocations/{aid}"), 20, |v| {
            v["state"] == "succeeded" && v["invocations"].as_array().map_or(0, |a| a.len()) == 3
        })
        .await;
    assert_eq!(v["attempts"], 3);
    assert_eq!(v["path"], "/work?x=1", "the original request is kept");
    let r = relay
        .wait_until(5, "the async deliveries", |s| {
            s.iter().filter(|r| r["id"] == aid.as_str()).count() == 3
        })
        .await;
    let first = r.iter().find(|r| r["id"] == aid.as_str()).unwrap();
    assert_eq!(first["type"], "dev.nimbus.invocation.async");
    assert_eq!(first["path"], "/work?x=1");
    assert_eq!(first["body"], "async-body");

    // The CLI shows the event's state and attempts.
    let out = server.cli_ok(&["invocations", "ev", "--id", &aid]);
    assert!(out.contains("state: succeeded"), "{out}");
    assert!(out.contains("#3"), "{out}");
    let out = server.cli_ok(&["invocations", "ev/flaky"]);
    assert!(out.contains(&format!("event {aid}, attempt 3")), "{out}");

    // Async through a gateway route, with `Prefer: respond-async`.
    let app2 = app_dir(&format!(
        "{}\n[[triggers.http]]\nroute = \"/later/{{id}}\"\nfunction = \"flaky\"\n",
        std::fs::read_to_string(app.path().join("nimbus.toml")).unwrap()
    ));
    server.deploy(app2.path());
    let r = server
        .http
        .post(format!("{}/later/42", server.url))
        .header("prefer", "respond-async")
        .header("authorization", "Bearer user-credential")
        .body("via-route")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["preference-applied"], "respond-async");
    let rid = common::invocation_id(&r);
    server
        .api_wait(&format!("/v1/apps/ev/invocations/{rid}"), 20, |v| {
            v["state"] == "succeeded"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_then_redrive_after_a_fixing_redeploy() {
    let relay = Relay::start().await;
    let server = Server::start(&[]);
    let broken = |fail: &str| {
        manifest(
            &relay,
            &format!(
                r#"
[functions.worker]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "@RELAY@", FAIL = "{fail}" }}
{ALLOW}

[queues.jobs]

[[triggers.queue]]
queue = "jobs"
function = "worker"
max_attempts = 2
backoff = "20ms"
"#
            ),
        )
    };
    let app = app_dir(&broken("always"));
    server.deploy(app.path());
    let a = server
        .cli_ok(&["queue", "send", "ev/jobs", "first"])
        .trim()
        .to_string();
    let b = server
        .cli_ok(&["queue", "send", "ev/jobs", "second"])
        .trim()
        .to_string();
    let dlq = server
        .api_wait("/v1/apps/ev/functions/worker/dlq", 20, |v| {
            v.as_array().unwrap().len() == 2
        })
        .await;
    assert_eq!(dlq[0]["id"], a.as_str());
    assert_eq!(dlq[0]["attempts"], 2);
    let err = dlq[0]["last_error"].as_str().unwrap();
    assert!(err.contains("attempt 2 of 2"), "{err}");
    assert!(
        err.contains("FAIL=always"),
        "the error quotes the function's answer: {err}"
    );
    let out = server.cli_ok(&["dlq", "list", "ev/worker"]);
    assert!(out.contains(&a) && out.contains(&b), "{out}");
    let out = server.cli_ok(&["dlq", "show", "ev/worker", &a]);
    assert!(out.contains("first"), "the payload is shown: {out}");
    assert!(out.contains("ce-type: dev.nimbus.queue.message"), "{out}");
    let out = server.cli_ok(&["queue", "ls", "ev"]);
    let line = out.lines().find(|l| l.starts_with("queue:jobs")).unwrap();
    assert!(
        line.split_whitespace().last() == Some("2"),
        "two dead: {out}"
    );

    // A redeploy fixes the function; redrive delivers them again.
    let fixed = app_dir(&broken("never"));
    server.deploy(fixed.path());
    let out = server.cli_ok(&["dlq", "redrive", "ev/worker"]);
    assert!(out.contains("2 event(s)"), "{out}");
    for id in [&a, &b] {
        server
            .api_wait(&format!("/v1/apps/ev/invocations/{id}"), 20, |v| {
                v["state"] == "succeeded"
            })
            .await;
    }
    assert!(
        server
            .cli_ok(&["dlq", "list", "ev/worker"])
            .contains("is empty")
    );

    // Purge deletes for good.
    let app = app_dir(&broken("always"));
    server.deploy(app.path());
    let c = server
        .cli_ok(&["queue", "send", "ev/jobs", "third"])
        .trim()
        .to_string();
    server
        .api_wait("/v1/apps/ev/functions/worker/dlq", 20, |v| {
            v.as_array().unwrap().len() == 1
        })
        .await;
    assert!(
        server
            .cli_ok(&["dlq", "purge", "ev/worker", &c])
            .contains("1 event(s) deleted")
    );
    let r = server
        .http
        .get(format!("{}/v1/apps/ev/invocations/{c}", server.control))
        .bearer_auth(server.token())
        .send()
        .await
        .unwrap();
    assert!(r.status() == 200 || r.status() == 404);
    if r.status() == 200 {
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["kind"], "invocation", "only attempt records remain: {v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_fire_on_time_and_once_after_downtime() {
    let relay = Relay::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &[]);
    let app = app_dir(&manifest(
        &relay,
        &format!(
            r#"
[functions.tick]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "@RELAY@" }}
{ALLOW}

[[triggers.schedule]]
every = "1s"
function = "tick"
"#
        ),
    ));
    server.deploy(app.path());
    let ticks = relay.wait_until(10, "three ticks", |s| s.len() >= 3).await;
    assert!(
        ticks
            .iter()
            .all(|t| t["type"] == "dev.nimbus.schedule.tick")
    );
    assert_eq!(ticks[0]["source"], "/apps/ev/schedules/tick");
    let ids: HashSet<&str> = ticks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), ticks.len(), "each tick is its own event");
    let events = server
        .api("/v1/apps/ev/events?state=succeeded&limit=100")
        .await;
    assert!(!events.as_array().unwrap().is_empty());

    // Down for ~3 ticks: on restart it fires once for the missed ones, not a burst.
    server.stop();
    let stopped = relay.count();
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    let _server = Server::start_in(data.path(), &[]);
    let started = Instant::now();
    let seen = relay
        .wait_until(10, "the catch-up tick", |s| s.len() > stopped)
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the missed tick fires at start-up"
    );
    // Within the next ~0.5 s, only that one catch-up tick arrived.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = relay.seen();
    let burst = after.len() - stopped;
    assert!(
        burst <= 2,
        "one catch-up tick (plus at most the next regular one), not a burst: {burst} ({:#?})",
        &after[stopped..]
    );
    drop(seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_fan_out_with_independent_retries_and_guests_send_through_the_host() {
    let relay = Relay::start().await;
    let server = Server::start(&[]);
    let app = app_dir(&manifest(
        &relay,
        &format!(
            r#"
[functions.a]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "@RELAY@", FAIL_UNTIL_ATTEMPT = "2" }}
{ALLOW}

[functions.b]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "@RELAY@" }}
{ALLOW}

[functions.forward]
component = "@WASM@/consumer.wasm"
env = {{ FORWARD_QUEUE = "out", PUBLISH_TOPIC = "scores" }}

[queues.inbox]
[queues.out]

[topics.scores]

[[triggers.topic]]
topic = "scores"
function = "a"
backoff = "20ms"

[[triggers.topic]]
topic = "scores"
function = "b"

[[triggers.queue]]
queue = "inbox"
function = "forward"

[[triggers.queue]]
queue = "out"
function = "b"
"#
        ),
    ));
    server.deploy(app.path());
    let out = server.cli_ok(&["topic", "publish", "ev/scores", "goal!"]);
    let ids: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(ids.len(), 2, "one copy per subscriber: {out}");
    let seen = relay
        .wait_until(10, "both copies", |s| {
            s.iter()
                .filter(|r| r["function"] == "a" && r["attempt"] == 2)
                .count()
                == 1
                && s.iter().any(|r| r["function"] == "b")
        })
        .await;
    let a: Vec<&Value> = seen.iter().filter(|r| r["function"] == "a").collect();
    let b: Vec<&Value> = seen.iter().filter(|r| r["function"] == "b").collect();
    assert_eq!(a.len(), 2, "a failed once and was retried alone");
    assert_eq!(b.len(), 1, "b succeeded at once and is not retried");
    assert_ne!(a[0]["id"], b[0]["id"], "each subscriber has its own copy");
    assert_eq!(a[0]["body"], "goal!");
    assert_eq!(b[0]["type"], "dev.nimbus.topic.message");

    // A guest sends through `nimbus:events/producer`: inbox -> forward ->
    // queue `out` -> b, and a publish to `scores` -> a and b.
    server.cli_ok(&["queue", "send", "ev/inbox", "relayed"]);
    let seen = relay
        .wait_until(10, "the forwarded message", |s| {
            s.iter().filter(|r| r["body"] == "relayed").count() >= 3
        })
        .await;
    let sources: HashSet<&str> = seen
        .iter()
        .filter(|r| r["body"] == "relayed")
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains("/apps/ev/queues/out"), "{sources:?}");
    assert!(sources.contains("/apps/ev/topics/scores"), "{sources:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_and_fifo_groups() {
    let relay = Relay::start().await;
    let server = Server::start(&[]);
    let app = app_dir(&manifest(
        &relay,
        &format!(
            r#"
[functions.once]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "@RELAY@" }}
{ALLOW}

[functions.ordered]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "@RELAY@", FAIL_UNTIL_ATTEMPT = "2" }}
{ALLOW}

[queues.dedup]
dedup_window = "1m"

[queues.fifo]

[[triggers.queue]]
queue = "dedup"
function = "once"

[[triggers.queue]]
queue = "fifo"
function = "ordered"
batch_size = 20
max_concurrency = 20
backoff = "10ms"
"#
        ),
    ));
    server.deploy(app.path());

    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = server
            .api_post(
                "/v1/apps/ev/queues/dedup/messages",
                &[("idempotency-key", "order-42")],
                "charge",
            )
            .await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        ids.push((
            v["id"].as_str().unwrap().to_string(),
            v["duplicate"] == true,
        ));
    }
    assert_eq!(ids[0].0, ids[1].0);
    assert_eq!(ids[0].0, ids[2].0);
    assert_eq!(
        ids.iter().map(|i| i.1).collect::<Vec<_>>(),
        [false, true, true]
    );
    let out = server.cli_ok(&[
        "queue",
        "send",
        "ev/dedup",
        "x",
        "--idempotency-key",
        "order-42",
    ]);
    assert!(out.contains("duplicate"), "{out}");

    // Two groups, interleaved, each message failing its first attempt:
    // within a group, message k+1 is not delivered before k succeeded.
    for i in 0..8 {
        for g in ["g1", "g2"] {
            let r = server
                .api_post(
                    "/v1/apps/ev/queues/fifo/messages",
                    &[("nimbus-message-group", g)],
                    format!("{g}-{i}"),
                )
                .await;
            assert_eq!(r.status(), 202);
        }
    }
    let seen = relay
        .wait_until(30, "every ordered delivery", |s| {
            s.iter().filter(|r| r["function"] == "ordered").count() == 32
        })
        .await;
    for g in ["g1", "g2"] {
        let bodies: Vec<&str> = seen
            .iter()
            .filter(|r| r["function"] == "ordered" && r["group"] == g)
            .map(|r| r["body"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (0..8)
            .flat_map(|i| [format!("{g}-{i}"), format!("{g}-{i}")])
            .collect();
        assert_eq!(
            bodies, want,
            "group {g} in order, each retried before the next"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        relay
            .seen()
            .iter()
            .filter(|r| r["body"] == "charge")
            .count(),
        1,
        "the duplicate sends were dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_event_input_is_refused_clearly() {
    let relay = Relay::start().await;
    let server = Server::start(&["--max-message-kb", "8"]);
    let app = app_dir(&manifest(
        &relay,
        r#"
[functions.f]
component = "@WASM@/consumer.wasm"

[queues.small]
max_message_kb = 1

[topics.news]

[[triggers.http]]
route = "/f"
function = "f"
"#,
    ));
    server.deploy(app.path());

    let err = server.cli_err(&["queue", "send", "ev/nope", "x"]);
    assert!(
        err.contains("has no queue \"nope\"") && err.contains("small"),
        "{err}"
    );
    assert!(err.contains("404"), "{err}");
    let err = server.cli_err(&["topic", "publish", "ev/nada", "x"]);
    assert!(err.contains("has no topic \"nada\""), "{err}");
    let big = "x".repeat(2048);
    let err = server.cli_err(&["queue", "send", "ev/small", &big]);
    assert!(err.contains("over the limit of 1024 bytes"), "{err}");
    assert!(err.contains("413"), "{err}");
    // The platform limit applies to async invocations.
    let r = server
        .http
        .post(format!("{}/f", server.url))
        .header("prefer", "respond-async")
        .body("y".repeat(9 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("8192 bytes"));
    // A queue with no consumer keeps its messages, visibly.
    let id = server
        .cli_ok(&["queue", "send", "ev/small", "kept"])
        .trim()
        .to_string();
    let v = server.api(&format!("/v1/apps/ev/invocations/{id}")).await;
    assert_eq!(v["state"], "queued");
    let out = server.cli_ok(&["queue", "ls", "ev"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("queue:small") && l.contains(" 1 ")),
        "{out}"
    );
    // A publish to a topic nobody subscribes to stores nothing, and says so.
    let out = server.cli_ok(&["topic", "publish", "ev/news", "x"]);
    assert!(out.contains("no subscribers"), "{out}");

    // Malformed schedule: the deploy fails naming the line; nothing changes.
    let bad = app_dir(&manifest(
        &relay,
        r#"
[functions.f]
component = "@WASM@/consumer.wasm"

[[triggers.schedule]]
cron = "every tuesday"
function = "f"
"#,
    ));
    let err = server.cli_err(&["deploy", bad.path().to_str().unwrap()]);
    assert!(
        err.contains("line 7") && err.contains("cron expression"),
        "{err}"
    );
    let bad = app_dir(&manifest(
        &relay,
        r#"
[functions.f]
component = "@WASM@/consumer.wasm"

[[triggers.queue]]
queue = "ghost"
function = "f"
"#,
    ));
    let err = server.cli_err(&["deploy", bad.path().to_str().unwrap()]);
    assert!(err.contains("queue \"ghost\" is not declared"), "{err}");
    let v = server.api("/v1/apps/ev").await;
    assert_eq!(v["active_revision"], 1);
}

/// Crash test: 10,000 async events, `kill -9` while they are processed,
/// restart on the same data dir. Every accepted event runs at least once;
/// the test prints how many ran twice.
#[tokio::test(flavor = "multi_thread")]
async fn no_accepted_event_is_lost_across_kill_9() {
    const N: usize = 10_000;
    let relay = Relay::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &[]);
    let app = app_dir(&manifest(
        &relay,
        &format!(
            r#"
[functions.work]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "@RELAY@" }}
{ALLOW}
max_concurrency = 4

[[triggers.http]]
route = "/work"
function = "work"
"#
        ),
    ));
    server.deploy(app.path());

    let client = reqwest::Client::new();
    let url = format!("{}/work", server.url);
    let mut accepted = Vec::with_capacity(N);
    let mut tasks = futures::stream::iter(0..N)
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client
                    .post(&url)
                    .header("prefer", "respond-async")
                    .body(format!("event-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                common::invocation_id(&r)
            }
        })
        .buffer_unordered(32);
    while let Some(id) = tasks.next().await {
        accepted.push(id);
    }
    let before_kill = relay.count();
    server.kill();
    let processed_at_kill: HashSet<String> = relay
        .seen()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        processed_at_kill.len() < N,
        "the kill must happen while events are still being processed"
    );

    let _server = Server::start_in(data.path(), &[]);
    let seen = relay
        .wait_until(180, "every accepted event", |s| {
            let ids: HashSet<&str> = s.iter().map(|r| r["id"].as_str().unwrap()).collect();
            accepted.iter().all(|a| ids.contains(a.as_str()))
        })
        .await;
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for r in &seen {
        *runs.entry(r["id"].as_str().unwrap()).or_default() += 1;
    }
    let twice = runs.values().filter(|&&n| n > 1).count();
    eprintln!(
        "crash test: {N} accepted, {} processed before kill -9 ({before_kill} deliveries), all {} processed after restart; {twice} ran more than once",
        processed_at_kill.len(),
        runs.len()
    );
    assert_eq!(runs.len(), N, "no other events appeared");
}
