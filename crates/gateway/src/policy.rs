//! Gateway policies, enforced before a function instance is created: client
//! network (allow/deny CIDRs), CORS (preflights answered here), request
//! body size, authentication (API key or JWT, with required roles and
//! claims) and rate limits (token buckets per IP, key or user).
//!
//! A compiled [`Policy`] lives in the route table; a new table reuses the
//! previous one's policy when it did not change, so a deploy does not reset
//! rate limits.
//!
//! A request runs: CIDR check ([`Policy::check_ip`]) → CORS preflight
//! (answered by the route the preflight asks about) → [`Policy::admit`]:
//! body size (`Content-Length`; the gateway limits chunked bodies) → rate
//! limit by IP → authentication (an API key with `invoke` on the app, or a
//! JWT of the app's pool or of an external issuer, with required roles and
//! claims) → rate limit by key or user → the verified caller, with its
//! credentials removed from the headers. Routes whose policy is open skip
//! all of it.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use nimbus_core::policy::{AuthMode, CorsSpec, RateKey, ResolvedPolicy};
use nimbus_identity::{ApiKeys, ExternalKeys, IdentityError, Limiter, Scope, Tokens};
use nimbus_runtime::{Caller, ResponseBody, text_response};
use std::net::IpAddr;
use std::time::Duration;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

/// What a rate limit bucket is keyed by.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Bucket {
    Ip(IpAddr),
    Name(String),
}

/// A compiled policy, shared by the routes of an app that use it (they
/// share its rate-limit buckets).
pub struct Policy {
    /// The app whose routes it guards.
    pub app: String,
    /// What it enforces.
    pub spec: ResolvedPolicy,
    limiter: Option<Limiter<Bucket>>,
}

/// What verifies credentials on the request path.
#[derive(Clone)]
pub struct Verifiers {
    /// API keys.
    pub keys: ApiKeys,
    /// App user pools' signing keys.
    pub tokens: Tokens,
    /// External issuers' keys.
    pub external: ExternalKeys,
}

/// The CORS layer of a route with this policy.
pub fn cors_layer(c: &CorsSpec, route_methods: &[Method]) -> CorsLayer {
    let values = |v: &[String]| -> Vec<HeaderValue> {
        v.iter()
            .filter_map(|s| HeaderValue::from_str(s).ok())
            .collect()
    };
    let names = |v: &[String]| -> Vec<http::HeaderName> {
        v.iter()
            .filter_map(|s| http::HeaderName::from_bytes(s.as_bytes()).ok())
            .collect()
    };
    let origin = if c.origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(values(&c.origins))
    };
    let methods: Vec<Method> = if c.methods.is_empty() {
        route_methods.to_vec()
    } else {
        c.methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect()
    };
    let mut layer = CorsLayer::new()
        .allow_origin(origin)
        .allow_methods(if methods.is_empty() {
            AllowMethods::mirror_request()
        } else {
            AllowMethods::list(methods)
        })
        .allow_headers(if c.headers.is_empty() {
            AllowHeaders::mirror_request()
        } else {
            AllowHeaders::list(names(&c.headers))
        })
        .expose_headers(ExposeHeaders::list(names(&c.expose)))
        .allow_credentials(c.credentials);
    if let Some(s) = c.max_age_secs {
        layer = layer.max_age(Duration::from_secs(s));
    }
    layer
}

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`; the method it asks about.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
        return None;
    }
    headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
}

/// Why a policy refused a request.
#[derive(Debug)]
pub struct Rejection {
    /// The status to answer.
    pub status: StatusCode,
    /// What was wrong and what to do.
    pub message: String,
    header: Option<(header::HeaderName, HeaderValue)>,
}

impl Rejection {
    fn new(status: StatusCode, message: String) -> Rejection {
        Rejection {
            status,
            message,
            header: None,
        }
    }

    /// The response to send.
    pub fn into_response(self) -> http::Response<ResponseBody> {
        let mut r = text_response(self.status, self.message);
        if let Some((k, v)) = self.header {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

fn reject(status: StatusCode, message: String) -> Rejection {
    Rejection::new(status, message)
}

fn unauthorized(message: String, scheme: &'static str) -> Rejection {
    Rejection {
        header: Some((header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme))),
        ..Rejection::new(StatusCode::UNAUTHORIZED, message)
    }
}

/// A `429` saying when to come back.
pub fn too_many(wait: Duration, what: &str) -> Rejection {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    Rejection {
        header: Some((header::RETRY_AFTER, HeaderValue::from(secs))),
        ..Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit of {what} exceeded: retry in {secs} s"),
        )
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

impl Policy {
    /// Compiles a policy.
    pub fn new(app: &str, spec: ResolvedPolicy) -> Policy {
        let limiter = spec
            .rate_limit
            .as_ref()
            .map(|r| Limiter::new(r.requests, Duration::from_millis(r.per_ms), r.burst));
        Policy {
            app: app.to_string(),
            spec,
            limiter,
        }
    }

    /// Forgets full rate-limit buckets.
    pub fn shrink(&self) {
        if let Some(l) = &self.limiter {
            l.shrink();
        }
    }

    fn limit(&self, key: Bucket) -> Result<(), Rejection> {
        let (Some(l), Some(r)) = (&self.limiter, &self.spec.rate_limit) else {
            return Ok(());
        };
        l.check(&key).map_err(|wait| {
            let what = match r.by {
                RateKey::Ip => "this client address",
                RateKey::Key => "this API key",
                RateKey::User => "this user",
            };
            too_many(wait, what)
        })
    }

    /// The network check, which comes first (preflights included).
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), Rejection> {
        if self.spec.allow.is_empty() && self.spec.deny.is_empty() {
            return Ok(());
        }
        match ip {
            Some(ip) if self.spec.ip_allowed(ip) => Ok(()),
            _ => Err(reject(
                StatusCode::FORBIDDEN,
                "requests from this network are not allowed on this route".into(),
            )),
        }
    }

    /// Body size, authentication and rate limit; the verified caller. The
    /// credentials are removed from the headers the guest will see.
    pub async fn admit(
        &self,
        v: &Verifiers,
        headers: &mut HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<Option<Caller>, Rejection> {
        if let Some(max) = self.spec.max_body_bytes {
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max) {
                return Err(reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over this route's limit of {max} bytes"),
                ));
            }
        }
        if self
            .spec
            .rate_limit
            .as_ref()
            .is_some_and(|r| r.by == RateKey::Ip)
            && let Some(ip) = ip
        {
            self.limit(Bucket::Ip(nimbus_core::policy::rate_limit_ip(ip)))?;
        }
        let caller = match self.spec.auth {
            AuthMode::Public => None,
            AuthMode::ApiKey => {
                let given = bearer(headers)
                    .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
                    .unwrap_or("");
                let Some(key) = v.keys.verify(given) else {
                    return Err(unauthorized(
                        "this route needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY` (`nimbus keys create NAME --app APP --scope invoke`)".into(),
                        "Bearer",
                    ));
                };
                if !key.allows(Some(&self.app), Scope::Invoke) {
                    return Err(reject(
                        StatusCode::FORBIDDEN,
                        format!(
                            "API key {:?} may not call app {:?}: it needs the invoke scope on this app",
                            key.name, self.app
                        ),
                    ));
                }
                if self
                    .spec
                    .rate_limit
                    .as_ref()
                    .is_some_and(|r| r.by == RateKey::Key)
                {
                    self.limit(Bucket::Name(key.id.clone()))?;
                }
                headers.remove("x-api-key");
                headers.remove(header::AUTHORIZATION);
                Some(Caller {
                    kind: "api_key",
                    subject: key.name.clone(),
                    claims: None,
                })
            }
            AuthMode::Jwt => {
                let Some(token) = bearer(headers) else {
                    return Err(unauthorized(
                        "this route needs a user token: send `Authorization: Bearer TOKEN` (log in at /v1/apps/APP/auth/login)".into(),
                        "Bearer",
                    ));
                };
                let verified = match &self.spec.issuer {
                    None => v.tokens.verify(&self.app, token),
                    Some(issuer) => v.external.verify(issuer, token).await,
                };
                let claims = match verified {
                    Ok(c) => c,
                    Err(IdentityError::Unauthorized(m)) => {
                        return Err(unauthorized(m, "Bearer error=\"invalid_token\""));
                    }
                    Err(e) => return Err(reject(StatusCode::UNAUTHORIZED, e.to_string())),
                };
                if let Err(m) = claims.satisfies(&self.spec.roles, &self.spec.claims) {
                    return Err(reject(StatusCode::FORBIDDEN, m));
                }
                if self
                    .spec
                    .rate_limit
                    .as_ref()
                    .is_some_and(|r| r.by == RateKey::User)
                {
                    self.limit(Bucket::Name(claims.subject.clone()))?;
                }
                headers.remove(header::AUTHORIZATION);
                Some(Caller {
                    kind: "jwt",
                    claims: Some(claims.json.clone()),
                    subject: claims.subject.clone(),
                })
            }
        };
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::policy::{PolicySpec, RateLimitSpec};

    #[test]
    fn ip_lists_and_rate_limits() {
        let spec = PolicySpec {
            deny: Some(vec!["10.0.0.0/8".into()]),
            rate_limit: Some(RateLimitSpec {
                requests: 1,
                per_ms: 60_000,
                burst: 2,
                by: RateKey::Ip,
            }),
            ..Default::default()
        }
        .resolve(&PolicySpec::default())
        .unwrap();
        let p = Policy::new("a", spec);
        assert!(p.check_ip(Some("10.1.1.1".parse().unwrap())).is_err());
        assert!(p.check_ip(Some("192.0.2.1".parse().unwrap())).is_ok());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(p.limit(Bucket::Ip(ip)).is_ok());
        assert!(p.limit(Bucket::Ip(ip)).is_ok());
        let r = p.limit(Bucket::Ip(ip)).unwrap_err().into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = r.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&secs));
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static("https://x"));
        assert_eq!(preflight_method(&Method::OPTIONS, &h), None);
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        assert_eq!(preflight_method(&Method::OPTIONS, &h), Some(Method::PUT));
    }
}
