//! Site: answers every request with a page configured by its environment —
//! `BODY`, `CONTENT_TYPE` (default `text/html`) and `HEADERS` (extra
//! response headers, one `name: value` per line). One function per page
//! serves a static site from the manifest alone (the tenant-isolation
//! tests use it for pages and scripts a hostile tenant would serve).

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Site;

impl wasi::exports::http::incoming_handler::Guest for Site {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let var = |k: &str| std::env::var(k).ok();
        let mut headers = vec![(
            "content-type".to_string(),
            var("CONTENT_TYPE")
                .unwrap_or_else(|| "text/html".into())
                .into_bytes(),
        )];
        for line in var("HEADERS").unwrap_or_default().lines() {
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().as_bytes().to_vec()));
            }
        }
        let resp = OutgoingResponse::new(Fields::from_list(&headers).unwrap());
        let body = resp.body().unwrap();
        ResponseOutparam::set(response_out, Ok(resp));
        let out = body.write().unwrap();
        for chunk in var("BODY").unwrap_or_default().as_bytes().chunks(4096) {
            out.blocking_write_and_flush(chunk).unwrap();
        }
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasi::http::proxy::export!(Site);
