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
    assert!(bad.contains("function, day or app"), "{bad}");
}
