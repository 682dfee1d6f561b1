//! S3's additional checksums (`x-amz-checksum-crc32`, `-crc32c`,
//! `-crc64nvme`, `-sha1`, `-sha256`): computed while a body streams to its
//! file, checked against the value a request sent in a header or in an
//! `aws-chunked` trailer (what current SDKs send by default), kept with the
//! object or part, and answered on writes, on ListParts, and on reads that
//! ask (`x-amz-checksum-mode: ENABLED`).
//!
//! A multipart upload that declares an algorithm checks its parts with it;
//! its object's checksum is then `COMPOSITE` (the checksum of the parts'
//! checksums, `-N`) or, asked for, `FULL_OBJECT` (computed over the whole
//! object as its parts are joined; CRC algorithms only, as S3 allows).
//! The algorithms are `s3s::crypto`'s.

use base64::Engine as _;
use bytes::Bytes;
use nimbus_store::ObjectChecksum;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{Checksum, ChecksumType};
use s3s::{S3Result, s3_error};
use std::sync::{Arc, Mutex};

/// An additional checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

const ALL: [Algorithm; 5] = [
    Algorithm::Crc32,
    Algorithm::Crc32c,
    Algorithm::Crc64Nvme,
    Algorithm::Sha1,
    Algorithm::Sha256,
];

impl Algorithm {
    /// S3's name for it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    /// The algorithm S3 names so (any case).
    pub(crate) fn named(name: &str) -> S3Result<Algorithm> {
        ALL.into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "checksum algorithm {name:?} is none of CRC32, CRC32C, CRC64NVME, SHA1, SHA256"
                )
            })
    }

    fn is_crc(self) -> bool {
        !matches!(self, Algorithm::Sha1 | Algorithm::Sha256)
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut h = Hasher::new(self);
        h.update(data);
        h.finish()
    }
}

enum Hasher {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Crc64Nvme(Crc64Nvme),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    fn new(a: Algorithm) -> Hasher {
        match a {
            Algorithm::Crc32 => Hasher::Crc32(Crc32::new()),
            Algorithm::Crc32c => Hasher::Crc32c(Crc32c::new()),
            Algorithm::Crc64Nvme => Hasher::Crc64Nvme(Crc64Nvme::new()),
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Crc32c(h) => h.update(data),
            Hasher::Crc64Nvme(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Crc32(h) => h.finalize().as_ref().to_vec(),
            Hasher::Crc32c(h) => h.finalize().as_ref().to_vec(),
            Hasher::Crc64Nvme(h) => h.finalize().as_ref().to_vec(),
            Hasher::Sha1(h) => h.finalize().as_ref().to_vec(),
            Hasher::Sha256(h) => h.finalize().as_ref().to_vec(),
        }
    }
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// What a write says of its checksum: the algorithm, and the value to
/// check, from a header, or to come in a trailer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Asked {
    pub(crate) algorithm: Option<Algorithm>,
    value: Option<String>,
    trailer: bool,
}

impl Asked {
    /// From a write's headers: at most one `x-amz-checksum-*` value, or an
    /// `x-amz-trailer` naming one, or `x-amz-sdk-checksum-algorithm` (or,
    /// as `algorithm`, an operation's own field) alone: computed, kept,
    /// nothing to check.
    pub(crate) fn of(headers: &http::HeaderMap, algorithm: Option<&str>) -> S3Result<Asked> {
        let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let given: Vec<(Algorithm, String)> = ALL
            .into_iter()
            .filter_map(|a| text(&a.header()).map(|v| (a, v.trim().to_string())))
            .collect();
        if given.len() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            ));
        }
        if let Some((a, v)) = given.into_iter().next() {
            return Ok(Asked {
                algorithm: Some(a),
                value: Some(v),
                trailer: false,
            });
        }
        if let Some(t) = text("x-amz-trailer") {
            let t = t.trim().to_ascii_lowercase();
            if let Some(a) = ALL.into_iter().find(|a| a.header() == t) {
                return Ok(Asked {
                    algorithm: Some(a),
                    value: None,
                    trailer: true,
                });
            }
        }
        let named = text("x-amz-sdk-checksum-algorithm").or(algorithm);
        Ok(Asked {
            algorithm: named.map(Algorithm::named).transpose()?,
            value: None,
            trailer: false,
        })
    }

    /// Only an algorithm, checked against (and taking the place of)
    /// none asked: the upload's, for a part.
    pub(crate) fn with_default(mut self, upload: Option<Algorithm>) -> S3Result<Asked> {
        match (self.algorithm, upload) {
            (Some(a), Some(u)) if a != u => Err(s3_error!(
                InvalidRequest,
                "the part's checksum is {} but its upload was created with {}",
                a.name(),
                u.name()
            )),
            (None, u) => {
                self.algorithm = u;
                Ok(self)
            }
            _ => Ok(self),
        }
    }
}

/// A checksum being computed over a body as it streams past.
#[derive(Clone)]
pub(crate) struct Summing(Arc<Mutex<Option<Hasher>>>);

impl Summing {
    pub(crate) fn new(a: Option<Algorithm>) -> Summing {
        Summing(Arc::new(Mutex::new(a.map(Hasher::new))))
    }

    /// `body`, summed as it is read.
    pub(crate) fn wrap<S, E>(
        &self,
        body: S,
    ) -> impl futures::Stream<Item = Result<Bytes, E>> + Unpin + use<S, E>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let sum = self.clone();
        futures::StreamExt::map(body, move |chunk| {
            if let (Ok(data), Some(h)) = (&chunk, sum.0.lock().expect("checksum lock").as_mut()) {
                h.update(data);
            }
            chunk
        })
    }

    /// The checksum of what was read (base64).
    pub(crate) fn value(&self) -> Option<String> {
        let h = self.0.lock().expect("checksum lock").take()?;
        Some(b64(&h.finish()))
    }
}

/// Checks a body's checksum (`computed`, base64) against what was asked:
/// the header's value, or the trailer's (`trailers`, read once the body
/// is). `BadDigest` when they differ.
pub(crate) fn verify(
    asked: &Asked,
    computed: Option<&str>,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<()> {
    let (Some(a), Some(computed)) = (asked.algorithm, computed) else {
        return Ok(());
    };
    let expected = match (&asked.value, asked.trailer) {
        (Some(v), _) => v.clone(),
        (None, true) => {
            let header = a.header();
            let sent = trailers.and_then(|t| {
                t.read(|h| {
                    h.get(header.as_str())
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().to_string())
                })
                .flatten()
            });
            match sent {
                Some(v) => v,
                None => {
                    let mut e = s3s::S3Error::with_message(
                        s3s::S3ErrorCode::Custom("MalformedTrailerError".into()),
                        format!(
                            "x-amz-trailer named {header}, but the upload's trailer did not carry it"
                        ),
                    );
                    e.set_status_code(http::StatusCode::BAD_REQUEST);
                    return Err(e);
                }
            }
        }
        (None, false) => return Ok(()),
    };
    if expected != computed {
        return Err(s3_error!(
            BadDigest,
            "The {} you specified did not match the calculated checksum.",
            a.name()
        ));
    }
    Ok(())
}

/// A whole body's checksum, to keep with its object.
pub(crate) fn kept(a: Option<Algorithm>, value: Option<String>) -> Option<ObjectChecksum> {
    Some(ObjectChecksum {
        algorithm: a?.name().to_string(),
        value: value?,
        full_object: true,
    })
}

/// The checksum an upload declares for its parts, and its type, kept with
/// the upload (with an empty value) until it is completed.
pub(crate) fn declared(
    algorithm: Option<&str>,
    kind: Option<&ChecksumType>,
) -> S3Result<Option<ObjectChecksum>> {
    let crc64 = algorithm.is_some_and(|a| a.eq_ignore_ascii_case("CRC64NVME"));
    let full = match kind.map(|k| k.as_str()) {
        // CRC64NVME is only ever of the whole object (S3's default for it).
        None => crc64,
        Some(ChecksumType::COMPOSITE) => false,
        Some(ChecksumType::FULL_OBJECT) => true,
        Some(other) => {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-checksum-type {other:?} is neither COMPOSITE nor FULL_OBJECT"
            ));
        }
    };
    let Some(a) = algorithm.map(Algorithm::named).transpose()? else {
        if full {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-checksum-type FULL_OBJECT needs x-amz-checksum-algorithm"
            ));
        }
        return Ok(None);
    };
    if full && !a.is_crc() {
        return Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm: use a CRC one",
            a.name()
        ));
    }
    if !full && a == Algorithm::Crc64Nvme {
        return Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm: use FULL_OBJECT"
        ));
    }
    Ok(Some(ObjectChecksum {
        algorithm: a.name().to_string(),
        value: String::new(),
        full_object: full,
    }))
}

/// The composite checksum of parts' checksums (base64 each): the checksum
/// of their digests, `-N`. `None` if a part has none or one is not base64.
pub(crate) fn composite(a: Algorithm, parts: &[Option<String>]) -> Option<String> {
    let mut joined = Vec::new();
    for p in parts {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(p.as_deref()?)
            .ok()?;
        joined.extend(raw);
    }
    Some(format!("{}-{}", b64(&a.digest(&joined)), parts.len()))
}

/// Fills an answer's `checksum_*` fields from a kept checksum; its type,
/// for the answers that carry one.
macro_rules! fill {
    ($out:expr, $kept:expr) => {{
        let (c, kind) = $crate::checksum::answered($kept);
        $out.checksum_crc32 = c.checksum_crc32;
        $out.checksum_crc32c = c.checksum_crc32c;
        $out.checksum_crc64nvme = c.checksum_crc64nvme;
        $out.checksum_sha1 = c.checksum_sha1;
        $out.checksum_sha256 = c.checksum_sha256;
        kind
    }};
}
pub(crate) use fill;

/// The checksum a completion names for a part, if any.
pub(crate) fn of_part(p: &s3s::dto::CompletedPart) -> Option<String> {
    p.checksum_crc32
        .clone()
        .or_else(|| p.checksum_crc32c.clone())
        .or_else(|| p.checksum_crc64nvme.clone())
        .or_else(|| p.checksum_sha1.clone())
        .or_else(|| p.checksum_sha256.clone())
}

/// A kept checksum as S3 answers it: in the field of its algorithm, with
/// its type.
pub(crate) fn answered(c: Option<&ObjectChecksum>) -> (Checksum, Option<ChecksumType>) {
    let mut out = Checksum::default();
    let Some(c) = c.filter(|c| !c.value.is_empty()) else {
        return (out, None);
    };
    let v = Some(c.value.clone());
    match c.algorithm.as_str() {
        "CRC32" => out.checksum_crc32 = v,
        "CRC32C" => out.checksum_crc32c = v,
        "CRC64NVME" => out.checksum_crc64nvme = v,
        "SHA1" => out.checksum_sha1 = v,
        "SHA256" => out.checksum_sha256 = v,
        _ => return (out, None),
    }
    let kind = if c.full_object {
        ChecksumType::FULL_OBJECT
    } else {
        ChecksumType::COMPOSITE
    };
    (out, Some(ChecksumType::from_static(kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_s3s() {
        // Known values of "hello world".
        let sum = |a| b64(&Algorithm::digest(a, b"hello world"));
        assert_eq!(sum(Algorithm::Crc32), "DUoRhQ==");
        assert_eq!(sum(Algorithm::Crc32c), "yZRlqg==");
        assert_eq!(sum(Algorithm::Sha1), "Kq5sNclPz7QV2+lfQIuc6R7oRu0=");
        assert_eq!(
            sum(Algorithm::Sha256),
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
        let parts = [Some(sum(Algorithm::Crc32)), Some(sum(Algorithm::Crc32))];
        let c = composite(Algorithm::Crc32, &parts).unwrap();
        assert!(c.ends_with("-2"), "{c}");
        assert_eq!(composite(Algorithm::Crc32, &[None]), None);
    }

    #[test]
    fn what_a_request_asks() {
        let mut h = http::HeaderMap::new();
        assert_eq!(Asked::of(&h, None).unwrap(), Asked::default());
        h.insert("x-amz-trailer", "x-amz-checksum-crc32c".parse().unwrap());
        let a = Asked::of(&h, None).unwrap();
        assert_eq!(a.algorithm, Some(Algorithm::Crc32c));
        assert!(a.trailer);
        // A missing trailer value is refused, a wrong one is BadDigest.
        assert!(verify(&a, Some("x"), None).is_err());
        h.insert("x-amz-checksum-sha1", "abc".parse().unwrap());
        let a = Asked::of(&h, None).unwrap();
        assert_eq!(a.value.as_deref(), Some("abc"));
        assert_eq!(
            verify(&a, Some("abd"), None).unwrap_err().code(),
            &s3s::S3ErrorCode::BadDigest
        );
        assert!(verify(&a, Some("abc"), None).is_ok());
        h.insert("x-amz-checksum-crc32", "abc".parse().unwrap());
        assert!(Asked::of(&h, None).is_err(), "two values");
        assert!(
            declared(
                Some("SHA256"),
                Some(&ChecksumType::from_static("FULL_OBJECT"))
            )
            .is_err()
        );
        assert!(declared(Some("crc32"), None).unwrap().is_some());
    }
}
