//! Echo: `GET` answers a JSON description of the request (method, path,
//! route parameters Nimbus passed as `nimbus-param-*` headers, the verified
//! caller from `nimbus-auth-*` headers, whether credentials reached the
//! guest, a greeting from the environment); other methods stream the request body straight
//! back, chunk by chunk, never holding it whole.

use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Echo;

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

impl wasi::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = method_name(&request.method());
        let path = request.path_with_query().unwrap_or_default();
        let mut params = Vec::new();
        let mut auth = Vec::new();
        let mut credentials = false;
        let mut content_type = b"application/octet-stream".to_vec();
        for (name, value) in request.headers().entries() {
            if let Some(p) = name.strip_prefix("nimbus-param-") {
                params.push(format!(
                    "{}:{}",
                    json_string(p),
                    json_string(&String::from_utf8_lossy(&value))
                ));
            }
            if let Some(a) = name.strip_prefix("nimbus-auth-") {
                auth.push(format!(
                    "{}:{}",
                    json_string(a),
                    json_string(&String::from_utf8_lossy(&value))
                ));
            }
            if name == "authorization" || name == "x-api-key" {
                credentials = true;
            }
            if name == "content-type" {
                content_type = value;
            }
        }
        println!("echo: {method} {path}");

        if method == "GET" || method == "HEAD" {
            let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
            let json = format!(
                "{{\"method\":{},\"path\":{},\"params\":{{{}}},\"auth\":{{{}}},\"credentials\":{},\"greeting\":{}}}",
                json_string(&method),
                json_string(&path),
                params.join(","),
                auth.join(","),
                credentials,
                json_string(&greeting)
            );
            let headers =
                Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
                    .unwrap();
            let resp = OutgoingResponse::new(headers);
            let body = resp.body().unwrap();
            ResponseOutparam::set(response_out, Ok(resp));
            let mut out = body.write().unwrap();
            out.write_all(json.as_bytes()).unwrap();
            drop(out);
            OutgoingBody::finish(body, None).unwrap();
            return;
        }

        let headers = Fields::from_list(&[("content-type".to_string(), content_type)]).unwrap();
        let resp = OutgoingResponse::new(headers);
        let out_body = resp.body().unwrap();
        ResponseOutparam::set(response_out, Ok(resp));
        let in_body = request.consume().unwrap();
        let mut input = in_body.stream().unwrap();
        let mut output = out_body.write().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = std::io::Read::read(&mut input, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            output.write_all(&buf[..n]).unwrap();
        }
        drop(input);
        IncomingBody::finish(in_body);
        drop(output);
        OutgoingBody::finish(out_body, None).unwrap();
        eprintln!("echo: streamed {total} bytes");
    }
}

wasi::http::proxy::export!(Echo);
