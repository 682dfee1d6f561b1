//! Browser-form uploads (POST Object): what Nimbus adds to `s3s`'s.
//!
//! `s3s` parses the form, checks its SigV4 signature and its policy's
//! expiry and conditions (`content-length-range` included), answers
//! `success_action_status` and `success_action_redirect`, and passes the
//! upload on as a PutObject. It reads the form's file into memory whole,
//! before the access check, so [`FormGate`] bounds that in front of it: a
//! form's length must be declared and at most [`MAX_FORM_FILE_BYTES`] (plus
//! its fields), checked from the headers before any body is read, and at
//! most [`FORM_UPLOADS_AT_ONCE`] forms are read at once per node,
//! [`FORM_UPLOADS_PER_CLIENT`] from one address (others are answered `503
//! SlowDown`); a form without a policy is cut short once its file part
//! starts ([`Sniffed`]). So whoever sends forms holds at most that much of
//! a node's memory, and an unsigned sender holds a place only while its
//! fields arrive.
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
/// Form uploads read at once from one client address.
pub const FORM_UPLOADS_PER_CLIENT: usize = 2;

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

/// The form uploads being read: at most [`FORM_UPLOADS_AT_ONCE`] on the
/// node, and [`FORM_UPLOADS_PER_CLIENT`] from one client address.
#[derive(Clone)]
pub(crate) struct FormGate {
    all: Arc<tokio::sync::Semaphore>,
    clients: Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// A place among the forms being read, given back when dropped.
pub(crate) struct FormPlace {
    _all: tokio::sync::OwnedSemaphorePermit,
    client: Option<(FormGate, std::net::IpAddr)>,
}

impl Drop for FormPlace {
    fn drop(&mut self) {
        if let Some((gate, ip)) = &self.client {
            let mut clients = gate.clients.lock().expect("form clients lock");
            if let Some(n) = clients.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    clients.remove(ip);
                }
            }
        }
    }
}

impl FormGate {
    pub(crate) fn new() -> FormGate {
        FormGate {
            all: Arc::new(tokio::sync::Semaphore::new(FORM_UPLOADS_AT_ONCE)),
            clients: Arc::new(Mutex::new(std::collections::HashMap::new())),
        }
    }

    /// A place for one more form upload from `client`, held until its
    /// answer is made; `SlowDown` when the node's or the client's are all
    /// taken.
    pub(crate) fn enter(&self, client: Option<std::net::IpAddr>) -> S3Result<FormPlace> {
        let busy = || {
            s3_error!(
                SlowDown,
                "too many form uploads at once on this node or from this client: retry shortly"
            )
        };
        if let Some(ip) = client {
            let clients = self.clients.lock().expect("form clients lock");
            if clients.get(&ip).copied().unwrap_or(0) >= FORM_UPLOADS_PER_CLIENT {
                return Err(busy());
            }
        }
        let all = self.all.clone().try_acquire_owned().map_err(|_| busy())?;
        if let Some(ip) = client {
            let mut clients = self.clients.lock().expect("form clients lock");
            let n = clients.entry(ip).or_insert(0);
            if *n >= FORM_UPLOADS_PER_CLIENT {
                return Err(busy());
            }
            *n += 1;
        }
        Ok(FormPlace {
            _all: all,
            client: client.map(|ip| (self.clone(), ip)),
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
    /// Set when the form was cut short for having no policy.
    unsigned: Arc<std::sync::atomic::AtomicBool>,
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
            unsigned: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Substitutes `${filename}` in a form's key (S3's rule) with the
    /// name of the form's file, and remembers it for the answer.
    pub(crate) fn resolve_key(&self, key: &str, parsed: &Parsed) -> S3Result<String> {
        if !key.contains("${filename}") {
            return Ok(key.to_string());
        }
        let resolved = substitute(key, parsed.file_name.as_deref())?;
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
        if self.unsigned.load(std::sync::atomic::Ordering::Relaxed) {
            return refused_unsigned();
        }
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

/// The answer to a form without a policy, as S3 answers an unsigned write.
fn refused_unsigned() -> s3s::HttpResponse {
    crate::endpoint::error_response(&s3_error!(
        AccessDenied,
        "a form upload needs a policy signed with a key from `nimbus keys create --s3`"
    ))
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
/// Once the file part's headers have come, a form without a `policy` and
/// a signature field ends with [`FormError::Unsigned`].
pub(crate) struct Sniffed<B> {
    inner: B,
    head: FormHead,
    /// The head showed a policy and a signature: nothing more to look at.
    signed: bool,
}

impl<B> Sniffed<B> {
    pub(crate) fn new(inner: B, head: FormHead) -> Sniffed<B> {
        Sniffed {
            inner,
            head,
            signed: false,
        }
    }
}

/// Why a form's body stopped being read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormError {
    /// The connection's body failed.
    #[error("{0}")]
    Body(String),
    /// A form without a policy: refused before its file is read (`s3s`
    /// would read it whole, then refuse it as unsigned).
    #[error("a form upload without a signed policy is refused")]
    Unsigned,
}

impl<B> http_body::Body for Sniffed<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = FormError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, FormError>>> {
        let polled = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                return Poll::Ready(Some(Err(FormError::Body(e.to_string()))));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = polled.data_ref() {
            // Everything up to HEAD_BYTES is kept (s3s refuses fields past
            // 64 KiB, so they and the file part's headers always fit).
            let seen = {
                let mut kept = self.head.bytes.lock().expect("form head lock");
                let room = HEAD_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
                if self.signed {
                    None
                } else {
                    signed_head(&kept).or((kept.len() >= HEAD_BYTES).then_some(false))
                }
            };
            match seen {
                Some(true) => self.signed = true,
                Some(false) => {
                    self.head
                        .unsigned
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Poll::Ready(Some(Err(FormError::Unsigned)));
                }
                None => {}
            }
        }
        Poll::Ready(Some(Ok(polled)))
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
///
/// This is a second parse of what `s3s` parsed and checked against the
/// policy, so it is trusted only where the two cannot disagree
/// ([`Parsed::check`]): every boundary line exact (`multer` also takes a
/// boundary followed by spaces, which `s3s` reads as field text), and no
/// field named twice (which one did `s3s` check?).
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) file_name: Option<String>,
    ambiguous: bool,
    /// Whether the parse reached the file part: only then has it seen
    /// every field s3s saw.
    reached_file: bool,
}

impl Parsed {
    /// Refuses a form the two parses could read differently.
    pub(crate) fn check(&self) -> S3Result<()> {
        let twice = self
            .fields
            .iter()
            .enumerate()
            .any(|(i, (n, _))| self.fields[..i].iter().any(|(m, _)| m == n));
        if self.ambiguous || twice || !self.reached_file {
            return Err(s3_error!(
                MalformedPOSTRequest,
                "The body of your POST request is not well-formed multipart/form-data: every boundary line exact, and each field once"
            ));
        }
        Ok(())
    }
}

/// Whether every `--BOUNDARY` in `head` (all that was kept: a client's
/// boundary never occurs in its content) is a whole boundary line: at the
/// start or after CRLF, and followed by CRLF (or `--`, the last).
fn exact_boundaries(head: &[u8], boundary: &str) -> bool {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut at = 0;
    while let Some(i) = find(&head[at..], d) {
        let pos = at + i;
        let before_ok = pos == 0 || head[..pos].ends_with(b"\r\n");
        let after = &head[pos + d.len()..];
        let after_ok = after.starts_with(b"\r\n") || after.starts_with(b"--") || after.is_empty();
        if !before_ok || !after_ok {
            return false;
        }
        at = pos + d.len();
    }
    true
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where the file part's headers end in a form's head (after their blank
/// line), if they are in it.
fn file_part_end(head: &[u8]) -> Option<usize> {
    let lower = head.to_ascii_lowercase();
    let at = find(&lower, b"name=\"file\"")?;
    Some(at + find(&head[at..], b"\r\n\r\n")? + 4)
}

/// Whether a form's head names a `policy` and a signature field
/// (`x-amz-signature`; or SigV2's `signature`, which `Access` refuses
/// saying why) before its file part (`None` until the file part's headers
/// have come).
fn signed_head(head: &[u8]) -> Option<bool> {
    let end = file_part_end(head)?;
    let before = head[..end].to_ascii_lowercase();
    Some(
        find(&before, b"name=\"policy\"").is_some()
            && (find(&before, b"name=\"x-amz-signature\"").is_some()
                || find(&before, b"name=\"signature\"").is_some()),
    )
}

pub(crate) async fn parse(head: &FormHead) -> Parsed {
    let kept = head.bytes.lock().expect("form head lock").clone();
    let ambiguous = !exact_boundaries(&kept, &head.boundary);
    let bytes = Bytes::from(kept);
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut form = multer::Multipart::new(stream, head.boundary.clone());
    let mut parsed = Parsed {
        ambiguous,
        ..Parsed::default()
    };
    // Parts before the file are fields; past what was kept, parsing stops.
    while let Ok(Some(part)) = form.next_field().await {
        let name = part.name().unwrap_or_default().to_ascii_lowercase();
        if name == "file" {
            parsed.reached_file = true;
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
    fn only_exact_boundaries_and_signed_heads_pass() {
        let ok = b"--xyz\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\np\r\n--xyz\r\nContent-Disposition: form-data; name=\"x-amz-signature\"\r\n\r\ns\r\n--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\ndata";
        assert!(exact_boundaries(ok, "xyz"));
        assert_eq!(signed_head(ok), Some(true));
        let hidden = b"--xyz\r\nContent-Disposition: form-data; name=\"x-ignore-a\"\r\n\r\nv\r\n--xyz \r\nContent-Disposition: form-data; name=\"acl\"\r\n\r\npublic-read\r\n--xyz\r\n";
        assert!(
            !exact_boundaries(hidden, "xyz"),
            "a boundary with a trailing space"
        );
        let unsigned = b"--xyz\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n";
        assert_eq!(signed_head(unsigned), Some(false));
        assert_eq!(signed_head(&unsigned[..40]), None, "not yet decided");
        let twice = Parsed {
            fields: vec![
                ("acl".into(), "public-read".into()),
                ("acl".into(), "private".into()),
            ],
            ..Parsed::default()
        };
        assert!(twice.check().is_err());
    }

    #[test]
    fn form_places_are_bounded_per_client_and_node() {
        let gate = FormGate::new();
        let ip = |n: u8| Some(std::net::IpAddr::from([10, 0, 0, n]));
        let a1 = gate.enter(ip(1)).unwrap();
        let _a2 = gate.enter(ip(1)).unwrap();
        assert!(gate.enter(ip(1)).is_err(), "a third from one client");
        drop(a1);
        let _a3 = gate.enter(ip(1)).unwrap();
        let others: Vec<_> = (2..8).map(|n| gate.enter(ip(n)).unwrap()).collect();
        assert_eq!(others.len(), 6);
        assert!(gate.enter(ip(9)).is_err(), "the node's eight are taken");
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
