//! Outbound HTTP: `GET /...?url=http://host/path` fetches the URL and answers
//! with its status and body, or 502 and the error (for instance
//! `HttpRequestDenied` when the host is not in `allowed_outbound_hosts`).

use std::io::{Read as _, Write as _};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

struct Fetch;

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

fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return Err(format!("unsupported url {url:?}"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&scheme)).map_err(|_| "bad scheme")?;
    req.set_authority(Some(authority))
        .map_err(|_| "bad authority")?;
    req.set_path_with_query(Some(path))
        .map_err(|_| "bad path")?;
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    let resp = loop {
        if let Some(r) = future.get() {
            break r
                .map_err(|_| "response already taken".to_string())?
                .map_err(|e| format!("{e:?}"))?;
        }
        future.subscribe().block();
    };
    let status = resp.status();
    let body = resp.consume().map_err(|_| "no body")?;
    let mut stream = body.stream().map_err(|_| "no stream")?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok((status, bytes))
}

impl wasi::exports::http::incoming_handler::Guest for Fetch {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let url = path
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("url=")))
            .unwrap_or("")
            .to_string();
        match fetch(&url) {
            Ok((status, body)) => respond(out, status, &body),
            Err(e) => respond(out, 502, format!("outbound request failed: {e}").as_bytes()),
        }
    }
}

wasi::http::proxy::export!(Fetch);
