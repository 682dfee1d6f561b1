//! One connection's life: the upgrade with its connect function, the loop
//! that reads messages (invoking the message function for each) and
//! writes what is sent to it, and the disconnect function at the end.

use crate::handshake;
use crate::{Conn, Outgoing, Realtime, SocketRoute};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use nimbus_runtime::{Caller, InvokeRequest, ResponseBody, Runtime, text_response};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The trusted header carrying the connection's id to its functions.
pub const CONNECTION_ID_HEADER: &str = "nimbus-connection-id";

/// How long a close handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Headers of the upgrade request that every later invocation of the
/// connection sees again (never credentials: the verified caller travels
/// as `nimbus-auth-*`).
const KEPT_HEADERS: [HeaderName; 4] = [
    header::HOST,
    header::ORIGIN,
    header::USER_AGENT,
    header::ACCEPT_LANGUAGE,
];

/// The body of a request to a connection's function.
type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// What the connection's later invocations carry of its upgrade request.
struct Origin {
    route: Arc<str>,
    uri: http::Uri,
    headers: http::HeaderMap,
    params: Vec<(String, String)>,
    caller: Option<Caller>,
}

impl Origin {
    /// A request to one of the connection's functions.
    fn request(
        &self,
        method: Method,
        id: &str,
        extra: &[(&'static str, String)],
        body: Bytes,
    ) -> (Request<Body>, InvokeRequest) {
        let mut req = Request::new(
            Full::new(body)
                .map_err(|never| -> wasmtime_wasi_http::Error { match never {} })
                .boxed_unsync(),
        );
        *req.method_mut() = method;
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        for (k, v) in &self.headers {
            headers.append(k, v.clone());
        }
        let mut trusted = vec![(CONNECTION_ID_HEADER, id.to_string())];
        for (k, v) in extra {
            if k.starts_with("nimbus-") {
                trusted.push((k, v.clone()));
            } else if let Ok(v) = HeaderValue::from_str(v) {
                headers.insert(HeaderName::from_static(k), v);
            }
        }
        (
            req,
            InvokeRequest {
                trigger: "websocket",
                route: Some(self.route.to_string()),
                params: self.params.clone(),
                caller: self.caller.clone(),
                trusted,
                ..Default::default()
            },
        )
    }
}

pub(crate) async fn upgrade<B>(
    realtime: &Arc<Realtime>,
    route: &Arc<SocketRoute>,
    mut req: Request<B>,
    params: Vec<(String, String)>,
    caller: Option<Caller>,
) -> (Response<ResponseBody>, Option<Arc<str>>)
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let accept = match handshake::accept_key(&req) {
        Ok(k) => k,
        Err(why) => return (handshake::not_an_upgrade(&route.pattern, why), None),
    };
    let offered = handshake::offered_protocols(&req);
    let app = route.app().clone();
    // Whatever happens next, the place is given back when `place` drops.
    let mut place = match realtime.reserve(&app) {
        Ok(p) => p,
        Err(why) => return (text_response(StatusCode::SERVICE_UNAVAILABLE, why), None),
    };
    let id: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let origin = Origin {
        route: route.pattern.clone(),
        uri: req.uri().clone(),
        headers: KEPT_HEADERS
            .iter()
            .flat_map(|k| {
                req.headers()
                    .get_all(k)
                    .iter()
                    .map(move |v| (k.clone(), v.clone()))
            })
            .collect(),
        params,
        caller,
    };
    // Listed before its connect function runs, which may subscribe it to
    // channels or send it a first message (written once it is open).
    let conn = Arc::new(Conn {
        id: id.clone(),
        route: route.clone(),
        app: app.clone(),
        path: origin.uri.path().to_string(),
        opened_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        outbox: Default::default(),
        ready: Default::default(),
        queued: AtomicUsize::new(0),
        closing: realtime.stop.child_token(),
        close_with: Default::default(),
        messages_in: AtomicU64::new(0),
        messages_out: AtomicU64::new(0),
        channels: Default::default(),
        metered: Default::default(),
    });
    realtime.list_conn(&mut place, conn.clone());
    let mut protocol = None;
    if let Some(connect) = &route.connect {
        let meta = InvokeRequest {
            trigger: "websocket",
            route: Some(route.pattern.to_string()),
            params: origin.params.clone(),
            caller: origin.caller.clone(),
            trusted: vec![(CONNECTION_ID_HEADER, id.to_string())],
            ..Default::default()
        };
        let resp = realtime.runtime.invoke(connect, req, meta).await;
        if !resp.status().is_success() {
            return (resp, None);
        }
        protocol = resp.headers().get(header::SEC_WEBSOCKET_PROTOCOL).cloned();
        if let Some(p) = &protocol
            && !offered.iter().any(|o| o.as_bytes() == p.as_bytes())
        {
            let offered = if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            };
            return (
                text_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the connect function chose the subprotocol {:?}, which the client did not offer (it offered: {offered})",
                        String::from_utf8_lossy(p.as_bytes()),
                    ),
                ),
                None,
            );
        }
        // The answer's body is not sent anywhere; it is read to its end so
        // that the invocation completes.
        let _ = Limited::new(resp.into_body(), 64 << 10).collect().await;
    }
    // Accepted: from now on it is a connection, metered and reachable
    // from other nodes.
    *conn.metered.lock() = Some((std::time::Instant::now(), 0, 0));
    if let Some(relay) = realtime.relay.get() {
        // Marked first: should this future be dropped mid-insert, the
        // place still removes whatever row was written.
        place.recorded = true;
        relay.record(&conn).await;
    }
    let route = route.clone();
    let rt = realtime.clone();
    let task = async move {
        let (code, reason) = match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0)
                    .max_message_size(Some(route.max_message_bytes))
                    .max_frame_size(Some(route.max_message_bytes));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run(&rt, &route, &conn, &origin, ws).await
            }
            Err(e) => (
                CloseCode::Abnormal,
                format!("the upgrade did not complete: {e}"),
            ),
        };
        // The place is free before the disconnect function runs.
        drop(place);
        if let Some(f) = &route.disconnect {
            let (req, meta) = origin.request(
                Method::DELETE,
                &conn.id,
                &[
                    ("nimbus-close-code", u16::from(code).to_string()),
                    ("nimbus-close-reason", reason),
                ],
                Bytes::new(),
            );
            // Boxed: the invocation's state is allocated when it runs, not
            // carried by every idle connection's task.
            let resp = Box::pin(rt.runtime.invoke(f, req, meta)).await;
            let _ = Limited::new(resp.into_body(), 64 << 10).collect().await;
        }
    };
    realtime.tasks.spawn(task);
    (handshake::switching(&accept, protocol), Some(id))
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What the message function's answer puts on the connection.
enum Reply {
    /// Nothing (no body, or not a 2xx).
    None,
    /// This message.
    Send(Outgoing),
    /// A body over the send buffer: the connection closes with 1011.
    TooLarge(String),
}

type Invocation = std::pin::Pin<Box<dyn Future<Output = Reply> + Send>>;

/// How a write to the client ended.
enum Wrote {
    Done,
    Failed(String),
    /// A close was asked while it waited.
    Closing,
    /// The client took nothing for a whole ping interval.
    Stalled,
}

/// Writes `msg`, waiting for the client at most `stall`, and no longer
/// once a close is asked.
async fn write(ws: &mut Ws, msg: Message, closing: &CancellationToken, stall: Duration) -> Wrote {
    tokio::select! {
        sent = tokio::time::timeout(stall, ws.send(msg)) => match sent {
            Ok(Ok(())) => Wrote::Done,
            Ok(Err(e)) => Wrote::Failed(e.to_string()),
            Err(_) => Wrote::Stalled,
        },
        _ = closing.cancelled() => Wrote::Closing,
    }
}

/// The connection's loop, until either side closes it; returns the close
/// code and reason the disconnect function is told.
async fn run(
    rt: &Arc<Realtime>,
    route: &Arc<SocketRoute>,
    conn: &Arc<Conn>,
    origin: &Origin,
    mut ws: Ws,
) -> (CloseCode, String) {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let app = conn.app.to_string();
    let ping_every = rt.config.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_message = Instant::now();
    let mut last_heard = Instant::now();
    // The message being handled; the next is not read until it is done,
    // and neither silence nor idleness counts against the client meanwhile.
    let mut handling: Option<Invocation> = None;
    let closing: CancellationToken = conn.closing.clone();
    let ended = |wrote: Wrote| match wrote {
        Wrote::Done => None,
        Wrote::Failed(e) => Some((CloseCode::Abnormal, format!("sending failed: {e}"), false)),
        Wrote::Closing => {
            let (code, reason) = asked_close(conn);
            Some((code, reason, true))
        }
        Wrote::Stalled => Some((
            CloseCode::Policy,
            format!(
                "the client took nothing sent to it for {} s",
                ping_every.as_secs()
            ),
            false,
        )),
    };
    let (code, reason, send_close) = 'conn: loop {
        let idle_at = last_message + route.idle_timeout;
        tokio::select! {
            _ = closing.cancelled() => {
                let (code, reason) = asked_close(conn);
                break (code, reason, true);
            }
            reply = async { handling.as_mut().unwrap().await }, if handling.is_some() => {
                handling = None;
                last_heard = Instant::now();
                last_message = Instant::now();
                match reply {
                    Reply::None => {}
                    // Past the send buffer, the send cuts the connection
                    // off (the cancellation above ends the loop).
                    Reply::Send(out) => {
                        let _ = conn.send(out, rt.config.send_buffer_bytes);
                    }
                    Reply::TooLarge(why) => break (CloseCode::Error, why, true),
                }
            }
            frame = ws.next(), if handling.is_none() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(t))) => {
                        last_message = Instant::now();
                        handling = Some(invoke(rt, route, conn, origin, "text", Bytes::from(t)));
                    }
                    Some(Ok(Message::Binary(b))) => {
                        last_message = Instant::now();
                        handling = Some(invoke(rt, route, conn, origin, "binary", b));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite queues the answering close; flush it.
                        let _ = tokio::time::timeout(CLOSE_GRACE, ws.flush()).await;
                        let (code, reason) = frame
                            .map(|f| (f.code, f.reason.to_string()))
                            .unwrap_or((CloseCode::Status, String::new()));
                        break (code, reason, false);
                    }
                    // Pings are answered by tungstenite; pongs count as heard.
                    Some(Ok(_)) => {}
                    Some(Err(WsError::Capacity(e))) => break (
                        CloseCode::Size,
                        format!("{e}: this route takes messages of at most {} bytes", route.max_message_bytes),
                        true,
                    ),
                    Some(Err(WsError::Utf8(e))) => {
                        break (CloseCode::Invalid, format!("a text message is not UTF-8: {e}"), true)
                    }
                    Some(Err(WsError::Protocol(e))) => {
                        break (CloseCode::Protocol, format!("protocol error: {e}"), true)
                    }
                    Some(Err(e)) => break (CloseCode::Abnormal, format!("the connection failed: {e}"), false),
                    None => break (CloseCode::Abnormal, "the client went away without closing".into(), false),
                }
            }
            _ = conn.ready.notified() => loop {
                // The lock is not held across the write.
                let next = conn.outbox.lock().pop_front();
                let Some(out) = next else { break };
                let len = out.len();
                let msg = match out {
                    Outgoing::Text(t) => Message::Text(t),
                    Outgoing::Binary(b) => Message::binary(b),
                };
                let wrote = write(&mut ws, msg, &closing, ping_every).await;
                conn.queued.fetch_sub(len, Ordering::SeqCst);
                if let Some(end) = ended(wrote) {
                    break 'conn end;
                }
                last_message = Instant::now();
                conn.messages_out.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("nimbus_websocket_messages_total", "app" => app.clone(), "direction" => "out").increment(1);
            },
            _ = ping.tick() => {
                if handling.is_none() && last_heard.elapsed() > ping_every * 2 {
                    break (
                        CloseCode::Away,
                        format!("no answer to pings for {} s", (ping_every * 2).as_secs()),
                        false,
                    );
                }
                let wrote = write(&mut ws, Message::Ping(Bytes::new()), &closing, ping_every).await;
                if let Some(end) = ended(wrote) {
                    break end;
                }
            }
            _ = tokio::time::sleep_until(idle_at), if handling.is_none() => {
                break (
                    CloseCode::Away,
                    format!("idle for {} s: no message either way", route.idle_timeout.as_secs()),
                    true,
                );
            }
        }
    };
    // Nothing more is taken for it.
    conn.closing.cancel();
    conn.outbox.lock().clear();
    if send_close {
        let frame = CloseFrame {
            code,
            reason: truncate(&reason, 123).into(),
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(Some(frame))).await;
    }
    (code, reason)
}

/// The code and reason a close was asked with (none: the node stops).
fn asked_close(conn: &Conn) -> (CloseCode, String) {
    conn.close_with
        .lock()
        .clone()
        .unwrap_or((CloseCode::Away, "the server is shutting down".into()))
}

/// Invokes the message function with one message; the reply to send, if
/// its answer was a 2xx with a body.
fn invoke(
    rt: &Arc<Realtime>,
    route: &Arc<SocketRoute>,
    conn: &Arc<Conn>,
    origin: &Origin,
    kind: &'static str,
    body: Bytes,
) -> Invocation {
    conn.messages_in.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("nimbus_websocket_messages_total", "app" => conn.app.to_string(), "direction" => "in").increment(1);
    let content_type = if kind == "text" {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let (req, meta) = origin.request(
        Method::POST,
        &conn.id,
        &[
            ("nimbus-message-type", kind.to_string()),
            ("content-type", content_type.to_string()),
        ],
        body,
    );
    let runtime: Arc<Runtime> = rt.runtime.clone();
    let f = route.message.clone();
    let limit = rt.config.send_buffer_bytes;
    let conn = conn.clone();
    Box::pin(async move {
        let resp = runtime.invoke(&f, req, meta).await;
        let status = resp.status();
        let text = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|t| t.starts_with("text/") || t.starts_with("application/json"));
        let body = Limited::new(resp.into_body(), limit).collect().await;
        if !status.is_success() {
            // The message is not retried and nothing is sent for it; the
            // invocation's record says why.
            tracing::debug!(app = %conn.app, connection = %conn.id, %status, "the message function did not take a message");
            return Reply::None;
        }
        let body = match body {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Reply::TooLarge(format!(
                    "the message function's reply is over the {limit}-byte send buffer"
                ));
            }
        };
        if body.is_empty() {
            return Reply::None;
        }
        Reply::Send(if text {
            match String::from_utf8(body.to_vec()) {
                Ok(t) => Outgoing::text(t),
                Err(_) => Outgoing::Binary(body),
            }
        } else {
            Outgoing::Binary(body)
        })
    })
}

/// At most `max` bytes of `s`, cut at a character boundary (a close
/// frame's reason is at most 123 bytes).
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}
