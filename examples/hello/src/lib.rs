//! The smallest function: answers "hello" to any request.

use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers =
            Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())]).unwrap();
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().unwrap();
        ResponseOutparam::set(response_out, Ok(resp));
        let mut out = body.write().unwrap();
        out.write_all(b"hello").unwrap();
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasi::http::proxy::export!(Hello);
