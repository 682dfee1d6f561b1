//! A WebSocket client for tests (tokio-tungstenite): connect to a node's
//! WebSocket route, read its messages and its close.

use super::Server;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn ws_url(s: &Server, path: &str) -> String {
    format!("{}{path}", s.url.replacen("http://", "ws://", 1))
}

pub async fn connect(s: &Server, path: &str) -> Client {
    connect_from(s, path, None).await
}

/// Connects as a page of `origin` would.
pub async fn connect_from(s: &Server, path: &str, origin: Option<&str>) -> Client {
    let (ws, resp) = tokio_tungstenite::connect_async(upgrade(s, path, origin))
        .await
        .unwrap_or_else(|e| panic!("connecting to {path}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

pub fn upgrade(
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
pub async fn refused(s: &Server, path: &str) -> (u16, String) {
    refused_from(s, path, None).await
}

pub async fn refused_from(s: &Server, path: &str, origin: Option<&str>) -> (u16, String) {
    match tokio_tungstenite::connect_async(upgrade(s, path, origin)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("connecting to {path} failed otherwise: {e}"),
        Ok(_) => panic!("connecting to {path} was accepted"),
    }
}

/// The next data message (pings and pongs skipped; a close fails).
pub async fn next_message(ws: &mut Client) -> Message {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no message within 10 s")
            .expect("the connection ended")
            .expect("reading failed");
        match msg {
            Message::Text(_) | Message::Binary(_) => return msg,
            Message::Close(f) => panic!("closed instead: {f:?}"),
            _ => {}
        }
    }
}

/// The next data message, as text.
pub async fn next_text(ws: &mut Client) -> String {
    match next_message(ws).await {
        Message::Text(t) => t.to_string(),
        Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
        _ => unreachable!("next_message answers data messages"),
    }
}

pub async fn ask(ws: &mut Client, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    next_text(ws).await
}

/// The close frame the server ends the connection with.
pub async fn closed_with(ws: &mut Client) -> (CloseCode, String) {
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

/// The next data message, which must be binary.
pub async fn next_binary(ws: &mut Client) -> Vec<u8> {
    match next_message(ws).await {
        Message::Binary(b) => b.to_vec(),
        other => panic!("text instead: {other:?}"),
    }
}
