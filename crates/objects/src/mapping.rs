//! How S3's terms map to the store's: errors, read conditions, object
//! keys (and their URL encoding in listings), ETags and timestamps. Pure functions, shared by the operations.

use s3s::dto::{ETagCondition, Timestamp};
use s3s::{S3Result, s3_error};
use std::time::{Duration, UNIX_EPOCH};

/// Whether a condition matches an object's ETag (`*` matches any object).
pub(crate) fn matches(cond: &ETagCondition, etag: Option<&str>) -> bool {
    match (cond, etag) {
        (ETagCondition::Any, e) => e.is_some(),
        (ETagCondition::ETag(t), Some(e)) => t.value() == e,
        (ETagCondition::ETag(_), None) => false,
    }
}

/// The preconditions of a read (GET, HEAD) or of a copy's source.
#[derive(Default)]
pub(crate) struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// Whole seconds since the epoch of a timestamp (HTTP dates have no finer
/// precision, so an object's time is compared at that precision too).
fn secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// Read preconditions in RFC 9110's order (S3 follows it): If-Match, or
/// without it If-Unmodified-Since, fails with 412; then If-None-Match
/// matching, or without it If-Modified-Since not met, answers 304.
pub(crate) fn check_read(c: &Conditions<'_>, etag: &str, last_modified_us: i64) -> S3Result<()> {
    let modified = last_modified_us.div_euclid(1_000_000);
    match (c.if_match, c.if_unmodified_since) {
        (Some(m), _) if !matches(m, Some(etag)) => {
            return Err(s3_error!(
                PreconditionFailed,
                "If-Match: the object's ETag is {etag}"
            ));
        }
        (None, Some(t)) if modified > secs(t) => {
            return Err(s3_error!(
                PreconditionFailed,
                "If-Unmodified-Since: the object was modified after it"
            ));
        }
        _ => {}
    }
    match (c.if_none_match, c.if_modified_since) {
        (Some(m), _) if matches(m, Some(etag)) => Err(s3_error!(NotModified)),
        (None, Some(t)) if modified <= secs(t) => Err(s3_error!(NotModified)),
        _ => Ok(()),
    }
}

/// A copy's source preconditions (`x-amz-copy-source-if-*`): as a read's,
/// but every failure is 412, as S3 answers.
pub(crate) fn check_copy_source(
    c: &Conditions<'_>,
    etag: &str,
    last_modified_us: i64,
) -> S3Result<()> {
    check_read(c, etag, last_modified_us).map_err(|e| {
        if *e.code() == s3s::S3ErrorCode::NotModified {
            s3_error!(
                PreconditionFailed,
                "x-amz-copy-source-if-none-match or -if-modified-since: the source has not changed"
            )
        } else {
            e
        }
    })
}

/// The media type S3 answers for an object stored without one.
pub(crate) const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Characters S3's `EncodingType=url` leaves as they are: the unreserved
/// ones and `/`.
const URL_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// How a listing writes keys and prefixes: as they are, or URL-encoded
/// (`EncodingType=url`, which clients ask for so that keys with
/// characters XML cannot carry survive; boto3 asks for it by default and
/// decodes every key).
#[derive(Clone, Copy)]
pub(crate) struct KeyEncoding(bool);

impl KeyEncoding {
    pub(crate) fn of(e: Option<&s3s::dto::EncodingType>) -> S3Result<KeyEncoding> {
        match e.map(|e| e.as_str()) {
            None => Ok(KeyEncoding(false)),
            Some(s3s::dto::EncodingType::URL) => Ok(KeyEncoding(true)),
            Some(other) => Err(s3_error!(
                InvalidArgument,
                "EncodingType {other:?} is not one S3 knows: use \"url\" or leave it out"
            )),
        }
    }

    pub(crate) fn key(self, s: String) -> String {
        if self.0 {
            percent_encoding::utf8_percent_encode(&s, URL_ENCODED).to_string()
        } else {
            s
        }
    }

    pub(crate) fn opt(self, s: Option<String>) -> Option<String> {
        s.map(|s| self.key(s))
    }
}

/// The headers S3 adds to an answer about a delete marker.
pub(crate) fn marker_headers(version_id: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Ok(v) = http::HeaderValue::from_str(version_id) {
        h.insert("x-amz-version-id", v);
    }
    h
}

pub(crate) fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An upload body that could not be stored, as S3 says it.
pub(crate) fn body_error(e: nimbus_store::BlobError) -> s3s::S3Error {
    match e {
        nimbus_store::BlobError::TooLarge(_) => s3_error!(EntityTooLarge, "{e}"),
        // The body's own checks (s3s's streams, whose errors reach here as
        // text): a payload hash or chunk signature that does not match is
        // answered with S3's code for it.
        nimbus_store::BlobError::Body(m) if m.contains("Sha256Mismatch") => {
            let mut err = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            err
        }
        nimbus_store::BlobError::Body(m) if m.contains("SignatureMismatch") => s3_error!(
            SignatureDoesNotMatch,
            "a chunk's signature does not match the signature calculated"
        ),
        nimbus_store::BlobError::Body(_) => s3_error!(IncompleteBody, "{e}"),
        other => internal(other),
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> s3s::S3Error {
    s3_error!(InternalError, "{e}")
}

/// A store error of a write into a bucket, or of its deletion: the only
/// thing such a write finds missing is its bucket (deleted meanwhile).
/// Over a storage quota it is `QuotaExceeded`, 403 (as Ceph's RGW answers).
pub(crate) fn write_err(e: nimbus_store::StoreError) -> s3s::S3Error {
    match e {
        nimbus_store::StoreError::NotFound(m) => s3_error!(NoSuchBucket, "{m}"),
        nimbus_store::StoreError::Locked(m) => s3_error!(AccessDenied, "{m}"),
        e @ nimbus_store::StoreError::QuotaExceeded(_) => {
            let mut err = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("QuotaExceeded".into()),
                e.to_string(),
            );
            err.set_status_code(http::StatusCode::FORBIDDEN);
            err
        }
        e => internal(e),
    }
}

pub(crate) fn timestamp(us: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_micros(us.max(0) as u64))
}

/// Checks an object key: 1-1024 bytes, no NUL. Keys are data in SQL and
/// never paths: bodies are stored under generated ids.
pub(crate) fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() || key.len() > 1024 || key.contains('\0') {
        return Err(s3_error!(
            KeyTooLongError,
            "object keys are 1-1024 bytes without NUL"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_store::{BlobError, StorageKind, StoreError};
    use s3s::dto::ETag;

    fn tag(t: &str) -> Option<ETagCondition> {
        Some(ETagCondition::ETag(ETag::Strong(t.into())))
    }

    #[test]
    fn read_conditions_as_rfc_9110() {
        let t = |secs: u64| timestamp(secs as i64 * 1_000_000);
        let (e1, e2) = (tag("e1").unwrap(), tag("e2").unwrap());
        let code = |c: Conditions<'_>| {
            check_read(&c, "e1", 100_500_000)
                .err()
                .map(|e| e.code().as_str().to_string())
        };
        assert_eq!(code(Conditions::default()), None);
        let any = ETagCondition::Any;
        for (c, want) in [
            (
                Conditions {
                    if_match: Some(&e1),
                    ..Default::default()
                },
                None,
            ),
            (
                Conditions {
                    if_match: Some(&any),
                    ..Default::default()
                },
                None,
            ),
            (
                Conditions {
                    if_match: Some(&e2),
                    ..Default::default()
                },
                Some("PreconditionFailed"),
            ),
            (
                Conditions {
                    if_none_match: Some(&e1),
                    ..Default::default()
                },
                Some("NotModified"),
            ),
            (
                Conditions {
                    if_none_match: Some(&e2),
                    ..Default::default()
                },
                None,
            ),
        ] {
            assert_eq!(code(c).as_deref(), want);
        }
        // Times compare in whole seconds: modified at 100.5 s is "at 100".
        let (t99, t100) = (t(99), t(100));
        for (c, want) in [
            (
                Conditions {
                    if_unmodified_since: Some(&t100),
                    ..Default::default()
                },
                None,
            ),
            (
                Conditions {
                    if_unmodified_since: Some(&t99),
                    ..Default::default()
                },
                Some("PreconditionFailed"),
            ),
            (
                Conditions {
                    if_modified_since: Some(&t100),
                    ..Default::default()
                },
                Some("NotModified"),
            ),
            (
                Conditions {
                    if_modified_since: Some(&t99),
                    ..Default::default()
                },
                None,
            ),
            // A matching If-Match overrides If-Unmodified-Since, and a
            // failing If-None-Match overrides If-Modified-Since.
            (
                Conditions {
                    if_match: Some(&e1),
                    if_unmodified_since: Some(&t99),
                    ..Default::default()
                },
                None,
            ),
            (
                Conditions {
                    if_none_match: Some(&e2),
                    if_modified_since: Some(&t100),
                    ..Default::default()
                },
                None,
            ),
        ] {
            assert_eq!(code(c).as_deref(), want);
        }
        let c = Conditions {
            if_none_match: Some(&e1),
            ..Default::default()
        };
        let e = check_copy_source(&c, "e1", 0).unwrap_err();
        assert_eq!(e.code().as_str(), "PreconditionFailed");
        // `*` matches an object that exists, and nothing that does not.
        assert!(matches(&ETagCondition::Any, Some("x")));
        assert!(!matches(&ETagCondition::Any, None));
        assert!(!matches(&tag("x").unwrap(), None));
    }

    #[test]
    fn url_encoding_as_s3_writes_keys() {
        let url = KeyEncoding::of(Some(&s3s::dto::EncodingType::from_static("url"))).unwrap();
        assert_eq!(url.key("asdf+b".into()), "asdf%2Bb");
        assert_eq!(url.key("quux ab/thud".into()), "quux%20ab/thud");
        assert_eq!(url.key("%2e/ü~-_.".into()), "%252e/%C3%BC~-_.");
        let plain = KeyEncoding::of(None).unwrap();
        assert_eq!(plain.key("a+b c".into()), "a+b c");
        let bad = KeyEncoding::of(Some(&s3s::dto::EncodingType::from_static("gzip")));
        assert_eq!(bad.err().unwrap().code().as_str(), "InvalidArgument");
    }

    #[test]
    fn store_errors_as_s3_says_them() {
        let e = write_err(StoreError::QuotaExceeded(StorageKind::Objects));
        assert_eq!(e.code().as_str(), "QuotaExceeded");
        assert_eq!(e.status_code(), Some(http::StatusCode::FORBIDDEN));
        assert!(e.message().unwrap().contains("--quota-objects-mb"), "{e:?}");
        let e = write_err(StoreError::NotFound("bucket b".into()));
        assert_eq!(e.code().as_str(), "NoSuchBucket");
        let e = body_error(BlobError::TooLarge(5));
        assert_eq!(e.code().as_str(), "EntityTooLarge");
    }

    #[test]
    fn keys_digests_and_times() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"k".repeat(1024)).is_ok());
        for bad in [String::new(), "k".repeat(1025), "a\0b".into()] {
            assert_eq!(
                check_key(&bad).unwrap_err().code().as_str(),
                "KeyTooLongError"
            );
        }
        assert_eq!(md5_hex(b"a"), "0cc175b9c0f1b6a831c399e269772661");
        assert_eq!(hex_decode("00ff10"), [0, 255, 16]);
        assert_eq!(timestamp(-5), timestamp(0));
    }
}
