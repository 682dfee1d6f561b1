//! Access tokens: JWTs signed with each app's Ed25519 keys, their JWKS, and
//! tokens of external issuers verified through a JWKS URL.
//!
//! [`Tokens`]: each app's signing keys (generated with `ring`, private
//! halves sealed); tokens issued and verified with `jsonwebtoken` (`kid`,
//! `iss = nimbus:APP`, `aud = APP`, 2 s leeway). A rotated key stops
//! signing but verifies for [`MAX_ACCESS_TTL_SECS`] after its retirement.
//! Verified tokens are remembered by their exact text (an LRU, until
//! `exp`), so a client's repeated token costs one signature check, not one
//! per request. Ended sessions (`token_revocations`, reloaded on every
//! node with the cluster generation) refuse a user's tokens issued before
//! them (`iat_us`, a microsecond issue time), checked after that cache too.
//!
//! [`ExternalKeys`]: other issuers' JWKS, cached 10 minutes and refetched
//! (at most every 30 s) on an unknown `kid`; public-key algorithms only. A
//! fetch follows no redirect, reads at most [`JWKS_MAX_BYTES`] and takes at
//! most [`JWKS_TIMEOUT`]; each URL is fetched once at a time, so a slow
//! issuer delays only lookups of its own keys.

use crate::{IdentityError, Result, Sealer, now_secs};
use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use nimbus_core::policy::ExternalIssuer;
use nimbus_store::{SigningKeyRow, Store};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest access token lifetime (see `[auth] access_ttl`): a retired
/// signing key keeps verifying (and stays in the JWKS) this long.
pub const MAX_ACCESS_TTL_SECS: u64 = 86_400;

/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECS: u64 = 2;

/// The verified claims of a token.
#[derive(Debug, Clone)]
pub struct Claims {
    /// `sub`.
    pub subject: String,
    /// Every claim.
    pub all: Map<String, Value>,
    /// Every claim, as JSON text.
    pub json: String,
    /// `exp`, in seconds since the epoch.
    pub expires_at: u64,
    /// When it was issued, in microseconds since the epoch (`iat_us`, or
    /// the start of `iat`'s second for tokens without it).
    pub issued_at_us: i64,
}

/// Tokens verified recently, by their exact text: a token presented again
/// (a client sends the same one on every request until it expires) skips
/// the signature check. Entries are dropped once past `exp` + leeway, and
/// all of them when keys are reloaded.
struct Verified {
    cache: parking_lot::Mutex<lru::LruCache<(String, String), Arc<Claims>>>,
}

/// Tokens remembered per cache.
const VERIFIED_CAPACITY: usize = 16_384;

impl Default for Verified {
    fn default() -> Self {
        Verified {
            cache: parking_lot::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(VERIFIED_CAPACITY).expect("non-zero"),
            )),
        }
    }
}

impl Verified {
    fn get(&self, scope: &str, token: &str) -> Option<Arc<Claims>> {
        let mut cache = self.cache.lock();
        let key = (scope.to_string(), token.to_string());
        let hit = cache.get(&key)?.clone();
        if now_secs() > hit.expires_at + LEEWAY_SECS {
            cache.pop(&key);
            return None;
        }
        Some(hit)
    }

    fn put(&self, scope: &str, token: &str, claims: Arc<Claims>) {
        self.cache
            .lock()
            .put((scope.to_string(), token.to_string()), claims);
    }

    fn clear(&self) {
        self.cache.lock().clear();
    }
}

impl Claims {
    /// The `roles` claim (an array of strings), if any.
    pub fn roles(&self) -> Vec<&str> {
        self.all
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Checks a policy's requirements: one of `roles` (if any), and each
    /// claim equal to (or, for an array claim, containing) its value.
    pub fn satisfies(
        &self,
        roles: &[String],
        claims: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        if !roles.is_empty() {
            let mine = self.roles();
            if !roles.iter().any(|r| mine.contains(&r.as_str())) {
                return Err(format!(
                    "the token has none of the roles this route needs ({})",
                    roles.join(", ")
                ));
            }
        }
        for (k, want) in claims {
            let ok = match self.all.get(k) {
                Some(Value::String(s)) => s == want,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
                Some(Value::Bool(b)) => b.to_string() == *want,
                Some(Value::Number(n)) => n.to_string() == *want,
                _ => false,
            };
            if !ok {
                return Err(format!("the token's claim {k:?} is not {want:?}"));
            }
        }
        Ok(())
    }

    fn from_value(v: Value) -> Result<Claims> {
        let Value::Object(all) = v else {
            return Err(unauthorized("the token's claims are not an object"));
        };
        let subject = all
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized("the token has no subject (sub)"))?
            .to_string();
        let expires_at = all.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let issued_at_us = all
            .get("iat_us")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| {
                all.get("iat")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .saturating_mul(1_000_000)
            });
        let json = serde_json::to_string(&all).expect("JSON values serialize");
        Ok(Claims {
            subject,
            all,
            json,
            expires_at,
            issued_at_us,
        })
    }
}

fn unauthorized(m: impl Into<String>) -> IdentityError {
    IdentityError::Unauthorized(m.into())
}

fn rejected(e: jsonwebtoken::errors::Error) -> IdentityError {
    use jsonwebtoken::errors::ErrorKind as K;
    let why = match e.kind() {
        K::ExpiredSignature => "the token has expired: refresh it".to_string(),
        K::InvalidAudience => "the token is for another audience".to_string(),
        K::InvalidIssuer => "the token is from another issuer".to_string(),
        K::InvalidSignature => "the token's signature is invalid".to_string(),
        K::InvalidAlgorithm => "the token's algorithm is not accepted".to_string(),
        K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        _ => format!("the token is malformed ({e})"),
    };
    unauthorized(why)
}

/// The issuer name of an app's tokens.
pub fn issuer_of(app: &str) -> String {
    format!("nimbus:{app}")
}

struct AppKeys {
    signing: Option<(String, EncodingKey)>,
    /// Public keys by `kid`, with when each stops verifying (retired keys:
    /// the longest token lifetime after their retirement), in seconds.
    verify: HashMap<String, (DecodingKey, Option<u64>)>,
    jwks: Value,
}

/// Every app's signing keys.
#[derive(Clone)]
pub struct Tokens {
    store: Store,
    sealer: Sealer,
    apps: Arc<ArcSwap<HashMap<String, Arc<AppKeys>>>>,
    /// Serialises key creation.
    write: Arc<tokio::sync::Mutex<()>>,
    verified: Arc<Verified>,
    /// Ended sessions: app → user → tokens issued before this (µs) are
    /// refused.
    revoked: Arc<ArcSwap<HashMap<String, HashMap<String, i64>>>>,
    /// One reload at a time (keys, revocations): a slow one must not
    /// install what it read after a later one installed newer rows.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl Tokens {
    /// Loads the keys from the store.
    pub async fn load(store: Store, sealer: Sealer) -> Result<Tokens> {
        let t = Tokens {
            store,
            sealer,
            apps: Arc::default(),
            write: Arc::default(),
            verified: Arc::default(),
            revoked: Arc::default(),
            reloading: Arc::default(),
        };
        t.reload().await?;
        Ok(t)
    }

    /// Reloads every app's keys from the store.
    pub async fn reload(&self) -> Result<()> {
        let _one = self.reloading.lock().await;
        let cutoff = nimbus_store::now_us() - (MAX_ACCESS_TTL_SECS as i64 + 60) * 1_000_000;
        let rows = self.store.signing_keys(cutoff).await?;
        let mut by_app: HashMap<String, Vec<SigningKeyRow>> = HashMap::new();
        for r in rows {
            by_app.entry(r.app.clone()).or_default().push(r);
        }
        let mut apps = HashMap::new();
        for (app, rows) in by_app {
            let mut verify = HashMap::new();
            let mut jwks = Vec::new();
            let mut signing = None;
            for r in &rows {
                let key = DecodingKey::from_ed_components(&r.public_key)
                    .map_err(|e| IdentityError::Internal(format!("signing key {}: {e}", r.kid)))?;
                let until = r
                    .retired_at_us
                    .map(|at| (at.max(0) as u64) / 1_000_000 + MAX_ACCESS_TTL_SECS);
                verify.insert(r.kid.clone(), (key, until));
                jwks.push(json!({
                    "kty": "OKP", "crv": "Ed25519", "x": r.public_key,
                    "kid": r.kid, "alg": "EdDSA", "use": "sig",
                }));
                if r.retired_at_us.is_none() {
                    let pkcs8 = self
                        .sealer
                        .open(&r.private_key)
                        .map_err(IdentityError::Internal)?;
                    let der = STANDARD
                        .decode(pkcs8)
                        .map_err(|e| IdentityError::Internal(format!("signing key: {e}")))?;
                    signing = Some((r.kid.clone(), EncodingKey::from_ed_der(&der)));
                }
            }
            apps.insert(
                app,
                Arc::new(AppKeys {
                    signing,
                    verify,
                    jwks: json!({ "keys": jwks }),
                }),
            );
        }
        self.apps.store(Arc::new(apps));
        self.verified.clear();
        self.load_revocations().await
    }

    /// Reloads the ended sessions from the store (after this node ended
    /// one; other nodes reload with the cluster's generation).
    pub async fn reload_revocations(&self) -> Result<()> {
        let _one = self.reloading.lock().await;
        self.load_revocations().await
    }

    async fn load_revocations(&self) -> Result<()> {
        let mut revoked: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for r in self.store.token_revocations().await? {
            revoked
                .entry(r.app)
                .or_default()
                .insert(r.subject, r.before_us);
        }
        self.revoked.store(Arc::new(revoked));
        Ok(())
    }

    /// Refuses a token of a session that was ended after it was issued.
    fn check_revoked(&self, app: &str, claims: &Claims) -> Result<()> {
        let revoked = self.revoked.load();
        if revoked.is_empty() {
            return Ok(());
        }
        match revoked
            .get(app)
            .and_then(|users| users.get(&claims.subject))
        {
            Some(&before) if claims.issued_at_us < before => Err(unauthorized(
                "the session of this token was ended (a logout everywhere, a password change or reset, a role change, or the account's deletion): log in again, or refresh",
            )),
            _ => Ok(()),
        }
    }

    /// Creates a new signing key for `app`; the previous one stops signing
    /// but verifies until the tokens it signed have expired.
    pub async fn rotate(&self, app: &str) -> Result<String> {
        let _w = self.write.lock().await;
        self.new_key(app).await
    }

    async fn new_key(&self, app: &str) -> Result<String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| IdentityError::Internal("generating a signing key failed".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| IdentityError::Internal("reading a signing key failed".into()))?;
        let kid = uuid::Uuid::now_v7().simple().to_string();
        self.store
            .insert_signing_key(&SigningKeyRow {
                app: app.to_string(),
                kid: kid.clone(),
                private_key: self.sealer.seal(&STANDARD.encode(pkcs8.as_ref())),
                public_key: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                created_at_us: nimbus_store::now_us(),
                retired_at_us: None,
            })
            .await?;
        self.reload().await?;
        Ok(kid)
    }

    /// Makes sure `app` has a signing key.
    pub async fn ensure(&self, app: &str) -> Result<()> {
        if self.has_signing_key(app) {
            return Ok(());
        }
        let _w = self.write.lock().await;
        if !self.has_signing_key(app) {
            self.new_key(app).await?;
        }
        Ok(())
    }

    fn has_signing_key(&self, app: &str) -> bool {
        self.apps
            .load()
            .get(app)
            .is_some_and(|k| k.signing.is_some())
    }

    /// Signs an access token for `subject` of `app`, valid `ttl_secs`, with
    /// `extra` claims (email, roles).
    pub async fn issue(
        &self,
        app: &str,
        subject: &str,
        ttl_secs: u64,
        extra: Map<String, Value>,
    ) -> Result<String> {
        self.ensure(app).await?;
        let keys = self.apps.load_full();
        let (kid, key) = keys
            .get(app)
            .and_then(|k| k.signing.as_ref())
            .ok_or_else(|| IdentityError::Internal(format!("app {app:?} has no signing key")))?;
        let now_us = nimbus_store::now_us();
        let now = (now_us / 1_000_000) as u64;
        let mut claims = extra;
        claims.insert("iss".into(), issuer_of(app).into());
        claims.insert("aud".into(), app.into());
        claims.insert("sub".into(), subject.into());
        claims.insert("iat".into(), now.into());
        // Precise enough to tell a token issued just after a session ended
        // (the new session a password change returns) from one before.
        claims.insert("iat_us".into(), now_us.into());
        claims.insert("exp".into(), (now + ttl_secs).into());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &Value::Object(claims), key)
            .map_err(|e| IdentityError::Internal(format!("signing a token: {e}")))
    }

    /// Verifies an access token of `app`'s user pool.
    pub fn verify(&self, app: &str, token: &str) -> Result<Arc<Claims>> {
        if let Some(c) = self.verified.get(app, token) {
            self.check_revoked(app, &c)?;
            return Ok(c);
        }
        let claims = Arc::new(self.verify_signed(app, token)?);
        self.check_revoked(app, &claims)?;
        self.verified.put(app, token, claims.clone());
        Ok(claims)
    }

    fn verify_signed(&self, app: &str, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token).map_err(rejected)?;
        if header.alg != Algorithm::EdDSA {
            return Err(unauthorized(format!(
                "the token is signed with {:?}; this app's tokens use EdDSA",
                header.alg
            )));
        }
        let keys = self.apps.load();
        let (key, until) = header
            .kid
            .as_deref()
            .and_then(|kid| keys.get(app)?.verify.get(kid))
            .ok_or_else(|| unauthorized(format!("the token was not signed by app {app:?}")))?;
        if until.is_some_and(|u| now_secs() > u) {
            return Err(unauthorized(
                "the token was signed with a retired key: log in again",
            ));
        }
        let mut v = Validation::new(Algorithm::EdDSA);
        v.leeway = LEEWAY_SECS;
        v.set_audience(&[app]);
        v.set_issuer(&[issuer_of(app)]);
        v.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Value>(token, key, &v).map_err(rejected)?;
        Claims::from_value(data.claims)
    }

    /// The app's public keys as a JWKS document.
    pub fn jwks(&self, app: &str) -> Value {
        self.apps
            .load()
            .get(app)
            .map(|k| k.jwks.clone())
            .unwrap_or_else(|| json!({ "keys": [] }))
    }
}

struct Fetched {
    keys: Vec<(Option<String>, DecodingKey, Option<Algorithm>)>,
    at: Instant,
}

/// Keys of external issuers, fetched from their JWKS URLs and cached.
///
/// A fetch follows no redirect, reads at most [`JWKS_MAX_BYTES`] and takes
/// at most [`JWKS_TIMEOUT`]; one URL is fetched once at a time (concurrent
/// lookups of it wait for that fetch), and lookups of other URLs never wait
/// for it.
#[derive(Clone)]
pub struct ExternalKeys {
    client: reqwest::Client,
    cache: Arc<parking_lot::Mutex<HashMap<String, Arc<Fetched>>>>,
    /// The fetch under way per URL (single flight); entries go when their
    /// last waiter is done.
    fetching: Arc<parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    verified: Arc<Verified>,
    timeout: Duration,
    max_bytes: usize,
}

/// How long fetched keys are trusted.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// Shortest interval between two fetches of one URL (unknown `kid`s).
const JWKS_REFETCH: Duration = Duration::from_secs(30);
/// Longest a JWKS fetch may take, connection to last byte.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
pub const JWKS_MAX_BYTES: usize = 1 << 20;

impl Default for ExternalKeys {
    fn default() -> Self {
        ExternalKeys::with_limits(JWKS_TIMEOUT, JWKS_MAX_BYTES)
    }
}

/// Removes a URL's single-flight entry when its last user is done, even if
/// the lookup was cancelled.
struct FlightGuard<'a> {
    map: &'a parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    url: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        // Two references: the map's and ours. Anyone else who took the gate
        // took it under this lock, and removes it when done.
        if map
            .get(self.url)
            .is_some_and(|g| Arc::ptr_eq(g, &self.gate))
            && Arc::strong_count(&self.gate) == 2
        {
            map.remove(self.url);
        }
    }
}

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl ExternalKeys {
    /// Keys fetched within `timeout` each, documents of at most `max_bytes`.
    pub fn with_limits(timeout: Duration, max_bytes: usize) -> ExternalKeys {
        ExternalKeys {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(timeout)
                .timeout(timeout)
                .build()
                .expect("a TLS client builds"),
            cache: Arc::default(),
            fetching: Arc::default(),
            verified: Arc::default(),
            timeout,
            max_bytes,
        }
    }

    fn cached(&self, url: &str) -> Option<Arc<Fetched>> {
        self.cache.lock().get(url).cloned()
    }

    /// The keys at `url`, fetched unless the cached ones are newer than
    /// `unless_newer_than`; one fetch per URL at a time.
    async fn refresh(&self, url: &str, unless_newer_than: Duration) -> Result<Arc<Fetched>> {
        let gate = self
            .fetching
            .lock()
            .entry(url.to_string())
            .or_default()
            .clone();
        let flight = FlightGuard {
            map: &self.fetching,
            url,
            gate,
        };
        let _one = flight.gate.lock().await;
        if let Some(c) = self.cached(url)
            && c.at.elapsed() < unless_newer_than
        {
            return Ok(c);
        }
        let unreachable = |e: String| {
            unauthorized(format!(
                "the token issuer's keys at {url} are unavailable: {e}"
            ))
        };
        let body = tokio::time::timeout(self.timeout, self.download(url))
            .await
            .map_err(|_| unreachable(format!("no complete answer within {:?}", self.timeout)))?
            .map_err(unreachable)?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| unreachable(format!("not a JWKS document: {e}")))?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let key = DecodingKey::from_jwk(jwk).ok()?;
                let alg = jwk
                    .common
                    .key_algorithm
                    .and_then(|a| a.to_string().parse::<Algorithm>().ok());
                Some((jwk.common.key_id.clone(), key, alg))
            })
            .collect();
        let fetched = Arc::new(Fetched {
            keys,
            at: Instant::now(),
        });
        self.cache.lock().insert(url.to_string(), fetched.clone());
        // Keys the issuer dropped must stop verifying at once.
        self.verified.clear();
        Ok(fetched)
    }

    /// The body of a JWKS URL: a 2xx answer (redirects are not followed)
    /// of at most `max_bytes`.
    async fn download(&self, url: &str) -> std::result::Result<Vec<u8>, String> {
        let mut r = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        if status.is_redirection() {
            return Err(format!(
                "it answered {status}, a redirect, which is not followed: set jwks_url to the final URL"
            ));
        }
        if !status.is_success() {
            return Err(format!("it answered {status}"));
        }
        let too_large = || format!("the document is larger than {} bytes", self.max_bytes);
        if r.content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Verifies a token of an external issuer.
    pub async fn verify(&self, issuer: &ExternalIssuer, token: &str) -> Result<Arc<Claims>> {
        // The cache is per issuer, audience and URL: the same token may be
        // acceptable to one policy and not another.
        let scope = format!(
            "{}\n{}\n{}",
            issuer.jwks_url,
            issuer.issuer.as_deref().unwrap_or(""),
            issuer.audience.as_deref().unwrap_or("")
        );
        if let Some(c) = self.verified.get(&scope, token) {
            return Ok(c);
        }
        let claims = Arc::new(self.verify_signed(issuer, token).await?);
        self.verified.put(&scope, token, claims.clone());
        Ok(claims)
    }

    async fn verify_signed(&self, issuer: &ExternalIssuer, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token).map_err(rejected)?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(unauthorized(format!(
                "the token is signed with {:?}: only public-key algorithms are accepted",
                header.alg
            )));
        }
        let find = |f: &Fetched| {
            f.keys
                .iter()
                .find(|(kid, _, alg)| {
                    (header.kid.is_none() || kid.as_deref() == header.kid.as_deref())
                        && alg.is_none_or(|a| a == header.alg)
                })
                .map(|(_, k, _)| k.clone())
        };
        let mut key = match self.cached(&issuer.jwks_url) {
            Some(c) if c.at.elapsed() < JWKS_TTL => find(&c),
            _ => None,
        };
        if key.is_none() {
            let fresh = self.refresh(&issuer.jwks_url, JWKS_REFETCH).await?;
            key = find(&fresh);
        }
        let key = key.ok_or_else(|| unauthorized("the token's key is not in the issuer's JWKS"))?;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_SECS;
        match &issuer.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(i) = &issuer.issuer {
            v.set_issuer(&[i]);
        }
        v.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(rejected)?;
        Claims::from_value(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn issue_verify_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let sealer = Sealer::new([7; 32]);
        let t = Tokens::load(store.clone(), sealer.clone()).await.unwrap();
        let mut extra = Map::new();
        extra.insert("roles".into(), json!(["player"]));
        let tok = t.issue("a", "u1", 60, extra.clone()).await.unwrap();
        let c = t.verify("a", &tok).unwrap();
        assert_eq!(c.subject, "u1");
        assert!(
            Arc::ptr_eq(&c, &t.verify("a", &tok).unwrap()),
            "a token seen before is not verified again"
        );
        assert!(t.verify("b", &tok).is_err(), "the cache is per app");
        assert_eq!(c.roles(), ["player"]);
        assert!(c.satisfies(&["player".into()], &Default::default()).is_ok());
        assert!(c.satisfies(&["admin".into()], &Default::default()).is_err());
        // Another app's token does not verify here.
        let other = t.issue("b", "u1", 60, Map::new()).await.unwrap();
        assert!(matches!(
            t.verify("a", &other),
            Err(IdentityError::Unauthorized(_))
        ));
        // A tampered payload breaks the signature.
        let parts: Vec<&str> = tok.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(
                &json!({"sub": "admin", "aud": "a", "iss": "nimbus:a", "exp": now_secs() + 60}),
            )
            .unwrap(),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        let e = t.verify("a", &forged).unwrap_err().to_string();
        assert!(e.contains("signature"), "{e}");
        // Rotation: old tokens still verify, new ones use the new key.
        let before = t.jwks("a")["keys"].as_array().unwrap().len();
        let kid = t.rotate("a").await.unwrap();
        assert!(t.verify("a", &tok).is_ok());
        let new = t.issue("a", "u1", 60, Map::new()).await.unwrap();
        assert_eq!(jsonwebtoken::decode_header(&new).unwrap().kid.unwrap(), kid);
        assert_eq!(t.jwks("a")["keys"].as_array().unwrap().len(), before + 1);
        // Keys survive a restart.
        let again = Tokens::load(store, sealer).await.unwrap();
        assert!(again.verify("a", &tok).is_ok());
        assert!(again.verify("a", &new).is_ok());
    }
}

#[cfg(test)]
mod external_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A JWKS server on loopback: `/jwks` (counted), `/redirect` to it,
    /// `/huge` and `/stream` (2 MiB, with and without a length), `/slow`
    /// (1.5 s, counted), `/hang` (never finishes).
    async fn issuer() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        use axum::routing::get;
        let (jwks, slow) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (j, sl) = (jwks.clone(), slow.clone());
        const KEYS: &str = r#"{"keys":[]}"#;
        let huge = || format!("{}{KEYS}", " ".repeat(2 << 20));
        let app = axum::Router::new()
            .route(
                "/jwks",
                get(move || {
                    j.fetch_add(1, Ordering::SeqCst);
                    async { KEYS }
                }),
            )
            .route(
                "/redirect",
                get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, "/jwks")],
                    )
                }),
            )
            .route("/huge", get(move || async move { huge() }))
            .route(
                "/stream",
                get(move || async move {
                    let chunks = (0..64)
                        .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(" ".repeat(32 << 10))));
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route(
                "/slow",
                get(move || {
                    sl.fetch_add(1, Ordering::SeqCst);
                    async {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        KEYS
                    }
                }),
            )
            .route(
                "/hang",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    KEYS
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, jwks, slow)
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let (url, jwks, _) = issuer().await;
        let k = ExternalKeys::default();
        assert!(
            k.refresh(&format!("{url}/jwks"), JWKS_REFETCH)
                .await
                .is_ok()
        );
        assert_eq!(jwks.load(Ordering::SeqCst), 1);
        let e = k
            .refresh(&format!("{url}/redirect"), JWKS_REFETCH)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("302") && e.contains("redirect"), "{e}");
        assert_eq!(jwks.load(Ordering::SeqCst), 1, "the redirect was followed");
    }

    #[tokio::test]
    async fn a_huge_document_is_refused() {
        let (url, _, _) = issuer().await;
        let k = ExternalKeys::default();
        for path in ["/huge", "/stream"] {
            let e = k
                .refresh(&format!("{url}{path}"), JWKS_REFETCH)
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("larger than 1048576 bytes"), "{path}: {e}");
        }
        // Within the limit, the same document is fine.
        let roomy = ExternalKeys::with_limits(JWKS_TIMEOUT, 4 << 20);
        assert!(
            roomy
                .refresh(&format!("{url}/huge"), JWKS_REFETCH)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_fetch_that_takes_too_long_is_given_up() {
        let (url, _, _) = issuer().await;
        let k = ExternalKeys::with_limits(Duration::from_millis(300), JWKS_MAX_BYTES);
        let started = Instant::now();
        let e = k
            .refresh(&format!("{url}/hang"), JWKS_REFETCH)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(e.contains("unavailable"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn lookups_of_other_urls_do_not_wait_and_one_url_is_fetched_once() {
        let (url, _, slow) = issuer().await;
        let k = ExternalKeys::default();
        let slow_url = format!("{url}/slow");
        let (a, b) = (k.clone(), k.clone());
        let (u1, u2) = (slow_url.clone(), slow_url.clone());
        let first = tokio::spawn(async move { a.refresh(&u1, JWKS_REFETCH).await.is_ok() });
        let second = tokio::spawn(async move { b.refresh(&u2, JWKS_REFETCH).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        assert!(
            k.refresh(&format!("{url}/jwks"), JWKS_REFETCH)
                .await
                .is_ok()
        );
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "another URL waited {:?} for the slow one",
            started.elapsed()
        );
        assert!(first.await.unwrap() && second.await.unwrap());
        assert_eq!(
            slow.load(Ordering::SeqCst),
            1,
            "one URL was fetched twice at once"
        );
        assert!(
            k.fetching.lock().is_empty(),
            "single-flight entries are left behind"
        );
    }
}
