//! Uploads: a page, and the signed POST policy it uploads with.
//!
//! * `GET /uploads/` — the page (`page.html`)
//! * `GET /uploads/policy?type=MEDIA/TYPE` — `{"url", "fields"}`: the S3
//!   form-upload URL and the form fields, a SigV4-signed policy among them,
//!   allowing one upload of that media type (text, common images, PDF)
//!   under a fresh `uploads/RANDOM/` prefix, of at most 1 MiB, for the next
//!   10 minutes
//!
//! A demo: anyone who can load the page may upload. A real app puts the
//! policy route behind its login (`[policies]` with `auth = "jwt"`).
//!
//! The policy is signed with the app's S3 key from `wasi:config`
//! (`s3_endpoint`, `s3_bucket`, `s3_access_key`, and the secret
//! `s3_secret_key`), as any S3 client signs one; nothing in it is
//! Nimbus-specific.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/data",
        world: "nimbus:data/guest",
        generate_all,
    });
}

use ::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use base64::Engine as _;
use bindings::wasi::config::store as config;
use hmac::{Hmac, Mac};
use std::io::Write as _;

const REGION: &str = "us-east-1";
const MAX_BYTES: u64 = 1 << 20;
const VALID_SECS: u64 = 600;

struct Uploads;

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".into(), content_type.as_bytes().to_vec())])
        .expect("a valid header");
    let resp = OutgoingResponse::new(headers);
    resp.set_status_code(status).expect("a valid status");
    let b = resp.body().expect("a body");
    ResponseOutparam::set(out, Ok(resp));
    let mut w = b.write().expect("a stream");
    w.write_all(body).expect("written");
    drop(w);
    OutgoingBody::finish(b, None).expect("finished");
}

/// A civil date and time (UTC) from Unix seconds: (y, m, d, hh, mm, ss).
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn setting(name: &str) -> Result<String, String> {
    config::get(name)
        .map_err(|e| format!("reading {name}: {e:?}"))?
        .ok_or_else(|| format!("set the app's {name} (see examples/uploads/README.md)"))
}

/// The media types a page may upload (pinned in the policy: a public
/// object's type is what browsers render it as).
const TYPES: [&str; 6] = [
    "text/plain",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
];

/// A fresh 64-bit hex name (std's randomly seeded hasher, fed the time).
fn fresh_prefix(now_nanos: u128) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now_nanos);
    format!("{:016x}", h.finish())
}

/// The form fields of a POST upload of a `media_type` file, signed with
/// the app's key at `now`, under a prefix of its own (no upload replaces
/// another's).
fn policy(now: u64, now_nanos: u128, media_type: &str) -> Result<serde_json::Value, String> {
    if !TYPES.contains(&media_type) {
        return Err(format!("uploads are one of {TYPES:?}, not {media_type:?}"));
    }
    let prefix = format!("uploads/{}/", fresh_prefix(now_nanos));
    let endpoint = setting("s3_endpoint")?;
    let bucket = setting("s3_bucket")?;
    let key = setting("s3_access_key")?;
    let secret = setting("s3_secret_key")?;
    let (y, mo, d, h, mi, s) = civil(now);
    let date = format!("{y:04}{mo:02}{d:02}");
    let amz_date = format!("{date}T{h:02}{mi:02}{s:02}Z");
    let (ey, emo, ed, eh, emi, es) = civil(now + VALID_SECS);
    let expiration = format!("{ey:04}-{emo:02}-{ed:02}T{eh:02}:{emi:02}:{es:02}.000Z");
    let credential = format!("{key}/{date}/{REGION}/s3/aws4_request");
    let doc = serde_json::json!({
        "expiration": expiration,
        "conditions": [
            {"bucket": bucket},
            ["starts-with", "$key", prefix],
            {"acl": "public-read"},
            {"success_action_status": "201"},
            {"Content-Type": media_type},
            ["content-length-range", 1, MAX_BYTES],
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
        ],
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(doc.to_string());
    let signing = [date.as_str(), REGION, "s3", "aws4_request"]
        .iter()
        .fold(format!("AWS4{secret}").into_bytes(), |k, part| {
            hmac(&k, part.as_bytes())
        });
    let signature: String = hmac(&signing, encoded.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(serde_json::json!({
        "url": format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        "fields": {
            "key": format!("{prefix}${{filename}}"),
            "acl": "public-read",
            "Content-Type": media_type,
            "success_action_status": "201",
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": credential,
            "x-amz-date": amz_date,
            "policy": encoded,
            "x-amz-signature": signature,
        },
    }))
}

impl ::wasi::exports::http::incoming_handler::Guest for Uploads {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let pq = req.path_with_query().unwrap_or_default();
        let (path, query) = pq.split_once('?').unwrap_or((&pq, ""));
        match path {
            "/uploads/policy" => {
                let media_type = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("type="))
                    .unwrap_or_default()
                    .replace("%2F", "/")
                    .replace("%2f", "/");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                match policy(now.as_secs(), now.as_nanos(), &media_type) {
                    Ok(p) => respond(out, 200, "application/json", p.to_string().as_bytes()),
                    Err(e) => respond(out, 400, "text/plain", e.as_bytes()),
                }
            }
            "/uploads/" => respond(
                out,
                200,
                "text/html; charset=utf-8",
                include_str!("page.html").as_bytes(),
            ),
            _ => respond(out, 404, "text/plain", b"not found"),
        }
    }
}

::wasi::http::proxy::export!(Uploads);

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(super::civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(super::civil(1_798_761_599), (2026, 12, 31, 23, 59, 59));
    }
}
