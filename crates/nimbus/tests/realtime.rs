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
"#;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(s: &Server, path: &str) -> String {
    format!("{}{path}", s.url.replacen("http://", "ws://", 1))
}

async fn connect(s: &Server, path: &str) -> Client {
    let (ws, resp) = tokio_tungstenite::connect_async(ws_url(s, path))
        .await
        .unwrap_or_else(|e| panic!("connecting to {path}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// The HTTP answer that refused an upgrade: status and body.
async fn refused(s: &Server, path: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(ws_url(s, path)).await {
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

    // The policy's API key, given as a browser must (a query parameter).
    let mut member = connect(&s, &format!("/members?access_token={}", s.token())).await;
    // No room parameter and no name on this route.
    assert_eq!(ask(&mut member, "hi").await, "  (text): hi");
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
    assert!(
        sent > 16,
        "cut off after {sent} messages: before its buffer could fill"
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
