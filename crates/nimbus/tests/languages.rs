//! Functions in JavaScript and Python: the `examples/greet-js` and
//! `examples/greet-py` apps, built by `nimbus deploy` with their real
//! toolchains (componentize-js from npm, componentize-py from PyPI, which
//! `scripts/test` installs) and deployed as they are. Each reads its
//! configuration, counts in a KV store and sends an event through Nimbus's
//! host interfaces, then consumes that event.

mod common;

use common::{Server, repo};
use std::time::Duration;

async fn greets_counts_and_consumes_its_event(lang: &str) {
    let server = Server::start(&[]);
    let dir = repo().join(format!("examples/greet-{lang}"));
    let out = server.deploy(&dir);
    assert!(
        out.contains(&format!("deployed greet-{lang} revision 1")) && out.contains("WASI 0.2"),
        "{out}"
    );
    let prefix = if lang == "js" { "js" } else { "py" };
    let language = if lang == "js" { "js" } else { "python" };

    let v: serde_json::Value = server
        .get(&format!("/{prefix}/greet/ada"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["message"], "Hello, ada!", "{v}");
    assert_eq!(v["visits"], 1, "{v}");
    assert_eq!(v["lang"], language, "{v}");
    let first_event = v["event"].as_str().unwrap().to_string();
    assert!(!first_event.is_empty(), "{v}");

    // Configuration is read at each request; the counter is the store's.
    server.cli_ok(&[
        "config",
        "set",
        &format!("greet-{lang}"),
        "greeting",
        "Bonjour",
    ]);
    let r = server.get(&format!("/{prefix}/greet/grace%20hopper")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Bonjour, grace hopper!", "{v}");
    assert_eq!(v["visits"], 2, "{v}");
    let event = v["event"].as_str().unwrap().to_string();
    assert_ne!(event, first_event);
    assert_eq!(
        server
            .cli_ok(&["kv", "get", &format!("greet-{lang}/counters"), "visits"])
            .trim(),
        "2"
    );

    // The event it sent reaches it through the queue trigger.
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let r = server.get(&format!("/{prefix}/greet-last")).await;
        if r.status() == 200 {
            last = r.json().await.unwrap();
            if last["visits"] == 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last,
        serde_json::json!({ "name": "grace hopper", "visits": 2, "lang": language })
    );
    let logs = server
        .wait_for_log(&format!("greet-{lang}"), &[], &format!("event {event}: "))
        .await;
    assert!(logs.contains(&format!("event {first_event}: ")), "{logs}");

    let inv = server
        .api(&format!("/v1/apps/greet-{lang}/invocations?limit=100"))
        .await;
    let triggers: Vec<&str> = inv
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["trigger"].as_str().unwrap())
        .collect();
    assert!(
        triggers.contains(&"queue") && triggers.contains(&"http"),
        "{triggers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_function_greets_counts_and_consumes_its_event() {
    greets_counts_and_consumes_its_event("js").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_function_greets_counts_and_consumes_its_event() {
    greets_counts_and_consumes_its_event("py").await;
}
