//! Chat: one guest for the three events of a WebSocket route
//! (`[[triggers.websocket]]`), told apart by method, as Nimbus sends them.
//!
//! - `GET`, connect: a client joins with `?name=...`; without a name the
//!   upgrade is refused with 403.
//! - `POST`, message: answers `ROOM NAME: TEXT`, which Nimbus sends back on
//!   the connection. Two words are commands: `whoami` answers the
//!   connection's id, `count` the number of requests this instance has
//!   served (always 1: every message gets a fresh instance), `path` the
//!   path and query it was called with.
//! - `DELETE`, disconnect: logs the close code and reason.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Chat;

static SERVED: AtomicU64 = AtomicU64::new(0);

fn query<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    path.split_once('?')?.1.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers =
        Fields::from_list(&[("content-type".to_string(), b"text/plain; charset=utf-8".to_vec())])
            .unwrap();
    let resp = OutgoingResponse::new(headers);
    resp.set_status_code(status).unwrap();
    let body = resp.body().unwrap();
    ResponseOutparam::set(out, Ok(resp));
    let mut w = body.write().unwrap();
    w.write_all(text.as_bytes()).unwrap();
    drop(w);
    OutgoingBody::finish(body, None).unwrap();
}

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let body = request.consume().unwrap();
    let mut input = body.stream().unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut input, &mut all).unwrap();
    drop(input);
    IncomingBody::finish(body);
    all
}

impl wasi::exports::http::incoming_handler::Guest for Chat {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
        let path = request.path_with_query().unwrap_or_default();
        let name = query(&path, "name").unwrap_or("").to_string();
        let header = |key: &str| {
            request
                .headers()
                .get(key)
                .first()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let id = header("nimbus-connection-id");
        let room = header("nimbus-param-room");
        match request.method() {
            Method::Get => {
                if name.is_empty() {
                    respond(out, 403, "add ?name=YOUR_NAME to join");
                    return;
                }
                println!("connect {id} {name} to {room}");
                respond(out, 200, &format!("welcome {name} to {room}"));
            }
            Method::Post => {
                let kind = header("nimbus-message-type");
                let text = String::from_utf8_lossy(&read_body(request)).into_owned();
                match text.as_str() {
                    "whoami" => respond(out, 200, &format!("id:{id}")),
                    "count" => respond(out, 200, &format!("served:{served}")),
                    "path" => respond(out, 200, &path),
                    _ => respond(out, 200, &format!("{room} {name} ({kind}): {text}")),
                }
            }
            Method::Delete => {
                println!(
                    "disconnect {id} {} {}",
                    header("nimbus-close-code"),
                    header("nimbus-close-reason")
                );
                respond(out, 204, "");
            }
            _ => respond(out, 405, "chat: connect with GET, message with POST, disconnect with DELETE"),
        }
    }
}

wasi::http::proxy::export!(Chat);
