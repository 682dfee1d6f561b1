//! Bucket CORS: the configuration (Get/Put/DeleteBucketCors, with S3's
//! rules on it), preflight requests (`OPTIONS`, answered by [`Cors`] in
//! the endpoint, unsigned as browsers send them), and the CORS headers on
//! every other answer to a request with an `Origin`, as S3 evaluates them:
//! the first rule matching the origin, the method and every requested
//! header wins.

use crate::Objects;
use crate::mapping::{internal, write_err};
use nimbus_store::{CorsRule, Store};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

/// At most this many rules per bucket (S3's limit).
const MAX_RULES: usize = 100;
/// At most this many bytes of origins, methods and headers in all (S3's
/// 64 KB limit on a configuration): every preflight reads them.
const MAX_BYTES: usize = 64 << 10;
/// At most this many request headers a preflight asks for.
const MAX_ASKED_HEADERS: usize = 64;
/// The methods a rule may allow (S3's).
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// Whether `value` matches `pattern`, which holds at most one `*` (any
/// run of characters); header names compare without case.
fn wildcard(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (p, v) = if ignore_case {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_string(), value.to_string())
    };
    match p.split_once('*') {
        None => p == v,
        Some((head, tail)) => {
            v.len() >= head.len() + tail.len() && v.starts_with(head) && v.ends_with(tail)
        }
    }
}

/// The first rule allowing `origin` to use `method` with `headers`.
fn matching<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard(o, origin, false))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.allowed_headers.iter().any(|a| wildcard(a, h, true)))
    })
}

fn set(h: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = http::HeaderValue::from_str(value) {
        h.insert(http::HeaderName::from_static(name), v);
    }
}

/// The headers a matching rule gives an answer.
fn allow(h: &mut http::HeaderMap, rule: &CorsRule, origin: &str) {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    set(
        h,
        "access-control-allow-origin",
        if any { "*" } else { origin },
    );
    if !any {
        set(h, "access-control-allow-credentials", "true");
    }
    set(
        h,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        set(
            h,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(h, "access-control-max-age", &age.to_string());
    }
}

fn vary(h: &mut http::HeaderMap) {
    set(
        h,
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
}

/// The bucket CORS of the endpoint.
#[derive(Clone)]
pub(crate) struct Cors {
    store: Store,
}

impl Cors {
    pub(crate) fn new(store: Store) -> Cors {
        Cors { store }
    }

    async fn rules(&self, bucket: &str) -> Vec<CorsRule> {
        match self.store.bucket_cors(bucket).await {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, bucket, "reading a bucket's CORS rules failed");
                Vec::new()
            }
        }
    }

    /// Answers a preflight (`OPTIONS`) to `bucket`: `200` with what the
    /// first matching rule allows, else `403` saying why (`400` without an
    /// origin or a method), as S3 answers.
    pub(crate) async fn preflight(
        &self,
        bucket: Option<&str>,
        headers: &http::HeaderMap,
    ) -> s3s::HttpResponse {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let (Some(origin), Some(method)) =
            (header("origin"), header("access-control-request-method"))
        else {
            return answer(
                http::StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed (and Access-Control-Request-Method).",
            );
        };
        let asked: Vec<String> = header("access-control-request-headers")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if asked.len() > MAX_ASKED_HEADERS {
            return answer(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed: it asks for more than 64 headers.",
            );
        }
        let rules = match bucket {
            Some(b) => self.rules(b).await,
            None => Vec::new(),
        };
        if rules.is_empty() {
            return answer(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            );
        }
        let Some(rule) = matching(&rules, origin, method, &asked) else {
            return answer(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. The bucket's CORS rules allow none with this Origin, Access-Control-Request-Method and Access-Control-Request-Headers.",
            );
        };
        let mut r = http::Response::new(s3s::Body::empty());
        allow(r.headers_mut(), rule, origin);
        if !asked.is_empty() {
            set(
                r.headers_mut(),
                "access-control-allow-headers",
                &asked.join(", "),
            );
        }
        vary(r.headers_mut());
        r
    }

    /// Adds to an answer to a request from `origin` the CORS headers of
    /// the first rule of `bucket` that allows its method.
    pub(crate) async fn decorate(
        &self,
        bucket: &str,
        origin: &str,
        method: &http::Method,
        answer: &mut s3s::HttpResponse,
    ) {
        let rules = self.rules(bucket).await;
        if let Some(rule) = matching(&rules, origin, method.as_str(), &[]) {
            allow(answer.headers_mut(), rule, origin);
            vary(answer.headers_mut());
        }
    }
}

fn answer(status: http::StatusCode, code: &str, message: &str) -> s3s::HttpResponse {
    let mut e = s3s::S3Error::with_message(
        s3s::S3ErrorCode::Custom(code.to_string().into()),
        message.to_string(),
    );
    e.set_status_code(status);
    crate::endpoint::error_response(&e)
}

/// A rule as asked, checked against S3's rules.
fn rule_of(r: CORSRule) -> S3Result<CorsRule> {
    if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "every CORSRule needs at least one AllowedOrigin and one AllowedMethod"
        ));
    }
    for m in &r.allowed_methods {
        if !METHODS.contains(&m.as_str()) {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}: allow GET, PUT, POST, DELETE or HEAD"
            ));
        }
    }
    for (what, list) in [
        ("AllowedOrigin", &r.allowed_origins),
        (
            "AllowedHeader",
            r.allowed_headers.as_ref().unwrap_or(&Vec::new()),
        ),
    ] {
        if let Some(bad) = list.iter().find(|v| v.matches('*').count() > 1) {
            return Err(s3_error!(
                InvalidRequest,
                "{what} {bad:?} can not have more than one wildcard"
            ));
        }
    }
    if r.max_age_seconds.is_some_and(|a| a < 0) {
        return Err(s3_error!(
            MalformedXML,
            "MaxAgeSeconds must not be negative"
        ));
    }
    Ok(CorsRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: r.allowed_headers.unwrap_or_default(),
        expose_headers: r.expose_headers.unwrap_or_default(),
        max_age_seconds: r.max_age_seconds,
    })
}

pub(crate) async fn get(
    this: &Objects,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let Some(rules) = this
        .store
        .bucket_cors(&req.input.bucket)
        .await
        .map_err(internal)?
    else {
        return Err(s3_error!(
            NoSuchCORSConfiguration,
            "The CORS configuration does not exist"
        ));
    };
    let rules = rules
        .into_iter()
        .map(|r| CORSRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
            expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
            max_age_seconds: r.max_age_seconds,
        })
        .collect();
    Ok(S3Response::new(GetBucketCorsOutput {
        cors_rules: Some(rules),
    }))
}

pub(crate) async fn put(
    this: &Objects,
    req: S3Request<PutBucketCorsInput>,
) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    let asked = input.cors_configuration.cors_rules;
    if asked.is_empty() || asked.len() > MAX_RULES {
        return Err(s3_error!(
            MalformedXML,
            "a CORS configuration has 1 to {MAX_RULES} rules; this one has {}",
            asked.len()
        ));
    }
    let rules = asked
        .into_iter()
        .map(rule_of)
        .collect::<S3Result<Vec<_>>>()?;
    let bytes: usize = rules
        .iter()
        .flat_map(|r| {
            r.allowed_origins
                .iter()
                .chain(&r.allowed_methods)
                .chain(&r.allowed_headers)
                .chain(&r.expose_headers)
                .chain(&r.id)
        })
        .map(String::len)
        .sum();
    if bytes > MAX_BYTES {
        return Err(s3_error!(
            MalformedXML,
            "a CORS configuration holds at most {MAX_BYTES} bytes of origins, methods, headers and ids; this one holds {bytes}"
        ));
    }
    this.store
        .set_bucket_cors(&input.bucket, Some(&rules))
        .await
        .map_err(write_err)?;
    Ok(S3Response::new(PutBucketCorsOutput::default()))
}

pub(crate) async fn delete(
    this: &Objects,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    this.store
        .set_bucket_cors(&req.input.bucket, None)
        .await
        .map_err(write_err)?;
    Ok(S3Response::new(DeleteBucketCorsOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_as_s3_matches_them() {
        let rules = vec![
            CorsRule {
                allowed_origins: vec!["https://*.example.com".into()],
                allowed_methods: vec!["PUT".into(), "POST".into()],
                allowed_headers: vec!["x-amz-*".into(), "content-type".into()],
                ..Default::default()
            },
            CorsRule {
                allowed_origins: vec!["*".into()],
                allowed_methods: vec!["GET".into()],
                ..Default::default()
            },
        ];
        let m = |o: &str, meth: &str, h: &[&str]| {
            let h: Vec<String> = h.iter().map(|s| s.to_string()).collect();
            matching(&rules, o, meth, &h).map(|r| r.allowed_origins[0].clone())
        };
        assert_eq!(
            m(
                "https://app.example.com",
                "PUT",
                &["X-Amz-Date", "content-type"]
            )
            .as_deref(),
            Some("https://*.example.com")
        );
        assert_eq!(
            m("https://app.example.com", "PUT", &["authorization"]),
            None
        );
        assert_eq!(m("https://example.com", "PUT", &[]), None, "no subdomain");
        assert_eq!(m("http://app.example.com", "POST", &[]), None, "scheme");
        assert_eq!(m("https://evil.net", "GET", &[]).as_deref(), Some("*"));
        assert_eq!(m("https://evil.net", "DELETE", &[]), None);
        assert!(wildcard("*", "", false));
        assert!(!wildcard("a*a", "a", false), "the ends may not overlap");
    }

    #[test]
    fn rules_are_checked_as_s3_checks_them() {
        let r = |origins: &[&str], methods: &[&str]| CORSRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: None,
            expose_headers: None,
            id: None,
            max_age_seconds: None,
        };
        assert!(rule_of(r(&["*"], &["GET"])).is_ok());
        assert!(rule_of(r(&["*"], &["PATCH"])).is_err());
        assert!(rule_of(r(&["https://*.*.com"], &["GET"])).is_err());
        assert!(rule_of(r(&[], &["GET"])).is_err());
    }
}
