//! How S3's terms map to the store's: errors, read conditions, object
//! keys, ETags and timestamps. Pure functions, shared by the operations.

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

/// Read preconditions (RFC 9110): If-Match fails with 412, If-None-Match
/// matching answers 304.
pub(crate) fn check_read(
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
    etag: &str,
) -> S3Result<()> {
    if let Some(c) = if_match
        && !matches(c, Some(etag))
    {
        return Err(s3_error!(
            PreconditionFailed,
            "If-Match: the object's ETag is {etag}"
        ));
    }
    if let Some(c) = if_none_match
        && matches(c, Some(etag))
    {
        return Err(s3_error!(NotModified));
    }
    Ok(())
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
        assert!(check_read(&None, &None, "e1").is_ok());
        assert!(check_read(&tag("e1"), &None, "e1").is_ok());
        assert!(check_read(&Some(ETagCondition::Any), &None, "e1").is_ok());
        let e = check_read(&tag("e2"), &None, "e1").unwrap_err();
        assert_eq!(e.code().as_str(), "PreconditionFailed");
        let e = check_read(&None, &tag("e1"), "e1").unwrap_err();
        assert_eq!(e.code().as_str(), "NotModified");
        assert!(check_read(&None, &tag("e2"), "e1").is_ok());
        // `*` matches an object that exists, and nothing that does not.
        assert!(matches(&ETagCondition::Any, Some("x")));
        assert!(!matches(&ETagCondition::Any, None));
        assert!(!matches(&tag("x").unwrap(), None));
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
