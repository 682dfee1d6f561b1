//! Per-app user pools: accounts with argon2 passwords, sessions made of a
//! short-lived access token (JWT) and a rotating refresh token.
//!
//! Passwords are hashed with argon2id on blocking threads, at most one per
//! core at once; a login for a missing account checks a decoy hash, so
//! timing does not tell. Password checks are limited per account and
//! requests per client address (IPv6 by /64). A refresh token spent again
//! within 10 s is only refused (another tab, a retry); later, it revokes
//! every session of the user. Ending a user's sessions (logout everywhere,
//! password change or reset, deletion, a replayed refresh token) revokes
//! their refresh tokens, deletes their reset tokens and records a
//! revocation in the same transaction, so every node refuses the user's
//! older access tokens; a role change records the revocation alone (the
//! client refreshes to get the new roles). A reset token reaches the app's `reset_hook`
//! function by a direct call from the control plane (retried a few times),
//! never through the event store, whose bodies the API shows.

use crate::{IdentityError, Limiter, Result, Tokens, hash_secret, random_secret};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use nimbus_core::policy::AuthSpec;
use nimbus_store::{RefreshUse, Store, UserRow};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a successful sign-up, login or refresh returns.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// The JWT to send as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    /// Trade it for a new session at `/auth/refresh`; usable once.
    pub refresh_token: String,
    /// The user.
    pub user: UserRow,
}

/// Longest password accepted, in bytes (argon2 cost stays bounded).
const MAX_PASSWORD_BYTES: usize = 1024;

struct LoginLimits {
    spec: (u32, u32),
    account: Limiter<(String, String)>,
    ip: Limiter<(String, IpAddr)>,
}

/// The user pools of every app.
#[derive(Clone)]
pub struct Users {
    store: Store,
    tokens: Tokens,
    limits: Arc<Mutex<HashMap<String, Arc<LoginLimits>>>>,
    /// Bounds the argon2 computations running at once (each uses ~19 MiB
    /// and a core for tens of ms); others wait their turn.
    hashing: Arc<tokio::sync::Semaphore>,
}

fn argon2() -> argon2::Argon2<'static> {
    argon2::Argon2::default()
}

/// A valid hash to verify against when the account does not exist, so a
/// missing account takes as long as a wrong password. Its cost parameters
/// are [`argon2()`]'s (a test holds them equal); verifying costs the same
/// whatever the salt, so it is a constant instead of a hash made at every
/// start (which cost a node's cold start ~45 ms of CPU). No account has
/// it: a login checks it only to fail.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$9jk7SCzfRjWfCgrnsejo/A$MavsQr1jNePAlgihlyNjIEBNQpMv3i5Svv4kaDJqs9s";

fn hash_password_blocking(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| IdentityError::Internal(format!("salt: {e}")))?;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| IdentityError::Internal(format!("hashing a password: {e}")))?
        .to_string())
}

fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(IdentityError::Invalid(format!(
            "{email:?} is not an email address"
        )))
    }
}

fn check_password(spec: &AuthSpec, password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < spec.min_password_length as usize {
        return Err(IdentityError::Invalid(format!(
            "the password is too short: use at least {} characters",
            spec.min_password_length
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(IdentityError::Invalid(format!(
            "the password is too long: use at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn too_many(what: &str, wait: Duration) -> IdentityError {
    IdentityError::TooMany {
        message: format!(
            "too many {what}: try again in {} s",
            wait.as_secs_f64().ceil() as u64
        ),
        retry_after: wait,
    }
}

impl Users {
    /// The pools, over the store and the app signing keys.
    pub fn new(store: Store, tokens: Tokens) -> Users {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Users {
            store,
            tokens,
            limits: Arc::default(),
            hashing: Arc::new(tokio::sync::Semaphore::new(cores)),
        }
    }

    /// The signing keys.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    async fn hash_password(&self, password: String) -> Result<String> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| IdentityError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_password_blocking(&password))
            .await
            .map_err(|e| IdentityError::Internal(e.to_string()))?
    }

    async fn verify_password(&self, password: String, hash: String) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    /// Takes a password check from the account's bucket.
    fn check_account(&self, app: &str, spec: &AuthSpec, email: &str) -> Result<()> {
        self.limits(app, spec)
            .account
            .check(&(app.to_string(), email.to_string()))
            .map_err(|w| too_many("password attempts for this account", w))
    }

    fn limits(&self, app: &str, spec: &AuthSpec) -> Arc<LoginLimits> {
        let want = (spec.login_attempts_per_account, spec.login_attempts_per_ip);
        let mut map = self.limits.lock();
        if let Some(l) = map.get(app)
            && l.spec == want
        {
            return l.clone();
        }
        let minute = Duration::from_secs(60);
        let l = Arc::new(LoginLimits {
            spec: want,
            account: Limiter::new(want.0, minute, want.0),
            ip: Limiter::new(want.1, minute, want.1),
        });
        map.insert(app.to_string(), l.clone());
        l
    }

    /// Forgets full buckets (call periodically).
    pub fn shrink(&self) {
        for l in self.limits.lock().values() {
            l.account.shrink();
            l.ip.shrink();
        }
    }

    fn check_ip(&self, app: &str, spec: &AuthSpec, ip: Option<IpAddr>) -> Result<()> {
        if let Some(ip) = ip {
            let ip = nimbus_core::policy::rate_limit_ip(ip);
            self.limits(app, spec)
                .ip
                .check(&(app.to_string(), ip))
                .map_err(|w| too_many("sign-in attempts from this address", w))?;
        }
        Ok(())
    }

    async fn session(&self, app: &str, spec: &AuthSpec, user: UserRow) -> Result<Session> {
        let mut extra = Map::new();
        extra.insert("email".into(), Value::String(user.email.clone()));
        extra.insert(
            "roles".into(),
            Value::Array(user.roles.iter().cloned().map(Value::String).collect()),
        );
        let access_token = self
            .tokens
            .issue(app, &user.id, spec.access_ttl_secs, extra)
            .await?;
        let refresh_token = random_secret("nimbus_rt_");
        let expires = nimbus_store::now_us() + (spec.refresh_ttl_secs as i64) * 1_000_000;
        self.store
            .insert_refresh_token(&hash_secret(&refresh_token), app, &user.id, expires)
            .await?;
        Ok(Session {
            access_token,
            token_type: "Bearer",
            expires_in: spec.access_ttl_secs,
            refresh_token,
            user,
        })
    }

    /// Creates a user (admins: any time; clients: if the pool allows
    /// sign-up) and, for clients, signs them in.
    pub async fn create(
        &self,
        app: &str,
        spec: &AuthSpec,
        email: &str,
        password: &str,
        roles: Vec<String>,
    ) -> Result<UserRow> {
        let email = normalize_email(email)?;
        check_password(spec, password)?;
        let now = nimbus_store::now_us();
        let user = UserRow {
            app: app.to_string(),
            id: uuid::Uuid::now_v7().to_string(),
            email: email.clone(),
            password: self.hash_password(password.to_string()).await?,
            roles,
            created_at_us: now,
            updated_at_us: now,
        };
        if !self.store.insert_user(&user).await? {
            return Err(IdentityError::Conflict(format!(
                "{email} is already registered: log in, or reset the password"
            )));
        }
        Ok(user)
    }

    /// Client sign-up: creates the account and a session.
    pub async fn signup(
        &self,
        app: &str,
        spec: &AuthSpec,
        email: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<Session> {
        if !spec.signup {
            return Err(IdentityError::Forbidden(format!(
                "app {app:?} does not allow sign-up: an admin creates users (`nimbus users create`)"
            )));
        }
        self.check_ip(app, spec, ip)?;
        let user = self.create(app, spec, email, password, Vec::new()).await?;
        self.session(app, spec, user).await
    }

    /// Checks an email and password and starts a session.
    pub async fn login(
        &self,
        app: &str,
        spec: &AuthSpec,
        email: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<Session> {
        let email = normalize_email(email)?;
        self.check_ip(app, spec, ip)?;
        self.check_account(app, spec, &email)?;
        let user = self.store.user_by_email(app, &email).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| DECOY.to_string(), |u| u.password.clone());
        let ok = self.verify_password(password.to_string(), hash).await;
        match user {
            Some(u) if ok => self.session(app, spec, u).await,
            _ => Err(IdentityError::Unauthorized(
                "wrong email or password".into(),
            )),
        }
    }

    /// Trades a refresh token for a new session (the old token is spent).
    pub async fn refresh(
        &self,
        app: &str,
        spec: &AuthSpec,
        refresh_token: &str,
    ) -> Result<Session> {
        match self
            .store
            .use_refresh_token(app, &hash_secret(refresh_token))
            .await?
        {
            RefreshUse::Rotated(user) => {
                let u = self.store.user(app, &user).await?.ok_or_else(|| {
                    IdentityError::Unauthorized("the account no longer exists".into())
                })?;
                self.session(app, spec, u).await
            }
            RefreshUse::Reused(_) => Err({
                self.tokens.reload_revocations().await?;
                IdentityError::Unauthorized(
                "this refresh token had already been used, so a copy of it is in other hands: every session of the account was signed out; log in again".into(),
                )
            }),
            RefreshUse::JustUsed => Err(IdentityError::Unauthorized(
                "this refresh token was just used (by another tab, or a retry): use the session that refresh returned, or log in again".into(),
            )),
            RefreshUse::Invalid => Err(IdentityError::Unauthorized(
                "the refresh token is unknown or expired: log in again".into(),
            )),
        }
    }

    /// Revokes a refresh token (idempotent).
    pub async fn logout(&self, app: &str, refresh_token: &str) -> Result<()> {
        self.store
            .revoke_refresh_token(app, &hash_secret(refresh_token))
            .await?;
        Ok(())
    }

    /// Ends every session of the user holding this refresh token: their
    /// refresh tokens are revoked and their access tokens refused at once,
    /// on every node.
    pub async fn logout_everywhere(&self, app: &str, refresh_token: &str) -> Result<()> {
        let ended = self
            .store
            .end_sessions_of(app, &hash_secret(refresh_token))
            .await?;
        if ended.is_none() {
            return Err(IdentityError::Unauthorized(
                "the refresh token is unknown, revoked or expired: log in again to end the other sessions".into(),
            ));
        }
        self.tokens.reload_revocations().await
    }

    /// The user `id` of `app`.
    pub async fn get(&self, app: &str, id: &str) -> Result<UserRow> {
        self.store
            .user(app, id)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("no user {id:?} in app {app:?}")))
    }

    /// Changes a password after checking the current one; every other
    /// session ends, and a new one is returned.
    pub async fn change_password(
        &self,
        app: &str,
        spec: &AuthSpec,
        id: &str,
        current: &str,
        new: &str,
    ) -> Result<Session> {
        let user = self.get(app, id).await?;
        check_password(spec, new)?;
        self.check_account(app, spec, &user.email)?;
        if !self
            .verify_password(current.to_string(), user.password.clone())
            .await
        {
            return Err(IdentityError::Unauthorized(
                "the current password is wrong".into(),
            ));
        }
        self.store
            .set_password(app, id, &self.hash_password(new.to_string()).await?)
            .await?;
        self.tokens.reload_revocations().await?;
        self.session(app, spec, user).await
    }

    /// Starts a password reset: the user and a one-time token to deliver,
    /// or `None` if no account has this email.
    pub async fn request_reset(
        &self,
        app: &str,
        spec: &AuthSpec,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<(UserRow, String, u64)>> {
        let email = normalize_email(email)?;
        self.check_ip(app, spec, ip)?;
        let Some(user) = self.store.user_by_email(app, &email).await? else {
            return Ok(None);
        };
        let token = random_secret("nimbus_reset_");
        let expires_secs = crate::now_secs() + spec.reset_ttl_secs;
        self.store
            .insert_reset_token(
                &hash_secret(&token),
                app,
                &user.id,
                (expires_secs as i64) * 1_000_000,
            )
            .await?;
        Ok(Some((user, token, expires_secs)))
    }

    /// Sets a new password with a reset token; every session ends.
    pub async fn confirm_reset(
        &self,
        app: &str,
        spec: &AuthSpec,
        token: &str,
        new: &str,
    ) -> Result<()> {
        check_password(spec, new)?;
        let user = self
            .store
            .use_reset_token(app, &hash_secret(token))
            .await?
            .ok_or_else(|| {
                IdentityError::Unauthorized(
                    "the reset token is unknown, used or expired: request a new one".into(),
                )
            })?;
        self.store
            .set_password(app, &user, &self.hash_password(new.to_string()).await?)
            .await?;
        self.tokens.reload_revocations().await
    }

    /// Deletes one's own account after checking the password.
    pub async fn delete_account(
        &self,
        app: &str,
        spec: &AuthSpec,
        id: &str,
        password: &str,
    ) -> Result<()> {
        let user = self.get(app, id).await?;
        self.check_account(app, spec, &user.email)?;
        if !self
            .verify_password(password.to_string(), user.password)
            .await
        {
            return Err(IdentityError::Unauthorized("the password is wrong".into()));
        }
        self.store.delete_user(app, id).await?;
        self.tokens.reload_revocations().await
    }

    /// Deletes a user (admins).
    pub async fn delete(&self, app: &str, id: &str) -> Result<()> {
        if !self.store.delete_user(app, id).await? {
            return Err(IdentityError::NotFound(format!(
                "no user {id:?} in app {app:?}"
            )));
        }
        self.tokens.reload_revocations().await
    }

    /// Replaces a user's roles (admins); they appear in the next access token.
    pub async fn set_roles(&self, app: &str, id: &str, roles: &[String]) -> Result<()> {
        if roles.iter().any(|r| r.is_empty() || r.len() > 64) {
            return Err(IdentityError::Invalid(
                "a role name has 1 to 64 characters".into(),
            ));
        }
        if !self.store.set_roles(app, id, roles).await? {
            return Err(IdentityError::NotFound(format!(
                "no user {id:?} in app {app:?}"
            )));
        }
        self.tokens.reload_revocations().await
    }

    /// A page of users, by email after `after`.
    pub async fn list(&self, app: &str, after: &str, limit: i64) -> Result<Vec<UserRow>> {
        Ok(self.store.users(app, after, limit.clamp(1, 1000)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoy_costs_what_a_real_password_hash_costs() {
        let real = hash_password_blocking("correct horse").unwrap();
        let (real, decoy) = (
            PasswordHash::new(&real).unwrap(),
            PasswordHash::new(DECOY).unwrap(),
        );
        assert_eq!(decoy.algorithm, real.algorithm);
        assert_eq!(decoy.version, real.version);
        assert_eq!(decoy.params, real.params, "the decoy's argon2 cost");
        assert_eq!(
            decoy.hash.map(|h| h.len()),
            real.hash.map(|h| h.len()),
            "the decoy's output length"
        );
        // A well-formed hash: verifying runs argon2 in full.
        assert!(
            argon2()
                .verify_password(b"not a real password", &decoy)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn pool_flow() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let tokens = Tokens::load(store.clone(), crate::Sealer::new([1; 32]))
            .await
            .unwrap();
        let users = Users::new(store, tokens.clone());
        let spec = AuthSpec {
            login_attempts_per_account: 3,
            ..Default::default()
        };
        let ip = Some("127.0.0.1".parse().unwrap());
        let s = users
            .signup("a", &spec, "Ann@Example.com", "correct horse", ip)
            .await
            .unwrap();
        assert_eq!(s.user.email, "ann@example.com");
        assert_eq!(
            tokens.verify("a", &s.access_token).unwrap().subject,
            s.user.id
        );
        assert!(matches!(
            users
                .signup("a", &spec, "ann@example.com", "another one", ip)
                .await,
            Err(IdentityError::Conflict(_))
        ));
        assert!(matches!(
            users
                .signup("a", &spec, "bob@example.com", "short", ip)
                .await,
            Err(IdentityError::Invalid(_))
        ));
        assert!(matches!(
            users
                .login("a", &spec, "ann@example.com", "wrong", ip)
                .await,
            Err(IdentityError::Unauthorized(_))
        ));
        let s2 = users
            .login("a", &spec, "ann@example.com", "correct horse", ip)
            .await
            .unwrap();
        let s3 = users.refresh("a", &spec, &s2.refresh_token).await.unwrap();
        let again = users.refresh("a", &spec, &s2.refresh_token).await;
        assert!(again.unwrap_err().to_string().contains("just used"));
        // Within the grace period that signs nobody out.
        users.refresh("a", &spec, &s3.refresh_token).await.unwrap();
        // The per-account limit (3 a minute) is spent by the third attempt.
        users
            .login("a", &spec, "ann@example.com", "correct horse", ip)
            .await
            .unwrap();
        assert!(matches!(
            users
                .login("a", &spec, "ann@example.com", "correct horse", ip)
                .await,
            Err(IdentityError::TooMany { .. })
        ));
        let (u, token, _) = users
            .request_reset("a", &spec, "ann@example.com", ip)
            .await
            .unwrap()
            .unwrap();
        users
            .confirm_reset("a", &spec, &token, "battery staple")
            .await
            .unwrap();
        assert!(
            users
                .confirm_reset("a", &spec, &token, "again again")
                .await
                .is_err()
        );
        assert!(
            users
                .request_reset("a", &spec, "nobody@example.com", ip)
                .await
                .unwrap()
                .is_none()
        );
        users
            .delete_account("a", &AuthSpec::default(), &u.id, "battery staple")
            .await
            .unwrap();
        assert!(matches!(
            users.get("a", &u.id).await,
            Err(IdentityError::NotFound(_))
        ));
    }
}
