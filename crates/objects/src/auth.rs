//! Who may do what.
//!
//! [`Keys`] (`s3s::auth::S3Auth`) finds an access key's sealed secret in
//! the store on every request and opens it with the control plane's
//! sealer; nothing is cached, so a key revoked, or deleted with its app,
//! through any node fails on its next request. [`Access`]
//! (`s3s::access::S3Access`) lets unsigned requests through only to read
//! what is public (`acl`), binds a signed
//! request to its key's app (the `AppId` extension) and refuses other
//! apps' buckets before any operation runs (403; 404 for a bucket that does
//! not exist; `CreateBucket` is exempt, and a copy checks its source
//! bucket itself). Every request that passes is metered as one object
//! operation of its app, as S3 bills requests. [`check_signature`] holds
//! what `s3s` would let through that Nimbus refuses.
//!
//! Invariant: a key reaches only its own app's buckets.

use crate::Unseal;
use crate::buckets::check_owner;
use crate::mapping::internal;
use nimbus_store::Store;
use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::dto::PostObjectInput;
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};
use std::time::UNIX_EPOCH;

#[derive(Clone)]
pub(crate) struct AppId(String);

pub(crate) fn app_of(ext: &http::Extensions) -> S3Result<String> {
    ext.get::<AppId>().map(|a| a.0.clone()).ok_or_else(|| {
        s3_error!(
            AccessDenied,
            "sign requests with a key from `nimbus keys create --s3`"
        )
    })
}

/// Access keys issued per app: their secrets verify SigV4 signatures.
/// Nothing is cached: each request reads its key from the store, so a key
/// revoked or deleted with its app (through any node) is refused on its
/// next request.
pub struct Keys {
    store: Store,
    unseal: Unseal,
}

impl Keys {
    /// Keys stored in `store`, their secrets opened with `unseal`.
    pub fn new(store: Store, unseal: Unseal) -> Keys {
        Keys { store, unseal }
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let (_, sealed) = self
            .store
            .s3_key(access_key)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let secret = (self.unseal)(&sealed).map_err(internal)?;
        Ok(SecretKey::from(secret))
    }
}

/// Who may touch what: a signed request acts for its key's app, and
/// reaches only that app's buckets (403 otherwise, 404 for a bucket that
/// does not exist).
pub struct Access {
    store: Store,
    meter: Option<nimbus_store::RecordWriter>,
}

impl Access {
    /// Access checks against `store`; requests that pass are metered on
    /// `meter`.
    pub fn new(store: Store, meter: Option<nimbus_store::RecordWriter>) -> Access {
        Access { store, meter }
    }

    /// An unsigned request: only reads of objects and listings of one
    /// bucket pass, marked `Anonymous` (never with an `AppId`), for the
    /// operation to allow only what is public (`acl::check_read`,
    /// `acl::check_list`, which meter what they allow to the bucket's
    /// owner, as S3 bills the bucket owner; a refused one costs its owner
    /// nothing).
    async fn anonymous(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let refused = || {
            s3_error!(
                AccessDenied,
                "unsigned requests may only read public objects and list public buckets: sign requests with a key from `nimbus keys create --s3`"
            )
        };
        if !matches!(
            cx.s3_op().name(),
            "GetObject" | "HeadObject" | "ListObjects" | "ListObjectsV2"
        ) {
            return Err(refused());
        }
        let bucket = match cx.s3_path() {
            S3Path::Root => return Err(refused()),
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket.to_string(),
        };
        let owner = self
            .store
            .bucket_owner(&bucket)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        cx.extensions_mut().insert(crate::acl::Anonymous { owner });
        Ok(())
    }
}

/// Longest validity of a presigned URL (`X-Amz-Expires`), as S3's: 7 days.
pub const MAX_PRESIGNED_SECS: u64 = 604_800;

/// Clock skew allowed to the client that made a SigV2 presigned URL,
/// whose expiry is a time rather than a duration (as s3s allows SigV4
/// request dates).
const PRESIGNED_SKEW_SECS: u64 = 900;

fn sigv2_refused() -> s3s::S3Error {
    s3_error!(
        AccessDenied,
        "Signature Version 2 is not accepted for signed requests (their date is never checked: a captured request could be replayed forever): sign requests with Signature Version 4 (AWS4-HMAC-SHA256; boto3: Config(signature_version=\"s3v4\"); aws-cli: `s3 = signature_version = s3v4` in the profile)"
    )
}

fn presigned_too_long(what: &str) -> s3s::S3Error {
    s3_error!(
        AuthorizationQueryParametersError,
        "a presigned URL is valid for 1 second to 7 days ({MAX_PRESIGNED_SECS} seconds): {what}"
    )
}

/// What `s3s` lets through that Nimbus refuses, or answers with another
/// code than S3's, before `s3s` sees the request: the shape of a SigV4
/// header or presigned URL (`check_authorization`, `check_presigned_v4`);
/// Signature Version 2 in the `Authorization` header (its date is
/// never checked, so a captured request replays forever; SigV2 forms are
/// refused by [`Access`]), and presigned URLs valid for less than a second
/// or more than [`MAX_PRESIGNED_SECS`] — `s3s` takes any `X-Amz-Expires`
/// up to 136 years, and any SigV2 `Expires` time. A SigV2 presigned URL
/// (what aws-cli v1's `s3 presign` makes) is held to the same week, as
/// `Expires` (Unix seconds) no later than `now_secs` plus a week (and
/// [`PRESIGNED_SKEW_SECS`]); `s3s` refuses it once past. SigV4's own
/// checks — a header-signed request's `X-Amz-Date` within 15 minutes of
/// now, a presigned URL not past its expiry — are `s3s`'s. Query names
/// are read decoded, as `s3s` reads them.
pub(crate) fn check_signature(
    headers: &http::HeaderMap,
    query: Option<&str>,
    now_secs: u64,
) -> S3Result<()> {
    if headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| v.as_bytes().starts_with(b"AWS "))
    {
        return Err(sigv2_refused());
    }
    if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
        check_authorization(auth.to_str().unwrap_or_default(), headers)?;
    }
    let (mut sigv2, mut sigv2_expires) = (false, None);
    let mut v4: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "Signature" => sigv2 = true,
            "Expires" => sigv2_expires = Some(value.parse::<u64>().ok()),
            "X-Amz-Expires" => match value.parse::<u64>() {
                Ok(secs) if (1..=MAX_PRESIGNED_SECS).contains(&secs) => {}
                _ => {
                    return Err(presigned_too_long(&format!("X-Amz-Expires is {value:?}")));
                }
            },
            _ => {}
        }
        if name.starts_with("X-Amz-") {
            v4.push((name.into_owned(), value.into_owned()));
        }
    }
    check_presigned_v4(&v4)?;
    if sigv2 {
        let latest = now_secs + MAX_PRESIGNED_SECS + PRESIGNED_SKEW_SECS;
        match sigv2_expires.flatten() {
            Some(t) if t <= latest => {}
            Some(t) => {
                return Err(presigned_too_long(&format!(
                    "Expires is {} s from now",
                    t.saturating_sub(now_secs)
                )));
            }
            None => return Err(presigned_too_long("Expires is missing or not a time")),
        }
    }
    Ok(())
}

/// A SigV4 `Credential`: `KEY/DATE/REGION/SERVICE/aws4_request`.
fn credential_ok(c: &str) -> bool {
    let parts: Vec<&str> = c.split('/').collect();
    parts.len() == 5 && parts.iter().all(|p| !p.is_empty()) && parts[4] == "aws4_request"
}

/// A SigV4 signature: 64 hex digits. Anything else cannot match.
fn signature_ok(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn signature_mismatch() -> s3s::S3Error {
    s3_error!(
        SignatureDoesNotMatch,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method."
    )
}

/// A header-signed request's shape, with the codes S3 answers: another
/// scheme is `400 InvalidArgument`; a SigV4 header without its
/// `Credential`, `SignedHeaders` and `Signature` is `400
/// AuthorizationHeaderMalformed`; a signature that is not 64 hex digits is
/// `403 SignatureDoesNotMatch`; no `x-amz-date` (or `Date`) is `403
/// AccessDenied`. The signature itself is checked by `s3s`.
fn check_authorization(auth: &str, headers: &http::HeaderMap) -> S3Result<()> {
    let auth = auth.trim();
    let Some(params) = auth.strip_prefix("AWS4-HMAC-SHA256") else {
        if auth.starts_with("AWS4-ECDSA-P256-SHA256") {
            return Ok(());
        }
        return Err(s3_error!(
            InvalidArgument,
            "Unsupported Authorization Type: sign requests with AWS4-HMAC-SHA256"
        ));
    };
    let field = |name: &str| {
        params.split(',').find_map(|p| {
            p.trim()
                .strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .map(str::trim)
        })
    };
    let (Some(credential), Some(_), Some(signature)) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    ) else {
        return Err(s3_error!(
            AuthorizationHeaderMalformed,
            "The authorization header is malformed: it needs Credential, SignedHeaders and Signature"
        ));
    };
    if !credential_ok(credential) {
        return Err(s3_error!(
            AuthorizationHeaderMalformed,
            "The authorization header is malformed; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\""
        ));
    }
    if !headers.contains_key("x-amz-date") && !headers.contains_key(http::header::DATE) {
        return Err(s3_error!(
            AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header"
        ));
    }
    if !signature_ok(signature) {
        return Err(signature_mismatch());
    }
    Ok(())
}

/// A SigV4 presigned URL's shape (its `X-Amz-*` parameters), with the
/// codes S3 answers: all six parameters, the one algorithm, a credential
/// of five parts (else `400 AuthorizationQueryParametersError`), a
/// signature of 64 hex digits (else `403 SignatureDoesNotMatch`).
fn check_presigned_v4(params: &[(String, String)]) -> S3Result<()> {
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    const ALL: [&str; 6] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Signature",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "X-Amz-Expires",
    ];
    if ALL[..3].iter().all(|n| get(n).is_none()) {
        return Ok(());
    }
    if ALL.iter().any(|n| get(n).is_none()) {
        return Err(s3_error!(
            AuthorizationQueryParametersError,
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        ));
    }
    match get("X-Amz-Algorithm") {
        Some("AWS4-HMAC-SHA256" | "AWS4-ECDSA-P256-SHA256") => {}
        _ => {
            return Err(s3_error!(
                AuthorizationQueryParametersError,
                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\""
            ));
        }
    }
    if !get("X-Amz-Credential").is_some_and(credential_ok) {
        return Err(s3_error!(
            AuthorizationQueryParametersError,
            "Error parsing the X-Amz-Credential parameter; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\""
        ));
    }
    if !get("X-Amz-Signature").is_some_and(signature_ok) {
        return Err(signature_mismatch());
    }
    Ok(())
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait::async_trait]
impl s3s::access::S3Access for Access {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let Some(Credentials { access_key, .. }) = cx.credentials() else {
            return self.anonymous(cx).await;
        };
        let (app, _) = self
            .store
            .s3_key(access_key)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.to_string()),
        };
        if let Some(b) = bucket
            && cx.s3_op().name() != "CreateBucket"
        {
            check_owner(&self.store, &b, &app).await?;
        }
        if let Some(m) = &self.meter {
            m.meter(&app, nimbus_core::Service::Objects, 1);
        }
        cx.extensions_mut().insert(AppId(app));
        Ok(())
    }

    /// A browser-form upload (POST object) carries its signature in the
    /// form, out of [`check`](Self::check)'s sight: a SigV2 one is the one
    /// without a credential scope, so without a region. Its key's
    /// `${filename}` is the form's file name (`form`), substituted here,
    /// the last step before `s3s` passes it on as a PutObject, and its
    /// `acl` field is its canned ACL.
    async fn post_object(&self, req: &mut S3Request<PostObjectInput>) -> S3Result<()> {
        if req.credentials.is_some() && req.region.is_none() {
            return Err(sigv2_refused());
        }
        let Some(head) = req.extensions.get::<crate::form::FormHead>().cloned() else {
            req.input.key = crate::form::substitute(&req.input.key, None)?;
            return Ok(());
        };
        let parsed = crate::form::parse(&head).await;
        parsed.check()?;
        req.input.key = head.resolve_key(&req.input.key, &parsed)?;
        // S3's forms name the canned ACL `acl` (s3s reads `x-amz-acl`);
        // s3s checked it against the policy, and `check` made sure this is
        // the field it checked.
        if req.input.acl.is_none()
            && let Some((_, acl)) = parsed.fields.into_iter().find(|(n, _)| n == "acl")
        {
            req.input.acl = Some(s3s::dto::ObjectCannedACL::from(acl));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn check(auth: Option<&str>, query: Option<&str>) -> Result<(), String> {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
            h.insert("x-amz-date", "20250101T000000Z".parse().unwrap());
        }
        check_signature(&h, query, NOW).map_err(|e| format!("{:?}", e.code()))
    }

    const SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn presigned(expires: &str) -> String {
        format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=NK%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={SIG}"
        )
    }

    #[test]
    fn malformed_signatures_get_s3s_codes() {
        let v4 = |rest: &str| format!("AWS4-HMAC-SHA256 {rest}");
        let good = v4(&format!(
            "Credential=NK/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={SIG}"
        ));
        assert_eq!(check(Some(&good), None), Ok(()));
        for (auth, code) in [
            ("Bearer x".to_string(), "InvalidArgument"),
            (
                v4(&format!("SignedHeaders=host, Signature={SIG}")),
                "AuthorizationHeaderMalformed",
            ),
            (
                v4(&format!(
                    "Credential=NK/us-east-1/s3, SignedHeaders=host, Signature={SIG}"
                )),
                "AuthorizationHeaderMalformed",
            ),
            (
                v4(
                    "Credential=NK/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
                ),
                "SignatureDoesNotMatch",
            ),
        ] {
            assert_eq!(check(Some(&auth), None), Err(code.into()), "{auth}");
        }
        // Without x-amz-date: 403 AccessDenied.
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, good.parse().unwrap());
        let e = check_signature(&h, None, NOW).unwrap_err();
        assert_eq!(e.code(), &s3s::S3ErrorCode::AccessDenied);
        // Presigned URLs: every parameter, the one algorithm, a credential.
        assert_eq!(check(None, Some(&presigned("60"))), Ok(()));
        for (q, code) in [
            (
                presigned("60").replace("&X-Amz-Date=20250101T000000Z", ""),
                "AuthorizationQueryParametersError",
            ),
            (
                presigned("60").replace("HMAC-SHA256", "HMAC-SHA512"),
                "AuthorizationQueryParametersError",
            ),
            (
                presigned("60").replace("NK%2F", ""),
                "AuthorizationQueryParametersError",
            ),
            (presigned("60").replace(SIG, "00"), "SignatureDoesNotMatch"),
        ] {
            assert_eq!(check(None, Some(&q)), Err(code.into()), "{q}");
        }
    }

    #[test]
    fn only_fresh_signatures_pass() {
        let v4 = format!(
            "AWS4-HMAC-SHA256 Credential=NK/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={SIG}"
        );
        assert_eq!(check(Some(&v4), None), Ok(()));
        assert_eq!(check(None, Some("list-type=2&prefix=a")), Ok(()));
        assert_eq!(check(None, Some(&presigned("604800"))), Ok(()));
        // SigV2 in the header: never.
        assert_eq!(check(Some("AWS NK:c2ln"), None), Err("AccessDenied".into()));
        // SigV2 presigned: for at most a week (and the skew) from now.
        let v2 = |expires: &str| format!("AWSAccessKeyId=NK&Expires={expires}&Signature=c2ln");
        assert_eq!(check(None, Some(&v2(&(NOW + 600).to_string()))), Ok(()));
        assert_eq!(
            check(None, Some(&v2(&(NOW + 604_800 + 900).to_string()))),
            Ok(())
        );
        for q in [
            v2(&(NOW + 604_800 + 901).to_string()),
            v2(&(NOW + 315_360_000).to_string()),
            v2("soon"),
            "AWSAccessKeyId=NK&Signature=c2ln".to_string(),
        ] {
            assert_eq!(
                check(None, Some(&q)),
                Err("AuthorizationQueryParametersError".into()),
                "{q}"
            );
        }
        // SigV4 presigned URLs valid for 0 s or more than 7 days, however
        // written.
        for q in [
            "X-Amz-Expires=604801",
            "X-Amz-Expires=315360000",
            "X-Amz-Expires=0",
            "X-Amz-Expires=-1",
            "X-Amz-Expires=1e9",
            "X-Amz-%45xpires=315360000",
        ] {
            assert_eq!(
                check(None, Some(q)),
                Err("AuthorizationQueryParametersError".into()),
                "{q}"
            );
        }
        let e = check_signature(
            &http::HeaderMap::new(),
            Some("X-Amz-Expires=999999999"),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.status_code(), Some(http::StatusCode::BAD_REQUEST));
        assert!(e.message().unwrap().contains("604800"), "{e:?}");
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "AWS NK:c2ln".parse().unwrap());
        let e = check_signature(&h, None, NOW).unwrap_err();
        assert_eq!(e.status_code(), Some(http::StatusCode::FORBIDDEN));
        assert!(
            e.message().unwrap().contains("Signature Version 4"),
            "{e:?}"
        );
    }
}
