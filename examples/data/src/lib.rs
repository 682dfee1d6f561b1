//! Data services from a guest: `wasi:keyvalue`, `wasi:config` and
//! `nimbus:data` (KV extras and documents), behind a small HTTP API.
//!
//! * `POST /incr/STORE/KEY` — atomic increment by 1; answers the new value
//! * `GET|PUT|DELETE /kv/STORE/KEY[?ttl_ms=N]` — a value (PUT body)
//! * `POST /cas/STORE/KEY[?expected=OLD]` — compare-and-swap to the body
//! * `GET /list/STORE?prefix=P&cursor=C&limit=N` — keys by prefix, as JSON
//! * `GET /batch/STORE` — set-many, get-many, delete-many round trip
//! * `GET|PUT|PATCH|DELETE /docs/COLL/ID[?expected=V]` — a document (JSON body)
//! * `POST /query/COLL` — a query (JSON body), answers the result JSON
//! * `GET /config/KEY` — a configuration variable
//! * `GET /print/KEY` — prints a variable to stdout (logs redact secrets)
//! * `GET|PUT|DELETE /blob/BUCKET/KEY` — an object (nimbus:data/blobs)
//! * `GET /blobs/BUCKET?prefix=P` — object keys, one per line
//!
//! Errors come back as 403 (store not granted), 404 (no such store,
//! collection, key or variable), 409 (conflict), 400/500 with the message.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/data",
        world: "nimbus:data/guest",
        generate_all,
    });
}

use bindings::nimbus::data::{blobs, documents, kv_extras};
use bindings::wasi::config::store as config;
use bindings::wasi::keyvalue::{atomics, batch, store};
use std::io::{Read as _, Write as _};
use ::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Data;

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

fn read_body(req: &IncomingRequest) -> Vec<u8> {
    let body = req.consume().expect("body");
    let mut stream = body.stream().expect("stream");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read body");
    bytes
}

fn kv_error(e: store::Error) -> (u16, String) {
    match e {
        store::Error::NoSuchStore => (404, "no-such-store".into()),
        store::Error::AccessDenied => (403, "access-denied".into()),
        store::Error::Other(m) => (500, m),
    }
}

fn doc_error(e: documents::Error) -> (u16, String) {
    match e {
        documents::Error::NoSuchCollection(m) => (404, m),
        documents::Error::Conflict(m) => (409, m),
        documents::Error::Invalid(m) => (400, m),
        documents::Error::Other(m) => (500, m),
    }
}

fn blob_error(e: blobs::Error) -> (u16, String) {
    match e {
        blobs::Error::NoSuchBucket(m) => (404, m),
        blobs::Error::TooLarge(m) => (413, m),
        blobs::Error::Other(m) => (500, m),
    }
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

fn doc_json(d: &documents::Document) -> String {
    format!(
        "{{\"id\":\"{}\",\"version\":{},\"doc\":{}}}",
        d.id, d.version, d.json
    )
}

fn handle(req: &IncomingRequest) -> Result<(u16, Vec<u8>), (u16, String)> {
    let pq = req.path_with_query().unwrap_or_default();
    let (path, query) = pq.split_once('?').unwrap_or((&pq, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    let method = req.method();
    match (parts.as_slice(), &method) {
        (["incr", s, k], _) => {
            let b = store::open(s).map_err(kv_error)?;
            let n = atomics::increment(&b, k, 1).map_err(kv_error)?;
            Ok((200, n.to_string().into_bytes()))
        }
        (["kv", s, k], Method::Get) => {
            let b = store::open(s).map_err(kv_error)?;
            match b.get(k).map_err(kv_error)? {
                Some(v) => Ok((200, v)),
                None => Err((404, format!("no key {k}"))),
            }
        }
        (["kv", s, k], Method::Put) => {
            let body = read_body(req);
            match param(query, "ttl_ms").and_then(|t| t.parse().ok()) {
                Some(ttl) => kv_extras::set_with_ttl(s, k, &body, ttl).map_err(kv_error)?,
                None => store::open(s).map_err(kv_error)?.set(k, &body).map_err(kv_error)?,
            }
            Ok((204, Vec::new()))
        }
        (["kv", s, k], Method::Delete) => {
            store::open(s).map_err(kv_error)?.delete(k).map_err(kv_error)?;
            Ok((204, Vec::new()))
        }
        (["cas", s, k], _) => {
            let body = read_body(req);
            let expected = param(query, "expected").map(|e| e.as_bytes().to_vec());
            if kv_extras::compare_and_swap(s, k, expected.as_deref(), &body).map_err(kv_error)? {
                Ok((200, b"swapped".to_vec()))
            } else {
                Err((409, "conflict: the value was not the expected one".into()))
            }
        }
        (["list", s], _) => {
            let (keys, cursor) = kv_extras::list_prefix(
                s,
                param(query, "prefix").unwrap_or(""),
                param(query, "cursor"),
                param(query, "limit").and_then(|l| l.parse().ok()).unwrap_or(100),
            )
            .map_err(kv_error)?;
            let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
            let cursor = cursor.map_or("null".to_string(), |c| format!("\"{c}\""));
            Ok((200, format!("{{\"keys\":[{}],\"cursor\":{cursor}}}", keys.join(",")).into_bytes()))
        }
        (["getmany", s, k], _) => {
            // The same key `n` times in one batch read (for the host's caps).
            let n: usize = param(query, "n").and_then(|v| v.parse().ok()).unwrap_or(1);
            let b = store::open(s).map_err(kv_error)?;
            let keys = vec![k.to_string(); n];
            let got = batch::get_many(&b, &keys).map_err(kv_error)?;
            let bytes: usize = got.iter().flatten().map(|(_, v)| v.len()).sum();
            Ok((200, format!("{} values, {bytes} bytes", got.len()).into_bytes()))
        }
        (["batch", s], _) => {
            let b = store::open(s).map_err(kv_error)?;
            batch::set_many(&b, &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())])
                .map_err(kv_error)?;
            let got = batch::get_many(&b, &["a".into(), "b".into(), "zz".into()]).map_err(kv_error)?;
            batch::delete_many(&b, &["a".into(), "b".into()]).map_err(kv_error)?;
            let after = b.exists("a").map_err(kv_error)?;
            let got: Vec<String> = got
                .iter()
                .map(|g| match g {
                    Some((k, v)) => format!("{k}={}", String::from_utf8_lossy(v)),
                    None => "-".into(),
                })
                .collect();
            Ok((200, format!("{} exists-after-delete={after}", got.join(",")).into_bytes()))
        }
        (["docs", c, id], Method::Get) => match documents::get(c, id).map_err(doc_error)? {
            Some(d) => Ok((200, doc_json(&d).into_bytes())),
            None => Err((404, format!("no document {id}"))),
        },
        (["docs", c, id], Method::Put | Method::Patch) => {
            let body = String::from_utf8_lossy(&read_body(req)).into_owned();
            let expected = param(query, "expected").and_then(|v| v.parse().ok());
            let d = if matches!(method, Method::Put) {
                documents::put(c, id, &body, expected)
            } else {
                documents::patch(c, id, &body, expected)
            }
            .map_err(doc_error)?;
            Ok((200, doc_json(&d).into_bytes()))
        }
        (["docs", c, id], Method::Delete) => {
            let existed = documents::delete(c, id).map_err(doc_error)?;
            Ok((200, existed.to_string().into_bytes()))
        }
        (["query", c], _) => {
            let body = String::from_utf8_lossy(&read_body(req)).into_owned();
            Ok((200, documents::query(c, &body).map_err(doc_error)?.into_bytes()))
        }
        (["config", k], _) => match config::get(k).map_err(|e| (500, format!("{e:?}")))? {
            Some(v) => Ok((200, v.into_bytes())),
            None => Err((404, format!("no variable {k}"))),
        },
        (["print", k], _) => {
            let v = config::get(k).map_err(|e| (500, format!("{e:?}")))?.unwrap_or_default();
            println!("the value of {k} is {v}");
            Ok((200, b"printed".to_vec()))
        }
        (["blob", b, k], Method::Get) => match blobs::get(b, k).map_err(blob_error)? {
            Some(v) => Ok((200, v)),
            None => Err((404, format!("no object {k}"))),
        },
        (["blob", b, k], Method::Put) => {
            let body = read_body(req);
            let info = blobs::put(b, k, &body, Some("application/octet-stream")).map_err(blob_error)?;
            Ok((200, info.etag.into_bytes()))
        }
        (["blob", b, k], Method::Delete) => {
            let existed = blobs::delete(b, k).map_err(blob_error)?;
            Ok((200, existed.to_string().into_bytes()))
        }
        (["blobs", b], _) => {
            let list = blobs::list_objects(b, param(query, "prefix").unwrap_or(""), None, 1000)
                .map_err(blob_error)?;
            let keys: Vec<String> = list.into_iter().map(|o| o.key).collect();
            Ok((200, keys.join("\n").into_bytes()))
        }
        _ => Err((404, format!("unknown route {path}"))),
    }
}

impl ::wasi::exports::http::incoming_handler::Guest for Data {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match handle(&request) {
            Ok((status, body)) => respond(out, status, &body),
            Err((status, msg)) => respond(out, status, msg.as_bytes()),
        }
    }
}

::wasi::http::proxy::export!(Data);
