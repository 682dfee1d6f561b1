//! Streams a long response while it is being produced.
//!
//! * `?count=N&interval_ms=M` (default 5 and 200): server-sent events, one
//!   `data: tick i` event every M ms.
//! * `?bytes=N`: N bytes of generated data in 64 KiB writes, to show a large
//!   response needs no large guest memory.

use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Stream;

fn query(path: &str, key: &str) -> Option<u64> {
    let q = path.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        if k == key { v.parse().ok() } else { None }
    })
}

impl wasi::exports::http::incoming_handler::Guest for Stream {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if let Some(n) = query(&path, "bytes") {
            let headers = Fields::from_list(&[
                (
                    "content-type".to_string(),
                    b"application/octet-stream".to_vec(),
                ),
                ("content-length".to_string(), n.to_string().into_bytes()),
            ])
            .unwrap();
            let resp = OutgoingResponse::new(headers);
            let body = resp.body().unwrap();
            ResponseOutparam::set(response_out, Ok(resp));
            let mut out = body.write().unwrap();
            let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
            let mut left = n as usize;
            while left > 0 {
                let take = left.min(chunk.len());
                out.write_all(&chunk[..take]).unwrap();
                left -= take;
            }
            drop(out);
            OutgoingBody::finish(body, None).unwrap();
            return;
        }
        let count = query(&path, "count").unwrap_or(5);
        let interval = query(&path, "interval_ms").unwrap_or(200);
        let headers = Fields::from_list(&[
            ("content-type".to_string(), b"text/event-stream".to_vec()),
            ("cache-control".to_string(), b"no-cache".to_vec()),
        ])
        .unwrap();
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().unwrap();
        ResponseOutparam::set(response_out, Ok(resp));
        let mut out = body.write().unwrap();
        for i in 1..=count {
            // One write per event, so each event leaves in one chunk.
            out.write_all(format!("data: tick {i}\n\n").as_bytes())
                .unwrap();
            out.flush().unwrap();
            if i < count {
                std::thread::sleep(std::time::Duration::from_millis(interval));
            }
        }
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasi::http::proxy::export!(Stream);
