//! Chat: one guest for the three events of a WebSocket route
//! (`[[triggers.websocket]]`), told apart by method, as Nimbus sends them.
//!
//! - `GET`, connect: a client joins with `?name=...`; without a name the
//!   upgrade is refused with 403. A client of a room (`{room}`) is
//!   subscribed to the channel `room:ROOM` (`nimbus:realtime`).
//! - `POST`, message: answers `ROOM NAME (KIND): TEXT`, which Nimbus sends
//!   back on the connection. Some words are commands:
//!   - `whoami`: the connection's id; `whois`: the verified caller's
//!     subject (`nimbus-auth-subject`);
//!   - `count`: the number of requests this instance has served (always 1:
//!     every message gets a fresh instance); `path`: the path and query it
//!     was called with;
//!   - `say TEXT`: publishes `ROOM NAME: TEXT` to the room's channel (no
//!     answer: the sender is in the room and gets it too);
//!   - `join CHANNEL` / `leave CHANNEL`: (un)subscribes this connection;
//!   - `shout CHANNEL TEXT`: publishes TEXT to any channel;
//!   - `tell ID TEXT`: sends TEXT to the connection ID; `kick ID`: closes
//!     it with 4001; `add ID CHANNEL` / `drop ID CHANNEL`: (un)subscribes
//!     it.
//!   Realtime calls answer `ok`, or the host's error.
//! - `DELETE`, disconnect: logs the close code and reason.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/realtime.wit",
        world: "nimbus:realtime/realtime-guest",
        generate_all,
    });
}

use bindings::nimbus::realtime::connections::{self as realtime, Message};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method as HttpMethod, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
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
            HttpMethod::Get => {
                if name.is_empty() {
                    respond(out, 403, "add ?name=YOUR_NAME to join");
                    return;
                }
                if !room.is_empty()
                    && let Err(e) = realtime::subscribe(&id, &format!("room:{room}"))
                {
                    respond(out, 500, &format!("joining the room failed: {e:?}"));
                    return;
                }
                println!("connect {id} {name} to {room}");
                respond(out, 200, &format!("welcome {name} to {room}"));
            }
            HttpMethod::Post => {
                let kind = header("nimbus-message-type");
                let subject = header("nimbus-auth-subject");
                let text = String::from_utf8_lossy(&read_body(request)).into_owned();
                let (command, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
                let done = |r: Result<(), realtime::Error>| match r {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("{e:?}"),
                };
                let said = |t: &str| Message::Text(t.to_string());
                match command {
                    "whoami" => respond(out, 200, &format!("id:{id}")),
                    "whois" => respond(out, 200, &format!("sub:{subject}")),
                    "count" => respond(out, 200, &format!("served:{served}")),
                    "path" => respond(out, 200, &path),
                    "say" => match realtime::publish(
                        &format!("room:{room}"),
                        &said(&format!("{room} {name}: {rest}")),
                    ) {
                        Ok(()) => respond(out, 204, ""),
                        Err(e) => respond(out, 200, &format!("{e:?}")),
                    },
                    "join" => respond(out, 200, &done(realtime::subscribe(&id, rest))),
                    "leave" => respond(out, 200, &done(realtime::unsubscribe(&id, rest))),
                    "shout" => {
                        let (channel, t) = rest.split_once(' ').unwrap_or((rest, ""));
                        respond(out, 200, &done(realtime::publish(channel, &said(t))))
                    }
                    "tell" => {
                        let (to, t) = rest.split_once(' ').unwrap_or((rest, ""));
                        respond(out, 200, &done(realtime::send(to, &said(t))))
                    }
                    "kick" => respond(out, 200, &done(realtime::close(rest, 4001, "kicked"))),
                    "add" | "drop" => {
                        let (to, channel) = rest.split_once(' ').unwrap_or((rest, ""));
                        let r = if command == "add" {
                            realtime::subscribe(to, channel)
                        } else {
                            realtime::unsubscribe(to, channel)
                        };
                        respond(out, 200, &done(r))
                    }
                    _ => respond(out, 200, &format!("{room} {name} ({kind}): {text}")),
                }
            }
            HttpMethod::Delete => {
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
