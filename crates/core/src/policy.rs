//! Identity and policy: the app's user pool (`[auth]`), gateway policies
//! (`[gateway]` for every route, `[policies.NAME]` for routes that name
//! one), and client access rules on data.
//!
//! ```toml
//! [auth]                          # the app's user pool
//! signup = true                   # false: only admins create users
//! access_ttl = "15m"              # access token (JWT) lifetime
//! refresh_ttl = "30d"
//! reset_hook = "mailer"           # function that delivers password-reset tokens
//!
//! [gateway]                       # default policy of every route
//! max_body_kb = 1024
//! deny = ["203.0.113.0/24"]
//!
//! [policies.players]              # fields it leaves out come from [gateway]
//! auth = "jwt"                    # public | api_key | jwt
//! roles = ["player"]              # the token's `roles` must contain one
//! rate_limit = { requests = 10, per = "1s", burst = 20, by = "user" }
//! cors = { origins = ["https://game.example"] }
//!
//! [[triggers.http]]
//! route = "/move"
//! function = "game"
//! policy = "players"
//!
//! [collections.games]
//! access = "owner"                # none | public-read | authenticated | owner
//! owner_field = "player"
//! ```

use crate::events::parse_duration;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anyone.
    Public,
    /// A Nimbus API key of the app (or platform-wide) with the `invoke` scope.
    ApiKey,
    /// A JWT from the app's user pool or the policy's external issuer.
    Jwt,
}

/// An external token issuer, known by its JWKS URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalIssuer {
    /// Where its public keys are published.
    pub jwks_url: String,
    /// Required `iss` claim.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` claim.
    #[serde(default)]
    pub audience: Option<String>,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The client's IP address.
    Ip,
    /// The API key (requires `auth = "api_key"`).
    Key,
    /// The token's subject (requires `auth = "jwt"`).
    User,
}

/// A token bucket: `burst` requests at once, refilled at `requests` per `per_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitSpec {
    /// Requests per period.
    pub requests: u32,
    /// The period, in ms.
    pub per_ms: u64,
    /// Bucket size.
    pub burst: u32,
    /// What is counted.
    pub by: RateKey,
}

/// Cross-origin resource sharing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsSpec {
    /// Allowed origins (`https://host[:port]`), or `*`.
    pub origins: Vec<String>,
    /// Allowed methods; empty: the route's.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Allowed request headers; empty: any the browser asks for.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers scripts may read.
    #[serde(default)]
    pub expose: Vec<String>,
    /// Allow credentials (cookies, `Authorization`).
    #[serde(default)]
    pub credentials: bool,
    /// How long browsers may cache a preflight, in seconds.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
}

/// A gateway policy. `None` fields inherit from the app's `[gateway]`
/// policy, then from the defaults ([`PolicySpec::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    /// Who may call.
    #[serde(default)]
    pub auth: Option<AuthMode>,
    /// For `jwt`: an external issuer instead of the app's user pool.
    #[serde(default)]
    pub issuer: Option<ExternalIssuer>,
    /// For `jwt`: the token's `roles` claim must contain one of these.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// For `jwt`: claims that must equal (or, for arrays, contain) these values.
    #[serde(default)]
    pub claims: Option<BTreeMap<String, String>>,
    /// Rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// CORS.
    #[serde(default)]
    pub cors: Option<CorsSpec>,
    /// Largest request body, in bytes.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// If non-empty, only these networks may call.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// These networks may not call.
    #[serde(default)]
    pub deny: Option<Vec<String>>,
}

/// A policy with every field decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPolicy {
    /// Who may call.
    pub auth: AuthMode,
    /// External issuer (`jwt` only); `None`: the app's user pool.
    pub issuer: Option<ExternalIssuer>,
    /// Required roles (one of).
    pub roles: Vec<String>,
    /// Required claims.
    pub claims: BTreeMap<String, String>,
    /// Rate limit.
    pub rate_limit: Option<RateLimitSpec>,
    /// CORS.
    pub cors: Option<CorsSpec>,
    /// Largest request body, in bytes (`None`: the server's limit).
    pub max_body_bytes: Option<u64>,
    /// Allowed networks (empty: all).
    pub allow: Vec<IpNet>,
    /// Denied networks.
    pub deny: Vec<IpNet>,
}

impl ResolvedPolicy {
    /// Whether the policy lets `ip` through its allow and deny lists.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
            && !self.deny.iter().any(|n| n.contains(&ip))
    }

    /// Whether the policy does nothing beyond letting everyone in.
    pub fn is_open(&self) -> bool {
        self.auth == AuthMode::Public
            && self.rate_limit.is_none()
            && self.cors.is_none()
            && self.max_body_bytes.is_none()
            && self.allow.is_empty()
            && self.deny.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The address a rate limit counts a client by: IPv4 addresses as they are,
/// IPv6 ones by their /64 (one subscriber's network), so rotating through
/// addresses of one network does not get new buckets.
pub fn rate_limit_ip(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Parses a CIDR (`10.0.0.0/8`) or a single address (`192.0.2.7`).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("{s:?} is not a network: write a CIDR such as \"10.0.0.0/8\" or an address")
    })
}

impl PolicySpec {
    /// This policy over `base` (the app's `[gateway]` policy), with defaults
    /// for what neither sets. Fails on combinations that cannot work.
    pub fn resolve(&self, base: &PolicySpec) -> Result<ResolvedPolicy, String> {
        let auth = self.auth.or(base.auth).unwrap_or(AuthMode::Public);
        let nets = |v: &Option<Vec<String>>, b: &Option<Vec<String>>| {
            v.as_ref()
                .or(b.as_ref())
                .map(|l| {
                    l.iter()
                        .map(|s| parse_net(s))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap_or(Ok(Vec::new()))
        };
        let p = ResolvedPolicy {
            auth,
            issuer: self.issuer.clone().or_else(|| base.issuer.clone()),
            roles: self
                .roles
                .clone()
                .or_else(|| base.roles.clone())
                .unwrap_or_default(),
            claims: self
                .claims
                .clone()
                .or_else(|| base.claims.clone())
                .unwrap_or_default(),
            rate_limit: self.rate_limit.clone().or_else(|| base.rate_limit.clone()),
            cors: self.cors.clone().or_else(|| base.cors.clone()),
            max_body_bytes: self.max_body_bytes.or(base.max_body_bytes),
            allow: nets(&self.allow, &base.allow)?,
            deny: nets(&self.deny, &base.deny)?,
        };
        if auth != AuthMode::Jwt
            && (p.issuer.is_some() || !p.roles.is_empty() || !p.claims.is_empty())
        {
            return Err(
                "jwks_url, issuer, audience, roles and claims need auth = \"jwt\"".to_string(),
            );
        }
        if let Some(r) = &p.rate_limit {
            match (r.by, auth) {
                (RateKey::Key, AuthMode::ApiKey) | (RateKey::User, AuthMode::Jwt) => {}
                (RateKey::Ip, _) => {}
                (RateKey::Key, _) => {
                    return Err(
                        "rate_limit by = \"key\" needs auth = \"api_key\" (or count by \"ip\")"
                            .into(),
                    );
                }
                (RateKey::User, _) => {
                    return Err(
                        "rate_limit by = \"user\" needs auth = \"jwt\" (or count by \"ip\")".into(),
                    );
                }
            }
        }
        Ok(p)
    }
}

/// A policy as written in `nimbus.toml` (`[gateway]`, `[policies.NAME]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyManifest {
    /// `public`, `api_key` or `jwt`.
    #[serde(default)]
    pub auth: Option<String>,
    /// External issuer's JWKS URL (`jwt`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Required `iss` of an external issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` of an external issuer.
    #[serde(default)]
    pub audience: Option<String>,
    /// Roles, one of which the token must have.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Claims the token must have.
    #[serde(default)]
    pub claims: Option<BTreeMap<String, String>>,
    /// `{ requests, per, burst, by }`.
    #[serde(default)]
    pub rate_limit: Option<RateLimitManifest>,
    /// `{ origins, methods, headers, expose, credentials, max_age }`.
    #[serde(default)]
    pub cors: Option<CorsManifest>,
    /// Largest request body, in KiB.
    #[serde(default)]
    pub max_body_kb: Option<u64>,
    /// Networks allowed (CIDR).
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Networks denied (CIDR).
    #[serde(default)]
    pub deny: Option<Vec<String>>,
}

/// `rate_limit = { requests = 10, per = "1s", burst = 20, by = "ip" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitManifest {
    /// Requests per period.
    pub requests: u32,
    /// Period (default `"1s"`).
    #[serde(default)]
    pub per: Option<String>,
    /// Bucket size (default: `requests`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// `ip` (default), `key` or `user`.
    #[serde(default)]
    pub by: Option<String>,
}

/// `cors = { origins = [...], ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsManifest {
    /// Allowed origins, or `["*"]`.
    pub origins: Vec<String>,
    /// Allowed methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Exposed response headers.
    #[serde(default)]
    pub expose: Vec<String>,
    /// Allow credentials.
    #[serde(default)]
    pub credentials: bool,
    /// Preflight cache lifetime (`"1h"`).
    #[serde(default)]
    pub max_age: Option<String>,
}

fn check_header_name(h: &str) -> Result<(), String> {
    if !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        Ok(())
    } else {
        Err(format!("{h:?} is not a header name"))
    }
}

impl PolicyManifest {
    /// Checks the fields and builds the spec.
    pub fn to_spec(&self) -> Result<PolicySpec, String> {
        let auth = match self.auth.as_deref() {
            None => None,
            Some("public") => Some(AuthMode::Public),
            Some("api_key") => Some(AuthMode::ApiKey),
            Some("jwt") => Some(AuthMode::Jwt),
            Some(other) => {
                return Err(format!(
                    "auth = {other:?} is unknown: use \"public\", \"api_key\" or \"jwt\""
                ));
            }
        };
        let issuer = match &self.jwks_url {
            Some(url) => {
                let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                    .iter()
                    .any(|p| {
                        url.strip_prefix(p)
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
                    });
                if !(url.starts_with("https://") || loopback) {
                    return Err(format!(
                        "jwks_url {url:?} must be an https:// URL (http:// only on this machine: 127.0.0.1, localhost, [::1])"
                    ));
                }
                if self.issuer.is_none() && self.audience.is_none() {
                    return Err(
                        "an external issuer needs its issuer or audience (or both): without them any token its keys signed, for any client, would pass"
                            .into(),
                    );
                }
                Some(ExternalIssuer {
                    jwks_url: url.clone(),
                    issuer: self.issuer.clone(),
                    audience: self.audience.clone(),
                })
            }
            None if self.issuer.is_some() || self.audience.is_some() => {
                return Err(
                    "issuer and audience describe an external issuer: give its jwks_url too".into(),
                );
            }
            None => None,
        };
        let rate_limit = match &self.rate_limit {
            None => None,
            Some(r) => {
                if r.requests == 0 {
                    return Err("rate_limit requests must be at least 1".into());
                }
                let per_ms = match &r.per {
                    Some(p) => parse_duration("rate_limit per", p)?.as_millis() as u64,
                    None => 1000,
                };
                if per_ms == 0 {
                    return Err("rate_limit per must be at least 1ms".into());
                }
                let by = match r.by.as_deref() {
                    None | Some("ip") => RateKey::Ip,
                    Some("key") => RateKey::Key,
                    Some("user") => RateKey::User,
                    Some(other) => {
                        return Err(format!(
                            "rate_limit by = {other:?} is unknown: use \"ip\", \"key\" or \"user\""
                        ));
                    }
                };
                let burst = r.burst.unwrap_or(r.requests);
                if burst == 0 {
                    return Err("rate_limit burst must be at least 1".into());
                }
                Some(RateLimitSpec {
                    requests: r.requests,
                    per_ms,
                    burst,
                    by,
                })
            }
        };
        let cors = match &self.cors {
            None => None,
            Some(c) => {
                if c.origins.is_empty() {
                    return Err("cors origins is empty: list the allowed origins, or \"*\"".into());
                }
                for o in &c.origins {
                    if o == "*" {
                        if c.credentials {
                            return Err(
                                "cors: credentials cannot be allowed for every origin (\"*\"): list the origins"
                                    .into(),
                            );
                        }
                        continue;
                    }
                    let rest = o
                        .strip_prefix("https://")
                        .or_else(|| o.strip_prefix("http://"));
                    let ok = rest.is_some_and(|r| {
                        !r.is_empty()
                            && r.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
                    });
                    if !ok {
                        return Err(format!(
                            "cors origin {o:?} is invalid: write scheme://host[:port], e.g. \"https://app.example.com\", or \"*\""
                        ));
                    }
                }
                for h in c.headers.iter().chain(&c.expose) {
                    if h == "*" {
                        if c.credentials {
                            return Err(
                                "cors: credentials cannot be allowed with \"*\" headers: list them"
                                    .into(),
                            );
                        }
                        continue;
                    }
                    check_header_name(h).map_err(|e| format!("cors: {e}"))?;
                }
                let methods = c
                    .methods
                    .iter()
                    .map(|m| crate::route::normalize_method(m))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("cors: {e}"))?;
                let max_age_secs = match &c.max_age {
                    Some(a) => Some(parse_duration("cors max_age", a)?.as_secs()),
                    None => None,
                };
                Some(CorsSpec {
                    origins: c.origins.clone(),
                    methods,
                    headers: c.headers.clone(),
                    expose: c.expose.clone(),
                    credentials: c.credentials,
                    max_age_secs,
                })
            }
        };
        if let Some(0) = self.max_body_kb {
            return Err("max_body_kb must be at least 1".into());
        }
        for n in self.allow.iter().chain(&self.deny).flatten() {
            parse_net(n)?;
        }
        for r in self.roles.iter().flatten() {
            if r.is_empty() {
                return Err("roles has an empty role name".into());
            }
        }
        Ok(PolicySpec {
            auth,
            issuer,
            roles: self.roles.clone(),
            claims: self.claims.clone(),
            rate_limit,
            cors,
            max_body_bytes: self.max_body_kb.map(|kb| kb.saturating_mul(1024)),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
        })
    }
}

/// Who may use a KV store or collection straight from clients (REST with a
/// user token or none). Functions and admin keys are not affected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Functions and admin keys only.
    #[default]
    None,
    /// Anyone may read; writes need an admin key or a function.
    PublicRead,
    /// Any signed-in user of the app may read and write.
    Authenticated,
    /// Signed-in users may read and write only what they own: documents
    /// whose owner field equals their subject, keys under `SUBJECT/`.
    Owner,
    /// Signed-in users may read only what they own (as with `Owner`);
    /// writes need an admin key or a function.
    OwnerRead,
}

impl Access {
    /// Parses `none`, `public-read`, `authenticated`, `owner` or `owner-read`.
    pub fn parse(s: &str) -> Result<Access, String> {
        match s {
            "none" => Ok(Access::None),
            "public-read" => Ok(Access::PublicRead),
            "authenticated" => Ok(Access::Authenticated),
            "owner" => Ok(Access::Owner),
            "owner-read" => Ok(Access::OwnerRead),
            other => Err(format!(
                "access = {other:?} is unknown: use \"none\", \"public-read\", \"authenticated\", \"owner\" or \"owner-read\""
            )),
        }
    }
}

/// The app's user pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSpec {
    /// Whether clients may sign up (else only admins create users).
    pub signup: bool,
    /// Access token lifetime, in seconds.
    pub access_ttl_secs: u64,
    /// Refresh token lifetime, in seconds.
    pub refresh_ttl_secs: u64,
    /// Password-reset token lifetime, in seconds.
    pub reset_ttl_secs: u64,
    /// Function that receives password-reset tokens (as an async event).
    pub reset_hook: Option<String>,
    /// Shortest password accepted.
    pub min_password_length: u32,
    /// Password checks allowed per account per minute (logins, password
    /// changes, account deletions).
    pub login_attempts_per_account: u32,
    /// Logins allowed per client IP per minute.
    pub login_attempts_per_ip: u32,
}

impl Default for AuthSpec {
    fn default() -> Self {
        AuthSpec {
            signup: true,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 86_400,
            reset_ttl_secs: 3600,
            reset_hook: None,
            min_password_length: 8,
            login_attempts_per_account: 5,
            login_attempts_per_ip: 30,
        }
    }
}

/// The `[auth]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthManifest {
    /// See [`AuthSpec::signup`].
    #[serde(default)]
    pub signup: Option<bool>,
    /// `"15m"`.
    #[serde(default)]
    pub access_ttl: Option<String>,
    /// `"30d"`.
    #[serde(default)]
    pub refresh_ttl: Option<String>,
    /// `"1h"`.
    #[serde(default)]
    pub reset_ttl: Option<String>,
    /// A function of the app.
    #[serde(default)]
    pub reset_hook: Option<String>,
    /// See [`AuthSpec::min_password_length`].
    #[serde(default)]
    pub min_password_length: Option<u32>,
    /// See [`AuthSpec::login_attempts_per_account`].
    #[serde(default)]
    pub login_attempts_per_account: Option<u32>,
    /// See [`AuthSpec::login_attempts_per_ip`].
    #[serde(default)]
    pub login_attempts_per_ip: Option<u32>,
}

impl AuthManifest {
    /// Checks the fields and builds the spec (the hook is checked by the caller).
    pub fn to_spec(&self) -> Result<AuthSpec, String> {
        let d = AuthSpec::default();
        let secs = |what: &str, v: &Option<String>, default: u64| -> Result<u64, String> {
            let s = match v {
                Some(s) => parse_duration(what, s)?.as_secs(),
                None => default,
            };
            if s == 0 {
                return Err(format!("{what} must be at least 1s"));
            }
            Ok(s)
        };
        let spec = AuthSpec {
            signup: self.signup.unwrap_or(d.signup),
            access_ttl_secs: secs("access_ttl", &self.access_ttl, d.access_ttl_secs)?,
            refresh_ttl_secs: secs("refresh_ttl", &self.refresh_ttl, d.refresh_ttl_secs)?,
            reset_ttl_secs: secs("reset_ttl", &self.reset_ttl, d.reset_ttl_secs)?,
            reset_hook: self.reset_hook.clone(),
            min_password_length: self.min_password_length.unwrap_or(d.min_password_length),
            login_attempts_per_account: self
                .login_attempts_per_account
                .unwrap_or(d.login_attempts_per_account),
            login_attempts_per_ip: self
                .login_attempts_per_ip
                .unwrap_or(d.login_attempts_per_ip),
        };
        if spec.access_ttl_secs > 86_400 {
            return Err("access_ttl is at most 24h: use refresh tokens for longer sessions".into());
        }
        if !(1..=1024).contains(&spec.min_password_length) {
            return Err("min_password_length must be in 1..=1024".into());
        }
        if spec.login_attempts_per_account == 0 || spec.login_attempts_per_ip == 0 {
            return Err("login attempts per minute must be at least 1".into());
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_overlay_and_check() {
        let base = PolicyManifest {
            deny: Some(vec!["203.0.113.0/24".into()]),
            max_body_kb: Some(4),
            ..Default::default()
        }
        .to_spec()
        .unwrap();
        let named = PolicyManifest {
            auth: Some("jwt".into()),
            roles: Some(vec!["player".into()]),
            rate_limit: Some(RateLimitManifest {
                requests: 5,
                per: Some("1s".into()),
                burst: None,
                by: Some("user".into()),
            }),
            ..Default::default()
        }
        .to_spec()
        .unwrap();
        let p = named.resolve(&base).unwrap();
        assert_eq!(p.auth, AuthMode::Jwt);
        assert_eq!(p.max_body_bytes, Some(4096));
        assert_eq!(p.rate_limit.as_ref().unwrap().burst, 5);
        assert!(!p.ip_allowed("203.0.113.9".parse().unwrap()));
        assert!(!p.ip_allowed("::ffff:203.0.113.9".parse().unwrap()));
        assert!(p.ip_allowed("198.51.100.1".parse().unwrap()));
        assert_eq!(
            rate_limit_ip("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            rate_limit_ip("2001:db8:1:2:ffff::1".parse().unwrap())
        );
        assert_ne!(
            rate_limit_ip("2001:db8:1:2::1".parse().unwrap()),
            rate_limit_ip("2001:db8:1:3::1".parse().unwrap())
        );
        // The default policy alone: rate by user without jwt is refused.
        let by_user = PolicySpec {
            rate_limit: named.rate_limit.clone(),
            ..Default::default()
        };
        assert!(by_user.resolve(&base).unwrap_err().contains("needs auth"));
        let allow = PolicySpec {
            allow: Some(vec!["10.0.0.0/8".into()]),
            ..Default::default()
        }
        .resolve(&PolicySpec::default())
        .unwrap();
        assert!(allow.ip_allowed("10.1.2.3".parse().unwrap()));
        assert!(!allow.ip_allowed("127.0.0.1".parse().unwrap()));
        assert!(PolicySpec::default().resolve(&base).unwrap().deny.len() == 1);
        assert!(
            PolicySpec::default()
                .resolve(&PolicySpec::default())
                .unwrap()
                .is_open()
        );
    }

    #[test]
    fn bad_policies_say_why() {
        let bad = |m: PolicyManifest| m.to_spec().unwrap_err();
        assert!(
            bad(PolicyManifest {
                auth: Some("magic".into()),
                ..Default::default()
            })
            .contains("api_key")
        );
        assert!(
            bad(PolicyManifest {
                deny: Some(vec!["10.0.0.0/33".into()]),
                ..Default::default()
            })
            .contains("CIDR")
        );
        assert!(
            bad(PolicyManifest {
                cors: Some(CorsManifest {
                    origins: vec!["*".into()],
                    methods: vec![],
                    headers: vec![],
                    expose: vec![],
                    credentials: true,
                    max_age: None,
                }),
                ..Default::default()
            })
            .contains("credentials")
        );
        assert!(
            bad(PolicyManifest {
                issuer: Some("x".into()),
                ..Default::default()
            })
            .contains("jwks_url")
        );
        assert!(
            bad(PolicyManifest {
                jwks_url: Some("http://issuer.example/jwks".into()),
                audience: Some("a".into()),
                ..Default::default()
            })
            .contains("https://")
        );
        assert!(
            bad(PolicyManifest {
                jwks_url: Some("https://issuer.example/jwks".into()),
                ..Default::default()
            })
            .contains("audience")
        );
        assert!(
            PolicyManifest {
                jwks_url: Some("http://127.0.0.1:8080/jwks".into()),
                issuer: Some("i".into()),
                ..Default::default()
            }
            .to_spec()
            .is_ok()
        );
        assert!(Access::parse("owner").is_ok());
        assert!(
            Access::parse("everyone")
                .unwrap_err()
                .contains("public-read")
        );
        assert!(
            AuthManifest {
                access_ttl: Some("2d".into()),
                ..Default::default()
            }
            .to_spec()
            .unwrap_err()
            .contains("24h")
        );
    }
}
