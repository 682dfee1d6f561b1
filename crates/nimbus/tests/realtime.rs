//! WebSocket routes against a real server: the chat guest (`examples/chat`)
//! as connect, message and disconnect functions, driven by a real
//! WebSocket client (tokio-tungstenite) and the control API.

mod common;

use common::{Server, app_dir};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const CHAT: &str = r#"
[app]
name = "chat"

[functions.join]
component = "@WASM@/chat.wasm"
[functions.talk]
component = "@WASM@/chat.wasm"
[functions.leave]
component = "@WASM@/chat.wasm"

[policies.members]
auth = "api_key"

[policies.site]
cors = { origins = ["https://game.example"] }

[[triggers.websocket]]
route = "/rooms/{room}"
connect = "join"
message = "talk"
disconnect = "leave"
max_message_kb = 1

[[triggers.websocket]]
route = "/members"
message = "talk"
policy = "members"

[[triggers.websocket]]
route = "/site"
message = "talk"
policy = "site"

[[triggers.websocket]]
route = "/quiet"
message = "talk"
idle_timeout_s = 1
"#;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(s: &Server, path: &str) -> String {
    format!("{}{path}", s.url.replacen("http://", "ws://", 1))
}

async fn connect(s: &Server, path: &str) -> Client {
    connect_from(s, path, None).await
}

/// Connects as a page of `origin` would.
async fn connect_from(s: &Server, path: &str, origin: Option<&str>) -> Client {
    let (ws, resp) = tokio_tungstenite::connect_async(upgrade(s, path, origin))
        .await
        .unwrap_or_else(|e| panic!("connecting to {path}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

fn upgrade(
    s: &Server,
    path: &str,
    origin: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = ws_url(s, path).into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    req
}

/// The HTTP answer that refused an upgrade: status and body.
async fn refused(s: &Server, path: &str) -> (u16, String) {
    refused_from(s, path, None).await
}

async fn refused_from(s: &Server, path: &str, origin: Option<&str>) -> (u16, String) {
    match tokio_tungstenite::connect_async(upgrade(s, path, origin)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("connecting to {path} failed otherwise: {e}"),
        Ok(_) => panic!("connecting to {path} was accepted"),
    }
}

/// The next data message, as text.
async fn next_text(ws: &mut Client) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no message within 10 s")
            .expect("the connection ended")
            .expect("reading failed");
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Binary(b) => return String::from_utf8_lossy(&b).into_owned(),
            Message::Close(f) => panic!("closed instead: {f:?}"),
            _ => {}
        }
    }
}

async fn ask(ws: &mut Client, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    next_text(ws).await
}

/// The close frame the server ends the connection with.
async fn closed_with(ws: &mut Client) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no close within 10 s")
        {
            Some(Ok(Message::Close(Some(f)))) => return (f.code, f.reason.to_string()),
            Some(Ok(Message::Close(None))) => return (CloseCode::Status, String::new()),
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

async fn control(s: &Server, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
    let r = s
        .http
        .request(method, format!("{}{path}", s.control))
        .bearer_auth(s.token())
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_route_invokes_its_functions_on_fresh_instances() {
    let s = Server::start(&[]);
    let app = app_dir(CHAT);
    s.deploy(app.path());

    // Refusals: the connect function's own answer, a request that is no
    // upgrade, and a policy's.
    let (status, body) = refused(&s, "/rooms/lobby").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("add ?name=YOUR_NAME"), "{body}");
    let (status, body) = s.get_text("/rooms/lobby?name=ann").await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("is a WebSocket route"), "{body}");
    assert_eq!(refused(&s, "/members").await.0, 401);

    // Messages reach the message function, one fresh instance each, and
    // its answer comes back on the connection.
    let mut ann = connect(&s, "/rooms/lobby?name=ann").await;
    assert_eq!(ask(&mut ann, "hello").await, "lobby ann (text): hello");
    assert_eq!(ask(&mut ann, "count").await, "served:1");
    assert_eq!(ask(&mut ann, "count").await, "served:1");
    ann.send(Message::binary(b"bin".to_vec())).await.unwrap();
    assert_eq!(next_text(&mut ann).await, "lobby ann (binary): bin");
    let id = ask(&mut ann, "whoami").await;
    let id = id.strip_prefix("id:").unwrap().to_string();
    let log = s
        .wait_for_log("chat", &["join"], &format!("connect {id} ann to lobby"))
        .await;
    assert!(log.contains(&id), "{log}");

    // The control API lists it, sends to it, and finds nothing of it
    // under another app.
    let list = s.api("/v1/apps/chat/connections").await;
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["route"], "/rooms/{room}");
    assert_eq!(listed[0]["messages_in"], 5);
    let send = format!("/v1/apps/chat/connections/{id}/messages");
    assert_eq!(
        control(&s, reqwest::Method::POST, &send, "from the server")
            .await
            .0,
        202
    );
    assert_eq!(next_text(&mut ann).await, "from the server");
    let (status, body) = control(
        &s,
        reqwest::Method::POST,
        &format!("/v1/apps/other/connections/{id}/messages"),
        "x",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = control(
        &s,
        reqwest::Method::DELETE,
        &format!("/v1/apps/other/connections/{id}"),
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        s.api("/v1/apps/other/connections").await,
        serde_json::json!([])
    );

    // A message over the route's 1 KiB closes the connection with 1009;
    // the disconnect function hears of it, and a send fails clearly.
    ann.send(Message::text("x".repeat(2048))).await.unwrap();
    let (code, reason) = closed_with(&mut ann).await;
    assert_eq!(code, CloseCode::Size, "{reason}");
    s.wait_for_log("chat", &["leave"], &format!("disconnect {id} 1009"))
        .await;
    let (status, body) = control(&s, reqwest::Method::POST, &send, "late").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is not open"), "{body}");

    // A client's close, and a close from the control API with its code.
    let mut bob = connect(&s, "/rooms/den?name=bob").await;
    let bob_id = ask(&mut bob, "whoami").await.replace("id:", "");
    bob.close(None).await.unwrap();
    s.wait_for_log("chat", &["leave"], &format!("disconnect {bob_id} 1005"))
        .await;
    let mut cy = connect(&s, "/rooms/den?name=cy").await;
    let cy_id = ask(&mut cy, "whoami").await.replace("id:", "");
    let (status, body) = control(
        &s,
        reqwest::Method::DELETE,
        &format!("/v1/apps/chat/connections/{cy_id}?code=4000&reason=bye"),
        "",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        closed_with(&mut cy).await,
        (CloseCode::from(4000), "bye".into())
    );
    s.wait_for_log("chat", &["leave"], &format!("disconnect {cy_id} 4000 bye"))
        .await;

    // The policy's API key, given as a browser must (a query parameter),
    // reaches neither the function nor the invocation records.
    let token = s.token();
    let mut member = connect(&s, &format!("/members?x=1&access_token={token}")).await;
    // No room parameter and no name on this route.
    assert_eq!(ask(&mut member, "hi").await, "  (text): hi");
    assert_eq!(ask(&mut member, "path").await, "/members?x=1");
    // Records are written in the background.
    let mut records = String::new();
    for _ in 0..100 {
        records = s
            .api("/v1/apps/chat/invocations?limit=1000")
            .await
            .to_string();
        if records.contains("/members?x=1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(records.contains("/members?x=1"), "{records}");
    assert!(
        !records.contains(&token),
        "the token is in the records: {records}"
    );

    // With CORS in its policy, a route takes pages of the listed origins
    // only (and clients that are no browser).
    let (status, body) = refused_from(&s, "/site", Some("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("allows only https://game.example"), "{body}");
    let mut page = connect_from(&s, "/site", Some("https://game.example")).await;
    assert_eq!(ask(&mut page, "hi").await, "  (text): hi");
    connect(&s, "/site").await;

    // No message either way for idle_timeout_s closes with 1001.
    let mut quiet = connect(&s, "/quiet").await;
    let (code, reason) = closed_with(&mut quiet).await;
    assert_eq!(code, CloseCode::Away, "{reason}");
    assert!(reason.contains("idle for 1 s"), "{reason}");

    // A deploy moves the app to a new revision: its open connections
    // close with 1012, and new ones get the new revision.
    let mut dan = connect(&s, "/rooms/den?name=dan").await;
    let dan_id = ask(&mut dan, "whoami").await.replace("id:", "");
    let next = app_dir(&CHAT.replace(
        "[functions.leave]",
        "[functions.leave]\nenv = { REVISION = \"2\" }",
    ));
    s.deploy(next.path());
    let (code, reason) = closed_with(&mut dan).await;
    assert_eq!(code, CloseCode::Restart, "{reason}");
    s.wait_for_log("chat", &["leave"], &format!("disconnect {dan_id} 1012"))
        .await;
    let mut eve = connect(&s, "/rooms/den?name=eve").await;
    assert_eq!(ask(&mut eve, "hi").await, "den eve (text): hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_caps_refuse_the_next_connection() {
    let s = Server::start(&["--max-app-connections", "2"]);
    let app = app_dir(CHAT);
    s.deploy(app.path());
    let mut reader = connect(&s, "/rooms/a?name=reader").await;
    let reader_id = ask(&mut reader, "whoami").await.replace("id:", "");
    let mut sleeper = connect(&s, "/rooms/a?name=sleeper").await;
    let sleeper_id = ask(&mut sleeper, "whoami").await.replace("id:", "");

    // The app's cap: a third connection is refused with 503.
    let (status, body) = refused(&s, "/rooms/a?name=third").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("maximum of 2 WebSocket connections"),
        "{body}"
    );

    // The sleeper never reads: sends to it fill the socket, then its send
    // buffer, and it is cut off; the reader keeps receiving throughout.
    let chunk = "z".repeat(64 << 10);
    let send = format!("/v1/apps/chat/connections/{sleeper_id}/messages");
    let mut cut = None;
    for i in 0..2000 {
        let (status, body) = control(&s, reqwest::Method::POST, &send, &chunk).await;
        if status != 202 {
            cut = Some((i, status, body));
            break;
        }
    }
    let (sent, status, body) = cut.expect("2000 messages of 64 KiB never filled the buffer");
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("reads too slowly"), "{body}");
    // The socket's kernel buffers take some MiB first, then the 256 KiB
    // the node keeps for it.
    assert!(
        (4..400).contains(&sent),
        "cut off after {sent} messages of 64 KiB"
    );
    let (status, _) = control(
        &s,
        reqwest::Method::POST,
        &format!("/v1/apps/chat/connections/{reader_id}/messages"),
        "still here",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(next_text(&mut reader).await, "still here");
    s.wait_for_log("chat", &["leave"], &format!("disconnect {sleeper_id} 1008"))
        .await;
    drop(sleeper);

    // Its place is free again.
    let mut third = connect(&s, "/rooms/a?name=third").await;
    assert_eq!(ask(&mut third, "hi").await, "a third (text): hi");
    let listed = s.api("/v1/apps/chat/connections").await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}
