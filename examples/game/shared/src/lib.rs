//! What the game's functions share: HTTP plumbing for `wasi:http` handlers
//! and the clock. The game rules live in `game-api`.

use std::io::{Read as _, Write as _};
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// An answer: status, content type and body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// An answer with no body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// An error as `{"error": message}`; every message says what to do.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message.into() }))
    }

    /// Sends it.
    pub fn send(self, out: ResponseOutparam) {
        let mut list = vec![("content-type".to_string(), self.content_type.as_bytes().to_vec())];
        list.extend(self.headers.into_iter().map(|(k, v)| (k, v.into_bytes())));
        let headers = Fields::from_list(&list).expect("valid headers");
        let resp = OutgoingResponse::new(headers);
        resp.set_status_code(self.status).expect("valid status");
        let body = resp.body().expect("body");
        ResponseOutparam::set(out, Ok(resp));
        let mut w = body.write().expect("stream");
        // `blocking_write_and_flush` takes at most 4096 bytes at a time.
        for chunk in self.body.chunks(4096) {
            w.write_all(chunk).expect("write body");
        }
        w.flush().expect("flush body");
        drop(w);
        OutgoingBody::finish(body, None).expect("finish body");
    }
}

/// The first value of a request header.
pub fn header(req: &IncomingRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

/// The request body, up to `limit` bytes (more is an error).
pub fn read_body(req: &IncomingRequest, limit: usize) -> Result<Vec<u8>, String> {
    let body = req.consume().map_err(|_| "the request body was already read")?;
    let stream = body.stream().map_err(|_| "the request body has no stream")?;
    let mut bytes = Vec::new();
    let mut limited = stream.take(limit as u64 + 1);
    limited
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the request body failed: {e}"))?;
    if bytes.len() > limit {
        return Err(format!("the request body is over {limit} bytes"));
    }
    Ok(bytes)
}

/// A query-string parameter (no percent-decoding: values here are numbers).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
