//! A WASI 0.3 HTTP function (`wasi:http/handler@0.3.0`, built with the
//! `wasip3` crate), for testing Nimbus's 0.3 support. The last path
//! segment picks the behaviour (`ACTION` in the environment overrides it):
//!
//! * `hello`: answers `hello from WASI 0.3`
//! * `url`: answers the request's scheme, authority and path as it sees them
//! * `echo`: streams the request body back as it arrives, chunk by chunk,
//!   with the request's `content-type`
//! * `sized`: a body with its `content-length`; the task works on 200 ms after
//!   its last byte
//! * `drip?n=N&ms=M`: streams N lines, one every M ms
//! * `incr?key=K`: increments K in the KV store `counters` (`wasi:keyvalue`)
//!   and answers the new value
//! * `get?key=K`: the value of K in `counters`, or 404
//! * `incr3?key=K`: as `incr`, through `nimbus:kv` (an async host call)
//! * `kv3?key=K`: the same store through `nimbus:kv` (async host calls):
//!   increments K, copies the result to `K:copy`, reads both back in one
//!   batch, deletes the copy, and answers `N COPY EXISTS`
//! * `extras3?key=K`: `nimbus:kv/extras` in the store `counters` (async):
//!   compare-and-swap K from absent to `a` and again (refused), a value of
//!   `K:ttl` that expires, and the keys with the prefix K; answers
//!   `SWAPPED SWAPPED-AGAIN KEY,KEY,...`
//! * `config?name=X`: the configuration variable X (`wasi:config`)
//! * `send?queue=Q`: sends the request body to queue Q (`nimbus:events`)
//!   and answers the message id
//! * `send3?queue=Q`: the same through `nimbus:events@0.2.0` (async)
//! * `tell3?to=ID`: sends the request body as a text message to the
//!   app's WebSocket connection ID (`nimbus:realtime@0.2.0`, async);
//!   answers `ok`, or 404 and the host's error
//! * `publish3?channel=C`: publishes the request body to the app's
//!   channel C the same way
//! * `docs3?id=ID`: in the collection `notes` (`nimbus:data@0.2.0`, async):
//!   puts `{"n":1}`, merges `{"m":2}`, reads it back, queries `n == 1`,
//!   deletes it; answers `V1 V2 JSON FOUND DELETED`
//! * `put3?id=ID`: puts the request body as document ID of `notes`;
//!   answers its version
//! * `watch3?id=ID&after=V&ms=N`: waits up to N ms for document ID of
//!   `notes` to leave version V; answers its version (or `none`) and the
//!   most `put3` and `watch3` requests this instance served at once
//! * `inflight`: how many `put3`, `watch3` and `overlap` requests this
//!   instance is serving now
//! * `flood3?n=N`: starts N watches of absent documents of `notes` at
//!   once, each waiting 300 ms (`nimbus:data@0.2.0`); answers how many
//!   were served and the first refusal
//! * `blobs3?key=K`: in the bucket `files` (`nimbus:data@0.2.0`, async):
//!   puts the request body under K, reads it, lists, deletes; answers
//!   `SIZE BODY LISTED DELETED`
//! * `consume`: an event consumer: keeps the delivery's payload under
//!   `event:ID` (its `ce-id`) and `last-event` in `counters`
//! * `sleep?ms=N`: waits N ms on the host's clock (an async wait), then answers
//! * `count`: increments a global counter and answers it (1 on a fresh instance)
//! * `overlap?ms=N`: waits N ms, then answers how many requests this
//!   instance was serving at once at most while it waited (1 on a fresh
//!   instance; more with instance reuse)
//! * `loop`: spins forever (stopped by the timeout)
//! * `alloc?mb=N`: allocates and touches N MiB (default: without end)
//! * `panic`: writes to stderr, then panics (a trap)
//! * `fail`: answers with an error code instead of a response

use std::sync::atomic::{AtomicU64, Ordering};
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

mod data {
    wit_bindgen::generate!({
        path: "../../wit/data",
        world: "nimbus:data/guest",
        generate_all,
    });
}

/// `nimbus:kv`: the key-value operations as `async func`s, for 0.3 guests.
mod kv3 {
    wit_bindgen::generate!({
        path: "../../wit/kv3",
        world: "nimbus:kv/guest",
    });
}

mod events {
    wit_bindgen::generate!({
        path: "../../wit/events.wit",
        world: "producer-guest",
    });
}

/// `nimbus:data@0.2.0`: documents and objects as `async func`s.
mod data3 {
    wit_bindgen::generate!({
        path: "../../wit/data3",
        world: "nimbus:data/guest",
    });
}

/// `nimbus:events@0.2.0`: sends as `async func`s.
mod events3 {
    wit_bindgen::generate!({
        path: "../../wit/events3",
        world: "nimbus:events/producer-guest",
    });
}

/// `nimbus:realtime@0.2.0`: sends and publishes as `async func`s.
mod realtime3 {
    wit_bindgen::generate!({
        path: "../../wit/realtime3",
        world: "nimbus:realtime/realtime-guest",
    });
}

use data::wasi::config::store as config;
use data::wasi::keyvalue::{atomics, store};
use events::nimbus::events::producer;

wasip3::http::service::export!(Wasi3);

struct Wasi3;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static MAX_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// A request counted in `IN_FLIGHT` (and `MAX_IN_FLIGHT`) while it lives.
struct Serving;

impl Serving {
    fn start() -> Serving {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
        Serving
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn query(path: &str, key: &str) -> Option<String> {
    let q = path.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

fn num(path: &str, key: &str, default: u64) -> u64 {
    query(path, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.get_headers()
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

/// A response whose body is written by `write` after the head is returned.
fn streamed<F>(status: u16, headers: &[(&str, &str)], write: F) -> Result<Response, ErrorCode>
where
    F: AsyncFnOnce(&mut wit_bindgen::rt::async_support::StreamWriter<u8>) + 'static,
{
    let fields = Fields::new();
    for (k, v) in headers {
        fields
            .append(k, v.as_bytes())
            .map_err(|e| ErrorCode::InternalError(Some(format!("header {k}: {e:?}"))))?;
    }
    let (mut tx, rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (resp, _io) = Response::new(fields, Some(rx), trailers_rx);
    drop(trailers_tx);
    resp.set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some("bad status".into())))?;
    wit_bindgen::spawn_local(async move {
        write(&mut tx).await;
    });
    Ok(resp)
}

fn text(status: u16, body: impl Into<String>) -> Result<Response, ErrorCode> {
    let body = body.into().into_bytes();
    streamed(status, &[("content-type", "text/plain")], async move |tx| {
        tx.write_all(body).await;
    })
}

/// The whole request body.
async fn read_body(req: Request) -> Vec<u8> {
    let (_tx, done) = wit_future::new(|| Ok(()));
    let (body, _trailers) = Request::consume_body(req, done);
    body.collect().await
}

/// The `kv3` action: every kind of `nimbus:kv` call, awaited.
async fn kv3_round(key: String) -> Result<String, kv3::nimbus::kv::store::Error> {
    use kv3::nimbus::kv::{atomics as atomics3, batch as batch3, store as store3};
    let b = store3::open("counters")?;
    let n = atomics3::increment(&b, key.clone(), 1).await?;
    let copy = format!("{key}:copy");
    b.set(copy.clone(), n.to_string().into_bytes()).await?;
    let both = batch3::get_many(&b, vec![key, copy.clone()]).await?;
    let copied = both
        .get(1)
        .cloned()
        .flatten()
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    b.delete(copy.clone()).await?;
    let exists = b.exists(copy).await?;
    Ok(format!("{n} {copied} {exists}"))
}

/// `extras3`: compare-and-swap, a TTL and a prefix listing.
async fn extras_round(key: String) -> Result<String, kv3::nimbus::kv::store::Error> {
    use kv3::nimbus::kv::{extras, store as store3};
    let b = store3::open("counters")?;
    let swapped = extras::compare_and_swap(&b, key.clone(), None, b"a".to_vec()).await?;
    let again = extras::compare_and_swap(&b, key.clone(), None, b"b".to_vec()).await?;
    extras::set_with_ttl(&b, format!("{key}:ttl"), b"soon gone".to_vec(), 60_000).await?;
    let (keys, _) = extras::list_prefix(&b, key, None, 10).await?;
    Ok(format!("{swapped} {again} {}", keys.join(",")))
}

/// `docs3`: a document's life through `nimbus:data@0.2.0`.
async fn docs_round(id: String) -> Result<String, data3::nimbus::data::documents::Error> {
    use data3::nimbus::data::documents as docs;
    let notes = || "notes".to_string();
    let put = docs::put(notes(), id.clone(), r#"{"n":1}"#.into(), Some(0)).await?;
    let patched = docs::patch(notes(), id.clone(), r#"{"m":2}"#.into(), Some(put.version)).await?;
    let json = docs::get(notes(), id.clone())
        .await?
        .map(|d| d.json)
        .unwrap_or_default();
    let page = docs::query(notes(), r#"{"where": [["n", "==", 1]]}"#.into()).await?;
    let found = page.contains(&format!("\"id\":\"{id}\""));
    let deleted = docs::delete(notes(), id).await?;
    Ok(format!(
        "{} {} {json} {found} {deleted}",
        put.version, patched.version
    ))
}

/// `blobs3`: an object's life through `nimbus:data@0.2.0`.
async fn blobs_round(
    key: String,
    body: Vec<u8>,
) -> Result<String, data3::nimbus::data::blobs::Error> {
    use data3::nimbus::data::blobs;
    let files = || "files".to_string();
    let put = blobs::put(files(), key.clone(), body, Some("text/plain".into())).await?;
    let read = blobs::get(files(), key.clone()).await?.unwrap_or_default();
    let listed = blobs::list_objects(files(), key.clone(), None, 10).await?;
    let deleted = blobs::delete(files(), key).await?;
    Ok(format!(
        "{} {} {} {deleted}",
        put.size,
        String::from_utf8_lossy(&read),
        listed.len()
    ))
}

fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(m) => m,
    }
}

impl wasip3::exports::http::handler::Guest for Wasi3 {
    async fn handle(req: Request) -> Result<Response, ErrorCode> {
        let path = req.get_path_with_query().unwrap_or_default();
        let action = std::env::var("ACTION").unwrap_or_else(|_| {
            let p = path.split('?').next().unwrap_or("");
            p.rsplit('/').next().unwrap_or("").to_string()
        });
        match action.as_str() {
            "hello" => text(200, "hello from WASI 0.3\n"),
            "url" => {
                let scheme = match req.get_scheme() {
                    Some(wasip3::http::types::Scheme::Http) => "http".to_string(),
                    Some(wasip3::http::types::Scheme::Https) => "https".to_string(),
                    Some(wasip3::http::types::Scheme::Other(s)) => s,
                    None => "none".to_string(),
                };
                let authority = req.get_authority().unwrap_or_else(|| "none".into());
                text(200, format!("{scheme}://{authority}{path}"))
            }
            "echo" => {
                let ct = header(&req, "content-type")
                    .unwrap_or_else(|| "application/octet-stream".into());
                let (_tx, done) = wit_future::new(|| Ok(()));
                let (mut body, _trailers) = Request::consume_body(req, done);
                streamed(200, &[("content-type", &ct)], async move |tx| {
                    loop {
                        let (result, chunk) = body.read(Vec::with_capacity(64 * 1024)).await;
                        if !chunk.is_empty() && !tx.write_all(chunk).await.is_empty() {
                            return; // the client went away
                        }
                        if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
                            return;
                        }
                    }
                })
            }
            "sized" => {
                // A body with its length, then more work after the last byte.
                let body = b"exactly 26 bytes of body\n!".to_vec();
                let len = body.len().to_string();
                streamed(200, &[("content-length", &len)], async move |tx| {
                    tx.write_all(body).await;
                    wasip3::clocks::monotonic_clock::wait_for(200_000_000).await;
                    println!("sized: done after the body");
                })
            }
            "drip" => {
                let (n, ms) = (num(&path, "n", 3), num(&path, "ms", 100));
                streamed(200, &[("content-type", "text/plain")], async move |tx| {
                    for i in 0..n {
                        if i > 0 {
                            wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                        }
                        tx.write_all(format!("line {i}\n").into_bytes()).await;
                    }
                })
            }
            "incr" => {
                let key = query(&path, "key").unwrap_or_else(|| "n".into());
                match store::open("counters").and_then(|b| atomics::increment(&b, &key, 1)) {
                    Ok(n) => text(200, n.to_string()),
                    Err(e) => text(500, kv_error(e)),
                }
            }
            "incr3" => {
                use kv3::nimbus::kv::{atomics as atomics3, store as store3};
                let key = query(&path, "key").unwrap_or_else(|| "n".into());
                let n = match store3::open("counters") {
                    Ok(b) => atomics3::increment(&b, key, 1).await,
                    Err(e) => Err(e),
                };
                match n {
                    Ok(n) => text(200, n.to_string()),
                    Err(e) => text(500, format!("{e:?}")),
                }
            }
            "kv3" => {
                let key = query(&path, "key").unwrap_or_else(|| "n".into());
                match kv3_round(key).await {
                    Ok(answer) => text(200, answer),
                    Err(e) => text(500, format!("{e:?}")),
                }
            }
            "extras3" => {
                let key = query(&path, "key").unwrap_or_else(|| "x".into());
                match extras_round(key).await {
                    Ok(answer) => text(200, answer),
                    Err(e) => text(500, format!("{e:?}")),
                }
            }
            "docs3" => {
                let id = query(&path, "id").unwrap_or_else(|| "d".into());
                match docs_round(id).await {
                    Ok(answer) => text(200, answer),
                    Err(e) => text(500, format!("{e:?}")),
                }
            }
            "put3" => {
                use data3::nimbus::data::documents as docs;
                let id = query(&path, "id").unwrap_or_else(|| "d".into());
                let json = String::from_utf8_lossy(&read_body(req).await).into_owned();
                let _serving = Serving::start();
                match docs::put("notes".into(), id, json, None).await {
                    Ok(d) => text(200, d.version.to_string()),
                    Err(e) => text(500, format!("{e:?}")),
                }
            }
            "watch3" => {
                use data3::nimbus::data::documents as docs;
                let id = query(&path, "id").unwrap_or_else(|| "d".into());
                let (after, ms) = (num(&path, "after", 0), num(&path, "ms", 1000));
                let serving = Serving::start();
                let r = docs::watch("notes".into(), id, after, ms as u32).await;
                drop(serving);
                let most = MAX_IN_FLIGHT.load(Ordering::SeqCst);
                match r {
                    Ok(Some(d)) => text(200, format!("{} {most}", d.version)),
                    Ok(None) => text(200, format!("none {most}")),
                    Err(e) => text(500, format!("{e:?}")),
                }
            }
            "inflight" => text(200, IN_FLIGHT.load(Ordering::SeqCst).to_string()),
            "flood3" => {
                use data3::nimbus::data::documents as docs;
                let n = num(&path, "n", 100);
                let watches =
                    (0..n).map(|i| docs::watch("notes".into(), format!("flood-{i}"), 0, 300));
                let results = futures::future::join_all(watches).await;
                let served = results.iter().filter(|r| r.is_ok()).count();
                let refusal = results.into_iter().find_map(Result::err);
                text(200, format!("{served} served; {refusal:?}"))
            }
            "blobs3" => {
                let key = query(&path, "key").unwrap_or_else(|| "k".into());
                let body = read_body(req).await;
                match blobs_round(key, body).await {
                    Ok(answer) => text(200, answer),
                    Err(e) => text(500, format!("{e:?}")),
                }
            }
            "get" => {
                let key = query(&path, "key").unwrap_or_default();
                match store::open("counters").and_then(|b| b.get(&key)) {
                    Ok(Some(v)) => text(200, String::from_utf8_lossy(&v).into_owned()),
                    Ok(None) => text(404, format!("no key {key:?}")),
                    Err(e) => text(500, kv_error(e)),
                }
            }
            "config" => {
                let name = query(&path, "name").unwrap_or_default();
                match config::get(&name) {
                    Ok(Some(v)) => text(200, v),
                    Ok(None) => text(404, format!("no variable {name:?}")),
                    Err(e) => text(500, format!("{e:?}")),
                }
            }
            "send" => {
                let queue = query(&path, "queue").unwrap_or_default();
                let body = read_body(req).await;
                let message = producer::Message {
                    body,
                    content_type: Some("text/plain".into()),
                    type_: Some("dev.nimbus.example.wasi3".into()),
                    group: None,
                    idempotency_key: None,
                };
                match producer::send(&queue, &message) {
                    Ok(id) => text(202, id),
                    Err(e) => text(400, format!("{e:?}")),
                }
            }
            "send3" => {
                use events3::nimbus::events::producer as producer3;
                let queue = query(&path, "queue").unwrap_or_default();
                let message = producer3::Message {
                    body: read_body(req).await,
                    content_type: Some("text/plain".into()),
                    type_: Some("dev.nimbus.example.wasi3".into()),
                    group: None,
                    idempotency_key: None,
                };
                match producer3::send(queue, message).await {
                    Ok(id) => text(202, id),
                    Err(e) => text(400, format!("{e:?}")),
                }
            }
            "tell3" | "publish3" => {
                use realtime3::nimbus::realtime::connections as rt3;
                let body = String::from_utf8_lossy(&read_body(req).await).into_owned();
                let done = if action == "tell3" {
                    rt3::send(query(&path, "to").unwrap_or_default(), rt3::Message::Text(body)).await
                } else {
                    let channel = query(&path, "channel").unwrap_or_default();
                    rt3::publish(channel, rt3::Message::Text(body)).await
                };
                match done {
                    Ok(()) => text(200, "ok"),
                    Err(e) => text(404, format!("{e:?}")),
                }
            }
            "consume" => {
                let id = header(&req, "ce-id").unwrap_or_default();
                let body = read_body(req).await;
                println!("event {id}: {} bytes", body.len());
                let kept = store::open("counters").and_then(|b| {
                    b.set(&format!("event:{id}"), &body)?;
                    b.set("last-event", &body)
                });
                match kept {
                    Ok(()) => text(200, "ok"),
                    Err(e) => text(500, kv_error(e)),
                }
            }
            "sleep" => {
                wasip3::clocks::monotonic_clock::wait_for(num(&path, "ms", 100) * 1_000_000).await;
                text(200, "slept")
            }
            "overlap" => {
                let serving = Serving::start();
                wasip3::clocks::monotonic_clock::wait_for(num(&path, "ms", 100) * 1_000_000).await;
                drop(serving);
                text(200, MAX_IN_FLIGHT.load(Ordering::SeqCst).to_string())
            }
            "count" => text(
                200,
                (COUNTER.fetch_add(1, Ordering::SeqCst) + 1).to_string(),
            ),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mb = num(&path, "mb", u64::MAX);
                let mut kept: Vec<Vec<u8>> = Vec::new();
                let mut i = 0;
                while i < mb {
                    kept.push(vec![1u8; 1 << 20]);
                    i += 1;
                }
                text(200, format!("allocated {} MiB", kept.len()))
            }
            "panic" => {
                eprintln!("about to panic on purpose");
                panic!("wasi3 panicked on purpose");
            }
            "fail" => Err(ErrorCode::InternalError(Some("failed on purpose".into()))),
            other => text(404, format!("no action {other:?}\n")),
        }
    }
}
