//! An event consumer, configured by environment variables, for trying out
//! and testing Nimbus events. Events arrive as HTTP requests in CloudEvents
//! binary mode (`ce-id`, `ce-type`, ... headers; the payload as the body).
//!
//! * `FAIL=always`: answer 500 to every event (it ends in the dead-letter queue).
//! * `FAIL_UNTIL_ATTEMPT=N`: answer 500 while the attempt (`nimbus-attempt`) is below N.
//! * `RELAY_URL=http://host:port/path`: report every delivery there (a JSON
//!   POST with the event's id, type, source, attempt, group, time and payload),
//!   so a test or a human can watch deliveries from outside.
//! * `FORWARD_QUEUE=name`: send the payload on to that queue of the app,
//!   through the `nimbus:events/producer` host interface (no network hop).
//! * `PUBLISH_TOPIC=name`: publish the payload to that topic, likewise.
//!
//! Otherwise it answers 200 `ok`, which acknowledges the event. Every
//! delivery prints one line (type, id, attempt, size) to stdout.

use std::io::{Read as _, Write as _};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

wit_bindgen::generate!({
    path: "../../wit/events.wit",
    world: "producer-guest",
});

use nimbus::events::producer;

struct Consumer;

fn respond(out: ResponseOutparam, status: u16, body_bytes: &[u8]) {
    let resp = OutgoingResponse::new(Fields::new());
    resp.set_status_code(status).unwrap();
    let body = resp.body().unwrap();
    ResponseOutparam::set(out, Ok(resp));
    let mut w = body.write().unwrap();
    w.write_all(body_bytes).unwrap();
    drop(w);
    OutgoingBody::finish(body, None).unwrap();
}

fn header(req: &IncomingRequest, name: &str) -> Option<String> {
    req.headers()
        .get(&name.to_string())
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

fn read_body(req: &IncomingRequest) -> Vec<u8> {
    let body = req.consume().expect("body");
    let mut stream = body.stream().expect("stream");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read body");
    bytes
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn post(url: &str, body: &[u8]) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("RELAY_URL {url:?} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    headers
        .append(&"content-type".to_string(), &b"application/json".to_vec())
        .map_err(|e| format!("{e:?}"))?;
    let req = OutgoingRequest::new(headers);
    req.set_method(&wasi::http::types::Method::Post)
        .map_err(|_| "bad method")?;
    req.set_scheme(Some(&Scheme::Http)).map_err(|_| "bad scheme")?;
    req.set_authority(Some(authority))
        .map_err(|_| "bad authority")?;
    req.set_path_with_query(Some(path)).map_err(|_| "bad path")?;
    let out = req.body().map_err(|_| "no body")?;
    {
        let mut w = out.write().map_err(|_| "no stream")?;
        w.write_all(body).map_err(|e| e.to_string())?;
    }
    OutgoingBody::finish(out, None).map_err(|e| format!("{e:?}"))?;
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    let resp = loop {
        if let Some(r) = future.get() {
            break r
                .map_err(|_| "response already taken".to_string())?
                .map_err(|e| format!("{e:?}"))?;
        }
        future.subscribe().block();
    };
    Ok(resp.status())
}

fn message(body: Vec<u8>, req: &IncomingRequest) -> producer::Message {
    producer::Message {
        body,
        content_type: header(req, "content-type"),
        type_: None,
        group: header(req, "ce-partitionkey"),
        idempotency_key: None,
    }
}

impl wasi::exports::http::incoming_handler::Guest for Consumer {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let id = header(&request, "ce-id").unwrap_or_default();
        let attempt: u32 = header(&request, "nimbus-attempt")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let body = read_body(&request);
        // One line per delivery in `nimbus logs`.
        println!(
            "{} {} attempt {attempt}: {} bytes",
            header(&request, "ce-type").unwrap_or_default(),
            id,
            body.len()
        );
        let env: std::collections::HashMap<String, String> = std::env::vars().collect();
        if let Some(url) = env.get("RELAY_URL") {
            let report = format!(
                "{{\"id\":{},\"type\":{},\"source\":{},\"attempt\":{attempt},\"group\":{},\"function\":{},\"path\":{},\"route\":{},\"param_id\":{},\"time\":{},\"body\":{}}}",
                json_string(&id),
                json_string(&header(&request, "ce-type").unwrap_or_default()),
                json_string(&header(&request, "ce-source").unwrap_or_default()),
                json_string(&header(&request, "ce-partitionkey").unwrap_or_default()),
                json_string(&header(&request, "nimbus-function").unwrap_or_default()),
                json_string(&request.path_with_query().unwrap_or_default()),
                json_string(&header(&request, "nimbus-route").unwrap_or_default()),
                json_string(&header(&request, "nimbus-param-id").unwrap_or_default()),
                json_string(&header(&request, "ce-time").unwrap_or_default()),
                json_string(&String::from_utf8_lossy(&body)),
            );
            if let Err(e) = post(url, report.as_bytes()) {
                return respond(out, 502, format!("relay failed: {e}").as_bytes());
            }
        }
        if env.get("FAIL").map(String::as_str) == Some("always") {
            return respond(out, 500, format!("failing event {id} on purpose (FAIL=always)").as_bytes());
        }
        if let Some(n) = env.get("FAIL_UNTIL_ATTEMPT").and_then(|n| n.parse::<u32>().ok())
            && attempt < n
        {
            return respond(
                out,
                500,
                format!("failing attempt {attempt} of event {id} on purpose (FAIL_UNTIL_ATTEMPT={n})").as_bytes(),
            );
        }
        if let Some(q) = env.get("FORWARD_QUEUE") {
            let msg = message(body.clone(), &request);
            if let Err(e) = producer::send(q, &msg) {
                return respond(out, 500, format!("forwarding failed: {e:?}").as_bytes());
            }
        }
        if let Some(t) = env.get("PUBLISH_TOPIC") {
            let msg = message(body.clone(), &request);
            if let Err(e) = producer::publish(t, &msg) {
                return respond(out, 500, format!("publishing failed: {e:?}").as_bytes());
            }
        }
        respond(out, 200, b"ok")
    }
}

wasi::http::proxy::export!(Consumer);
