//! Browser-form uploads (POST Object): what Nimbus adds to `s3s`'s.
//!
//! `s3s` parses the form, checks its SigV4 signature and its policy's
//! expiry and conditions (`content-length-range` included), answers
//! `success_action_status` and `success_action_redirect`, and passes the
//! upload on as a PutObject. It reads the form's file into memory whole,
//! before the access check, so [`FormGate`] bounds that in front of it: a
//! form's length must be declared and at most [`MAX_FORM_FILE_BYTES`] (plus
//! its fields), checked from the headers before any body is read, and at
//! most [`FORM_UPLOADS_AT_ONCE`] forms are read at once per node (others
//! are answered `503 SlowDown`). So whoever sends forms — signed or not —
//! holds at most that much of a node's memory.
//!
//! `s3s` does not substitute `${filename}` in the `key` field (S3 does),
//! nor keep the file's name, and reads the canned ACL from `x-amz-acl`
//! where S3's forms name it `acl`: [`Sniffed`] keeps the form's first bytes
//! as they stream past, and [`parse`] reads the fields and the file part's
//! name from them with `multer`.

use bytes::Bytes;
use s3s::{S3Result, s3_error};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The largest file a form upload may carry (larger browser uploads use a
/// presigned multipart upload).
pub const MAX_FORM_FILE_BYTES: u64 = 64 << 20;
/// The most a form's fields (all but the file) may hold together.
pub(crate) const MAX_FORM_FIELDS_BYTES: usize = 64 << 10;
/// The most one field may hold (a policy document is a few KiB).
pub(crate) const MAX_FORM_FIELD_BYTES: usize = 20 << 10;
/// Form uploads read at once per node.
pub const FORM_UPLOADS_AT_ONCE: usize = 8;

/// Whether a request is a form upload: a POST of `multipart/form-data`.
pub(crate) fn is_form(req: &http::Request<hyper::body::Incoming>) -> bool {
    req.method() == http::Method::POST
        && req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            })
}

/// Checks a form upload's declared length against the limits, from its
/// headers alone.
pub(crate) fn check_length(headers: &http::HeaderMap, max_file: u64) -> S3Result<()> {
    let Some(len) = headers.get(http::header::CONTENT_LENGTH) else {
        return Err(s3_error!(
            MissingContentLength,
            "a form upload must declare its Content-Length (browsers do)"
        ));
    };
    let len: u64 = len
        .to_str()
        .ok()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "Content-Length is not a number"))?;
    // The fields, and the boundaries and part headers around them.
    let framing = 2 * MAX_FORM_FIELDS_BYTES as u64;
    if len > max_file + framing {
        return Err(s3_error!(
            EntityTooLarge,
            "a form upload carries a file of at most {max_file} bytes; this one is {len} bytes: upload larger files with a presigned multipart upload"
        ));
    }
    Ok(())
}

/// Semaphore of the form uploads being read.
#[derive(Clone)]
pub(crate) struct FormGate(Arc<tokio::sync::Semaphore>);

impl FormGate {
    pub(crate) fn new() -> FormGate {
        FormGate(Arc::new(tokio::sync::Semaphore::new(FORM_UPLOADS_AT_ONCE)))
    }

    /// A place for one more form upload, held until its answer is made;
    /// `SlowDown` when all are taken.
    pub(crate) fn enter(&self) -> S3Result<tokio::sync::OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            s3_error!(
                SlowDown,
                "too many form uploads at once on this node: retry shortly"
            )
        })
    }
}

/// The first bytes of a form upload, kept as it streams to `s3s` (the
/// fields and the file part's headers come first), with its boundary.
#[derive(Clone)]
pub(crate) struct FormHead {
    boundary: String,
    bytes: Arc<Mutex<Vec<u8>>>,
    /// The key as the form gave it and as stored, once `${filename}` was
    /// substituted: `s3s` answers with the form's, so the answer is
    /// rewritten ([`FormHead::rewrite`]).
    substituted: Arc<Mutex<Option<(String, String)>>>,
}

/// How much of a form is kept: its fields and the file part's headers.
const HEAD_BYTES: usize = 2 * MAX_FORM_FIELDS_BYTES;

impl FormHead {
    /// For a form with this `Content-Type`; `None` if it names no boundary.
    pub(crate) fn new(headers: &http::HeaderMap) -> Option<FormHead> {
        let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
        Some(FormHead {
            boundary: multer::parse_boundary(ct).ok()?,
            bytes: Arc::new(Mutex::new(Vec::new())),
            substituted: Arc::new(Mutex::new(None)),
        })
    }

    /// Substitutes `${filename}` in a form's key (S3's rule) with the
    /// name of the form's file, and remembers it for the answer.
    pub(crate) async fn resolve_key(&self, key: &str) -> S3Result<String> {
        if !key.contains("${filename}") {
            return Ok(key.to_string());
        }
        let resolved = substitute(key, parse(self).await.file_name.as_deref())?;
        *self.substituted.lock().expect("form key lock") =
            Some((key.to_string(), resolved.clone()));
        Ok(resolved)
    }

    /// `s3s`'s answer to the upload, naming the key stored rather than the
    /// form's `${filename}`: in the `201` document (`Location`, `Key`) and
    /// in a `303` redirect's `key` parameter.
    ///
    /// A broken policy condition is answered as S3 answers it, `403
    /// AccessDenied` ("Invalid according to Policy"), where `s3s` answers
    /// `400 InvalidPolicyDocument`.
    pub(crate) async fn rewrite(&self, answer: s3s::HttpResponse) -> s3s::HttpResponse {
        let substituted = self.substituted.lock().expect("form key lock").clone();
        if answer.status() == http::StatusCode::BAD_REQUEST {
            return condition_failed(answer).await;
        }
        let Some((raw, key)) = substituted else {
            return answer;
        };
        let (mut parts, body) = answer.into_parts();
        if parts.status == http::StatusCode::SEE_OTHER
            && let Some(loc) = parts.headers.get(http::header::LOCATION)
            && let Ok(loc) = loc.to_str()
            && let Some((base, query)) = loc.split_once('?')
        {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                let v = if k == "key" && v == raw {
                    key.as_str().into()
                } else {
                    v
                };
                q.append_pair(&k, &v);
            }
            if let Ok(v) = format!("{base}?{}", q.finish()).parse() {
                parts.headers.insert(http::header::LOCATION, v);
            }
            return http::Response::from_parts(parts, body);
        }
        if parts.status != http::StatusCode::CREATED {
            return http::Response::from_parts(parts, body);
        }
        let Ok(bytes) = http_body_util::BodyExt::collect(body)
            .await
            .map(|b| b.to_bytes())
        else {
            return http::Response::from_parts(parts, s3s::Body::empty());
        };
        let xml = String::from_utf8_lossy(&bytes).replace(&xml_escape(&raw), &xml_escape(&key));
        parts.headers.remove(http::header::CONTENT_LENGTH);
        http::Response::from_parts(parts, s3s::Body::from(xml))
    }
}

/// `s3s`'s `400 InvalidPolicyDocument` for a condition the form broke, as
/// S3's `403 AccessDenied`; any other answer as it is.
async fn condition_failed(answer: s3s::HttpResponse) -> s3s::HttpResponse {
    let (mut parts, body) = answer.into_parts();
    let Ok(bytes) = http_body_util::BodyExt::collect(body)
        .await
        .map(|b| b.to_bytes())
    else {
        return http::Response::from_parts(parts, s3s::Body::empty());
    };
    let text = String::from_utf8_lossy(&bytes);
    let broken = text.contains("<Code>InvalidPolicyDocument</Code>")
        && text.contains("<Message>Policy condition");
    if !broken {
        return http::Response::from_parts(parts, s3s::Body::from(bytes));
    }
    let why = text
        .split_once("<Message>")
        .and_then(|(_, m)| m.split_once("</Message>"))
        .map_or("", |(m, _)| m);
    parts.status = http::StatusCode::FORBIDDEN;
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Invalid according to Policy: {why}</Message></Error>"
    );
    http::Response::from_parts(parts, s3s::Body::from(xml))
}

/// Text as XML writes it (what `s3s`'s writer escapes).
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A request body that copies its first [`HEAD_BYTES`] into a [`FormHead`].
pub(crate) struct Sniffed<B> {
    inner: B,
    head: FormHead,
}

impl<B> Sniffed<B> {
    pub(crate) fn new(inner: B, head: FormHead) -> Sniffed<B> {
        Sniffed { inner, head }
    }
}

impl<B> http_body::Body for Sniffed<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let mut kept = self.head.bytes.lock().expect("form head lock");
            let room = HEAD_BYTES.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What the kept head of a form says: its fields before the file (names in
/// lower case) and the name of the file as its part gave it (`filename=`),
/// without any directory a client put in front.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) file_name: Option<String>,
}

pub(crate) async fn parse(head: &FormHead) -> Parsed {
    let bytes = Bytes::from(head.bytes.lock().expect("form head lock").clone());
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut form = multer::Multipart::new(stream, head.boundary.clone());
    let mut parsed = Parsed::default();
    // Parts before the file are fields; past what was kept, parsing stops.
    while let Ok(Some(part)) = form.next_field().await {
        let name = part.name().unwrap_or_default().to_ascii_lowercase();
        if name == "file" {
            parsed.file_name = part
                .file_name()
                .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f).to_string());
            break;
        }
        match part.text().await {
            Ok(v) => parsed.fields.push((name, v)),
            Err(_) => break,
        }
    }
    parsed
}

/// S3's `${filename}` in a form's `key`: replaced by the file's name.
pub(crate) fn substitute(key: &str, file_name: Option<&str>) -> S3Result<String> {
    if !key.contains("${filename}") {
        return Ok(key.to_string());
    }
    match file_name {
        Some(f) if !f.is_empty() => Ok(key.replace("${filename}", f)),
        _ => Err(s3_error!(
            InvalidArgument,
            "the key uses ${{filename}}, but the form's file part has no filename"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_name_is_read_from_the_form_head() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "multipart/form-data; boundary=xyz".parse().unwrap(),
        );
        let head = FormHead::new(&h).unwrap();
        head.bytes.lock().unwrap().extend_from_slice(
            b"--xyz\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nu/${filename}\r\n\
              --xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\\\pics\\\\cat.png\"\r\n\
              Content-Type: image/png\r\n\r\nPNG...(cut off here)",
        );
        let parsed = parse(&head).await;
        assert_eq!(
            parsed.fields,
            vec![("key".to_string(), "u/${filename}".to_string())]
        );
        let name = parsed.file_name;
        assert_eq!(name.as_deref(), Some("cat.png"));
        assert_eq!(
            substitute("u/${filename}", name.as_deref()).unwrap(),
            "u/cat.png"
        );
        assert_eq!(substitute("u/plain", None).unwrap(), "u/plain");
        assert!(substitute("u/${filename}", None).is_err());
    }

    #[test]
    fn a_form_length_is_checked_from_its_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(
            check_length(&h, 100).unwrap_err().code(),
            &s3s::S3ErrorCode::MissingContentLength
        );
        h.insert(http::header::CONTENT_LENGTH, "6000000000".parse().unwrap());
        assert_eq!(
            check_length(&h, MAX_FORM_FILE_BYTES).unwrap_err().code(),
            &s3s::S3ErrorCode::EntityTooLarge
        );
        h.insert(http::header::CONTENT_LENGTH, "1000".parse().unwrap());
        assert!(check_length(&h, MAX_FORM_FILE_BYTES).is_ok());
    }
}
