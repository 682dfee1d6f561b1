//! The server's side of the opening handshake (RFC 6455 §4.2): checking
//! an upgrade request and answering 101. The bytes after it are
//! tungstenite's.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use nimbus_runtime::{ResponseBody, text_response};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The `Sec-WebSocket-Accept` value for a valid upgrade request, or what
/// makes it not one.
pub(crate) fn accept_key<B>(req: &Request<B>) -> Result<String, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if req.method() != http::Method::GET {
        return Err("an upgrade must be a GET request");
    }
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(
            "the request asks for no WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
        );
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    match req.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(k) if is_nonce(k.as_bytes()) => Ok(derive_accept_key(k.as_bytes())),
        _ => Err("Sec-WebSocket-Key is missing or not 16 bytes in base64"),
    }
}

/// Whether `key` is 16 bytes in base64: 22 base64 digits and `==`.
fn is_nonce(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// The subprotocols the client offers (`Sec-WebSocket-Protocol`), in order.
pub(crate) fn offered_protocols<B>(req: &Request<B>) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// 426 for a request to a WebSocket route that is not a valid upgrade.
pub(crate) fn not_an_upgrade(pattern: &str, why: &str) -> Response<ResponseBody> {
    let mut resp = text_response(
        StatusCode::UPGRADE_REQUIRED,
        format!("{pattern} is a WebSocket route and {why}: connect with a WebSocket client"),
    );
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    resp.headers_mut().insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    resp
}

/// The 101 answer, with the subprotocol the connect function chose.
pub(crate) fn switching(accept: &str, protocol: Option<HeaderValue>) -> Response<ResponseBody> {
    let mut resp = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::get("/ws");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn a_valid_upgrade_gets_the_rfc_accept_key() {
        // RFC 6455 §1.3's example.
        let r = req(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(accept_key(&r).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn what_is_not_an_upgrade_says_why() {
        assert!(
            accept_key(&req(&[]))
                .unwrap_err()
                .contains("no WebSocket upgrade")
        );
        let r = req(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert!(accept_key(&r).unwrap_err().contains("13"));
        let r = req(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
        ]);
        assert!(accept_key(&r).unwrap_err().contains("Sec-WebSocket-Key"));
        let r = req(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "not base64 at all, no!=="),
        ]);
        assert!(accept_key(&r).unwrap_err().contains("Sec-WebSocket-Key"));
    }

    #[test]
    fn offered_subprotocols_are_listed_in_order() {
        let r = req(&[
            ("sec-websocket-protocol", "chat.v2, chat.v1"),
            ("sec-websocket-protocol", "json"),
        ]);
        assert_eq!(offered_protocols(&r), ["chat.v2", "chat.v1", "json"]);
    }
}
