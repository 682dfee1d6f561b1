//! Acknowledged means durable. Two kinds of proof:
//!
//! * Crashes: the server is stopped dead (`abort`, as `kill -9`) at test
//!   fault points (`NIMBUS_FAULT_POINT`) between a commit and what follows
//!   it, and restarted: every acknowledged write is there, no object lacks
//!   its body, no storage event is lost.
//! * Power loss: a power cut loses what was written but not fsynced, so
//!   the server runs under `strace`, and for each write request (a KV put,
//!   an object put, an async invocation, a deploy) the trace must show an
//!   fsync of the database's write-ahead log — and, for an object, of its
//!   body — that started after the request was read and ended before the
//!   acknowledgement was written to the socket.

use crate::common::{Launch, Server, app_dir, s3_key, s3_url};
use crate::s3auth::{ok, probe};
use std::path::Path;

/// One system call of the trace.
#[derive(Debug, Clone)]
struct Call {
    start: f64,
    end: f64,
    name: String,
    /// The fd argument as `strace -y` shows it: `12</path>` or a socket
    /// with its addresses (unique per connection).
    fd: String,
    text: String,
}

/// Reads an `strace -f -ttt -T -yy` trace, joining calls that other
/// threads' calls interrupted (`<unfinished ...>` / `resumed>`).
fn calls(trace: &Path) -> Vec<Call> {
    let text = std::fs::read_to_string(trace).unwrap();
    let mut pending: std::collections::HashMap<String, Call> = Default::default();
    let mut out = Vec::new();
    for line in text.lines() {
        // `TID  TIMESTAMP CALL(ARGS) = RESULT <DURATION>`
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let duration = || {
            rest.rsplit_once(" <")
                .and_then(|(_, d)| d.trim_end_matches('>').parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if let Some(r) = rest.strip_prefix("<... ") {
            if let Some(mut c) = pending.remove(tid) {
                c.end = ts;
                c.text.push_str(r);
                out.push(c);
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if name.starts_with("---") || name.starts_with("+++") {
            continue;
        }
        // The first argument, up to `,` or `)` — or to ` <unfinished`
        // when another thread's call cut the line short.
        let first = args.trim_end_matches(" <unfinished ...>");
        let fd = first
            .split_once([',', ')'])
            .map_or(first, |(fd, _)| fd)
            .to_string();
        let c = Call {
            start: ts,
            end: ts + duration(),
            name: name.to_string(),
            fd,
            text: args.to_string(),
        };
        if rest.ends_with("<unfinished ...>") {
            pending.insert(tid.to_string(), c);
        } else {
            out.push(c);
        }
    }
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    out
}

const READS: [&str; 3] = ["read", "recvfrom", "readv"];
const WRITES: [&str; 4] = ["write", "writev", "sendto", "sendmsg"];
const SYNCS: [&str; 2] = ["fsync", "fdatasync"];

/// The data a read or write call shows (`strace -s` cuts it short).
fn data(c: &Call) -> &str {
    c.text
        .split_once('"')
        .and_then(|(_, rest)| rest.split_once("\""))
        .map_or("", |(d, _)| d)
}

/// Asserts that the request whose head contains `marker` was acknowledged
/// — the first write on its connection after it containing `ack` — only
/// after a sync of a file whose path contains each of `synced`, begun
/// after the request was read. A request head may arrive in several reads.
fn synced_before_ack(calls: &[Call], marker: &str, ack: &str, synced: &[&str]) {
    let mut streams: std::collections::HashMap<&str, String> = Default::default();
    let req = calls
        .iter()
        .filter(|c| READS.contains(&c.name.as_str()) && c.fd.contains("TCP"))
        .find(|c| {
            let seen = streams.entry(c.fd.as_str()).or_default();
            seen.push_str(data(c));
            seen.contains(marker)
        })
        .unwrap_or_else(|| panic!("no read of the request {marker:?} in the trace"));
    let answer = calls
        .iter()
        .find(|c| {
            c.start >= req.end
                && WRITES.contains(&c.name.as_str())
                && c.fd == req.fd
                && c.text.contains(ack)
        })
        .unwrap_or_else(|| panic!("no answer {ack:?} to {marker:?} on {}", req.fd));
    for file in synced {
        assert!(
            calls.iter().any(|c| SYNCS.contains(&c.name.as_str())
                && c.fd.contains(file)
                && c.start >= req.end
                && c.end <= answer.start),
            "{marker:?} was acknowledged at {} without a sync of {file:?} since it was read at {}",
            answer.start,
            req.end
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledgements_follow_the_fsync_that_makes_them_durable() {
    let data = tempfile::tempdir().unwrap();
    let trace = data.path().join("trace.txt");
    let mut s = Server::start_with(
        &data.path().join("node"),
        &["--s3-listen", "127.0.0.1:0"],
        Launch {
            embedded: true,
            strace: Some(trace.clone()),
            ..Default::default()
        },
    );
    let app = app_dir(
        "[app]\nname = \"durapp\"\n[kv.notes]\n[functions.hello]\ncomponent = \"@WASM@/hello.wasm\"\n",
    );
    s.deploy(app.path());
    let r = s
        .http
        .put(format!("{}/v1/apps/durapp/kv/notes/durable-k1", s.control))
        .bearer_auth(s.token())
        .body("kept")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = s
        .http
        .post(format!(
            "{}/v1/apps/durapp/functions/hello/invoke/durable-ev",
            s.control
        ))
        .bearer_auth(s.token())
        .header("prefer", "respond-async")
        .body("event")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let url = s3_url(&s);
    let k = s3_key(&s, "durapp");
    ok(probe(&url, &k, "mb", &["durable-bucket"]), "create");
    ok(
        probe(&url, &k, "put", &["durable-bucket", "durable-obj", "body"]),
        "put",
    );
    // Stop the server itself (strace then ends).
    let _ = std::process::Command::new("pkill")
        .args(["-TERM", "-P", &s.pid().to_string()])
        .status();
    s.stop();

    let calls = calls(&trace);
    let wal = "nimbus.db-wal";
    // A deploy streams its progress: its "activated" line acknowledges it.
    synced_before_ack(
        &calls,
        "POST /v1/apps/durapp/revisions",
        "activated",
        &[wal],
    );
    let ok = "HTTP/1.1 2";
    synced_before_ack(
        &calls,
        "PUT /v1/apps/durapp/kv/notes/durable-k1",
        ok,
        &[wal],
    );
    synced_before_ack(
        &calls,
        "POST /v1/apps/durapp/functions/hello/invoke/durable-ev",
        ok,
        &[wal],
    );
    synced_before_ack(
        &calls,
        "PUT /durable-bucket/durable-obj",
        ok,
        &[wal, "/objects/"],
    );
}

/// Waits for a server stopped by a fault point to be gone.
fn wait_exit(s: &mut Server) {
    let pid = s.pid();
    for _ in 0..200 {
        if !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| st.contains(") Z "))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    s.kill();
}

/// Stopped dead between an object's commit and the removal of the body
/// it replaced, and between an event's commit and its 202: after a
/// restart the object is there whole (never a row without its body), its
/// storage event is delivered, and so is the event.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_a_commit_and_what_follows_loses_nothing() {
    let relay = crate::common::Relay::start().await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("node");
    let args = ["--s3-listen", "127.0.0.1:0"];
    let faulty = |point: &str| Launch {
        env: vec![("NIMBUS_FAULT_POINT".into(), point.into())],
        ..Default::default()
    };
    let mut s = Server::start_with(&dir, &args, Launch::default());
    s.deploy(
        app_dir(&format!(
            r#"
[app]
name = "crashy"
[functions.sink]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "{}" }}
allowed_outbound_hosts = ["127.0.0.1:*"]
[[triggers.storage]]
bucket = "crash-bucket"
function = "sink"
"#,
            relay.url
        ))
        .path(),
    );
    let k = s3_key(&s, "crashy");
    let url = s3_url(&s);
    ok(probe(&url, &k, "mb", &["crash-bucket"]), "create");
    ok(
        probe(&url, &k, "put", &["crash-bucket", "obj", "one"]),
        "v1",
    );
    relay.wait_until(20, "v1's event", |r| !r.is_empty()).await;
    s.stop();

    // The overwrite commits, then the node dies before the old body goes.
    let mut s = Server::start_with(&dir, &args, faulty("after-object-commit"));
    let v = probe(&s3_url(&s), &k, "put", &["crash-bucket", "obj", "two"]);
    assert_eq!(v["status"], 0, "the node died before answering: {v}");
    wait_exit(&mut s);

    let mut s = Server::start_with(&dir, &args, Launch::default());
    let url = s3_url(&s);
    let got = ok(probe(&url, &k, "get", &["crash-bucket", "obj"]), "get");
    assert_eq!(got["body"], "two", "the committed overwrite, with its body");
    let seen = relay
        .wait_until(20, "v2's storage event", |r| r.len() >= 2)
        .await;
    let etag_two = "b8a9f715dbb64fd5c56e7783c6820a61"; // md5("two")
    assert!(
        seen.iter()
            .any(|r| r["body"].as_str().unwrap_or("").contains(etag_two)),
        "the overwrite's storage event was stored with it: {seen:?}"
    );
    s.stop();

    // An async invocation is committed, then the node dies before its 202.
    let mut s = Server::start_with(&dir, &args, faulty("after-event-commit"));
    let r = s
        .http
        .post(format!(
            "{}/v1/apps/crashy/functions/sink/invoke/after-crash",
            s.control
        ))
        .bearer_auth(s.token())
        .header("prefer", "respond-async")
        .body("committed-before-the-crash")
        .send()
        .await;
    assert!(r.is_err(), "the node died before answering: {r:?}");
    wait_exit(&mut s);
    let _s = Server::start_with(&dir, &args, Launch::default());
    relay
        .wait_until(30, "the event stored before the crash", |r| {
            r.iter().any(|e| {
                e["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("committed-before-the-crash"))
            })
        })
        .await;
}
