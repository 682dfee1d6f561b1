//! Rows of identity: API keys, users, refresh and reset tokens, signing keys,
//! and token revocations. Hashing, sealing and token formats belong to the
//! `identity` crate; this module stores what it is given (tokens as hashes,
//! private keys sealed). A refresh or reset token is spent by a single
//! statement, so two concurrent uses cannot both succeed. Changes the nodes
//! keep in memory (API keys, signing keys, revocations) bump the cluster
//! generation in their own transaction.

use crate::{Result, Store, now_us};
use serde::Serialize;
use sqlx::Row;

/// An API key as stored (its secret only as a hash).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyRow {
    /// Public id (`key_...`), shown in listings.
    pub id: String,
    /// Name given at creation, unique among active keys.
    pub name: String,
    /// SHA-256 (hex) of the secret.
    #[serde(skip)]
    pub hash: String,
    /// The app it is limited to; `None`: platform-wide.
    pub app: Option<String>,
    /// Scopes, space-separated.
    pub scopes: String,
    /// Creation time (µs).
    pub created_at_us: i64,
    /// Revocation time (µs), if revoked.
    pub revoked_at_us: Option<i64>,
}

/// A user of an app's pool.
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    /// App the pool belongs to.
    pub app: String,
    /// Stable id (the tokens' subject).
    pub id: String,
    /// Email, lowercase.
    pub email: String,
    /// argon2 PHC string.
    #[serde(skip)]
    pub password: String,
    /// Roles, a JSON array.
    pub roles: Vec<String>,
    /// Creation time (µs).
    pub created_at_us: i64,
    /// Last change (µs).
    pub updated_at_us: i64,
}

/// A key that signs an app's access tokens.
#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    /// App.
    pub app: String,
    /// Key id (`kid`).
    pub kid: String,
    /// Sealed private key.
    pub private_key: String,
    /// Public key, as the identity crate encodes it.
    pub public_key: String,
    /// Creation time (µs).
    pub created_at_us: i64,
    /// When it stopped signing (µs); it still verifies until tokens expire.
    pub retired_at_us: Option<i64>,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// It was valid and is now spent; the user it belongs to.
    Rotated(String),
    /// It had been spent by a refresh more than [`REFRESH_GRACE_US`] ago: a
    /// copy was replayed, so every token of its user is now revoked.
    Reused(String),
    /// Spent by a refresh moments ago (two tabs refreshing at once): refused,
    /// nothing else revoked.
    JustUsed,
    /// Unknown, expired, or revoked (logout, password change).
    Invalid,
}

/// How long after a refresh its spent token is refused without being
/// treated as a replay.
pub const REFRESH_GRACE_US: i64 = 10_000_000;

fn user_from(r: &sqlx::any::AnyRow) -> Result<UserRow> {
    let roles: String = r.try_get("roles")?;
    Ok(UserRow {
        app: r.try_get("app")?,
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        password: r.try_get("password")?,
        roles: serde_json::from_str(&roles)
            .map_err(|e| crate::StoreError::Corrupt(format!("user roles: {e}")))?,
        created_at_us: r.try_get("created_at")?,
        updated_at_us: r.try_get("updated_at")?,
    })
}

fn key_from(r: &sqlx::any::AnyRow) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        hash: r.try_get("hash")?,
        app: r.try_get("app")?,
        scopes: r.try_get("scopes")?,
        created_at_us: r.try_get("created_at")?,
        revoked_at_us: r.try_get("revoked_at")?,
    })
}

/// Revokes every live refresh token of a user.
/// Ends every session of a user: their refresh and reset tokens are
/// revoked, and their access tokens issued until `now` are refused.
async fn revoke_user_tokens(
    store: &Store,
    conn: &mut sqlx::AnyConnection,
    app: &str,
    user: &str,
    now: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE app = $2 AND user_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(app)
    .bind(user)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM reset_tokens WHERE app = $1 AND user_id = $2")
        .bind(app)
        .bind(user)
        .execute(&mut *conn)
        .await?;
    revoke_access(store, conn, app, user, now).await?;
    Ok(done.rows_affected())
}

/// Refuses the user's access tokens issued before `now`, on every node.
async fn revoke_access(
    store: &Store,
    conn: &mut sqlx::AnyConnection,
    app: &str,
    user: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO token_revocations (app, subject, before_us, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app, subject) DO UPDATE SET before_us = excluded.before_us, expires_at = excluded.expires_at",
    )
    .bind(app)
    .bind(user)
    .bind(now)
    .bind(now + REVOCATION_KEEP_US)
    .execute(&mut *conn)
    .await?;
    store.cluster_changed(conn).await
}

/// How long a revocation is kept: past the longest access token lifetime
/// (24 h) and a margin.
const REVOCATION_KEEP_US: i64 = (86_400 + 3_600) * 1_000_000;

/// A user whose access tokens issued before `before_us` are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRevocation {
    /// App.
    pub app: String,
    /// User id (the tokens' `sub`).
    pub subject: String,
    /// Tokens issued before this time (µs since the epoch) are refused.
    pub before_us: i64,
}

const USER_COLUMNS: &str = "app, id, email, password, roles, created_at, updated_at";

impl Store {
    /// Stores a new API key. `false` if an active key has that name.
    pub async fn insert_api_key(&self, k: &ApiKeyRow) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO api_keys (id, name, hash, app, scopes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.hash)
        .bind(&k.app)
        .bind(&k.scopes)
        .bind(k.created_at_us)
        .execute(&mut *tx)
        .await?;
        self.cluster_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every API key, revoked ones included, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        let rows = sqlx::query(
            "SELECT id, name, hash, app, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from).collect()
    }

    /// Revokes the active key with this name or id. `false` if none.
    pub async fn revoke_api_key(&self, name_or_id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE (name = $2 OR id = $2) AND revoked_at IS NULL",
        )
        .bind(now_us())
        .bind(name_or_id)
        .execute(&mut *tx)
        .await?;
        self.cluster_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Creates a user. `false` if the email is taken in that app.
    pub async fn insert_user(&self, u: &UserRow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO users (app, id, email, password, roles, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&u.app)
        .bind(&u.id)
        .bind(&u.email)
        .bind(&u.password)
        .bind(serde_json::to_string(&u.roles).expect("strings serialize"))
        .bind(u.created_at_us)
        .bind(u.updated_at_us)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The user with this email in an app.
    pub async fn user_by_email(&self, app: &str, email: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE app = $1 AND email = $2"
        ))
        .bind(app)
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from).transpose()
    }

    /// The user with this id in an app.
    pub async fn user(&self, app: &str, id: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE app = $1 AND id = $2"
        ))
        .bind(app)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from).transpose()
    }

    /// A page of an app's users by email, after `after`.
    pub async fn users(&self, app: &str, after: &str, limit: i64) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE app = $1 AND email > $2 ORDER BY email LIMIT $3"
        ))
        .bind(app)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from).collect()
    }

    /// Replaces a user's password hash and revokes all their refresh tokens.
    pub async fn set_password(&self, app: &str, id: &str, hash: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let now = now_us();
        let done = sqlx::query(
            "UPDATE users SET password = $1, updated_at = $2 WHERE app = $3 AND id = $4",
        )
        .bind(hash)
        .bind(now)
        .bind(app)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        revoke_user_tokens(self, &mut tx, app, id, now).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a user's roles; their access tokens issued before (which
    /// carry the old roles) are refused, so the client refreshes.
    pub async fn set_roles(&self, app: &str, id: &str, roles: &[String]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let now = now_us();
        let done =
            sqlx::query("UPDATE users SET roles = $1, updated_at = $2 WHERE app = $3 AND id = $4")
                .bind(serde_json::to_string(roles).expect("strings serialize"))
                .bind(now)
                .bind(app)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 1 {
            revoke_access(self, &mut tx, app, id, now).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends every session of the user holding this active refresh token
    /// (logout everywhere): the user, or `None` if the token is not active.
    pub async fn end_sessions_of(&self, app: &str, hash: &str) -> Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let now = now_us();
        let user: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM refresh_tokens
             WHERE hash = $1 AND app = $2 AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(hash)
        .bind(app)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(u) = &user {
            revoke_user_tokens(self, &mut tx, app, u, now).await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    /// Users whose access tokens issued before a time are refused, as long
    /// as such tokens may live; older revocations are pruned.
    pub async fn token_revocations(&self) -> Result<Vec<TokenRevocation>> {
        let now = now_us();
        sqlx::query("DELETE FROM token_revocations WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT app, subject, before_us FROM token_revocations")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRevocation {
                    app: r.try_get("app")?,
                    subject: r.try_get("subject")?,
                    before_us: r.try_get("before_us")?,
                })
            })
            .collect()
    }

    /// Deletes a user and every token of theirs; their access tokens are
    /// refused from now on.
    pub async fn delete_user(&self, app: &str, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        revoke_access(self, &mut tx, app, id, now_us()).await?;
        for table in ["refresh_tokens", "reset_tokens"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE app = $1 AND user_id = $2"
            ))
            .bind(app)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE app = $1 AND id = $2")
            .bind(app)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a refresh token's hash.
    pub async fn insert_refresh_token(
        &self,
        hash: &str,
        app: &str,
        user: &str,
        expires_at_us: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (hash, app, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(app)
        .bind(user)
        .bind(now_us())
        .bind(expires_at_us)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends a refresh token of `app` (see [`RefreshUse`]).
    pub async fn use_refresh_token(&self, app: &str, hash: &str) -> Result<RefreshUse> {
        let now = now_us();
        let spent: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET rotated_at = $1
             WHERE hash = $2 AND app = $3 AND rotated_at IS NULL AND revoked_at IS NULL
               AND expires_at > $1
             RETURNING user_id",
        )
        .bind(now)
        .bind(hash)
        .bind(app)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(user) = spent {
            return Ok(RefreshUse::Rotated(user));
        }
        let spent = sqlx::query(
            "SELECT user_id, rotated_at FROM refresh_tokens
             WHERE hash = $1 AND app = $2 AND rotated_at IS NOT NULL AND revoked_at IS NULL
               AND expires_at > $3",
        )
        .bind(hash)
        .bind(app)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = spent else {
            return Ok(RefreshUse::Invalid);
        };
        let user: String = row.try_get("user_id")?;
        let rotated_at: i64 = row.try_get("rotated_at")?;
        if now - rotated_at <= REFRESH_GRACE_US {
            return Ok(RefreshUse::JustUsed);
        }
        self.revoke_refresh_tokens(app, &user).await?;
        Ok(RefreshUse::Reused(user))
    }

    /// Revokes one refresh token of `app`. `false` if it was not active.
    pub async fn revoke_refresh_token(&self, app: &str, hash: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE hash = $2 AND app = $3 AND revoked_at IS NULL",
        )
        .bind(now_us())
        .bind(hash)
        .bind(app)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes every refresh token of a user.
    pub async fn revoke_refresh_tokens(&self, app: &str, user: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = revoke_user_tokens(self, &mut tx, app, user, now_us()).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Stores a password-reset token's hash.
    pub async fn insert_reset_token(
        &self,
        hash: &str,
        app: &str,
        user: &str,
        expires_at_us: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO reset_tokens (hash, app, user_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(app)
        .bind(user)
        .bind(expires_at_us)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends a password-reset token: the user it was for, if it was valid.
    pub async fn use_reset_token(&self, app: &str, hash: &str) -> Result<Option<String>> {
        let now = now_us();
        Ok(sqlx::query_scalar(
            "UPDATE reset_tokens SET used_at = $1
             WHERE hash = $2 AND app = $3 AND used_at IS NULL AND expires_at > $1
             RETURNING user_id",
        )
        .bind(now)
        .bind(hash)
        .bind(app)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores a signing key and retires the app's previous ones.
    pub async fn insert_signing_key(&self, k: &SigningKeyRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE app = $2 AND retired_at IS NULL",
        )
        .bind(k.created_at_us)
        .bind(&k.app)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (app, kid, private_key, public_key, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&k.app)
        .bind(&k.kid)
        .bind(&k.private_key)
        .bind(&k.public_key)
        .bind(k.created_at_us)
        .execute(&mut *tx)
        .await?;
        self.cluster_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every signing key still worth keeping: active ones, and retired ones
    /// retired after `retired_after_us` (tokens they signed may be alive).
    pub async fn signing_keys(&self, retired_after_us: i64) -> Result<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT app, kid, private_key, public_key, created_at, retired_at FROM signing_keys
             WHERE retired_at IS NULL OR retired_at > $1 ORDER BY app, created_at",
        )
        .bind(retired_after_us)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRow {
                    app: r.try_get("app")?,
                    kid: r.try_get("kid")?,
                    private_key: r.try_get("private_key")?,
                    public_key: r.try_get("public_key")?,
                    created_at_us: r.try_get("created_at")?,
                    retired_at_us: r.try_get("retired_at")?,
                })
            })
            .collect()
    }
}

impl From<UserRow> for nimbus_api::User {
    fn from(u: UserRow) -> Self {
        nimbus_api::User {
            app: u.app,
            id: u.id,
            email: u.email,
            roles: u.roles,
            created_at_us: u.created_at_us,
            updated_at_us: u.updated_at_us,
        }
    }
}

impl From<ApiKeyRow> for nimbus_api::ApiKey {
    fn from(k: ApiKeyRow) -> Self {
        nimbus_api::ApiKey {
            id: k.id,
            name: k.name,
            app: k.app,
            scopes: k.scopes,
            created_at_us: k.created_at_us,
            revoked_at_us: k.revoked_at_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_users_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        let key = ApiKeyRow {
            id: "key_1".into(),
            name: "ci".into(),
            hash: "h1".into(),
            app: Some("a".into()),
            scopes: "deploy".into(),
            created_at_us: 1,
            revoked_at_us: None,
        };
        assert!(s.insert_api_key(&key).await.unwrap());
        let dup = ApiKeyRow {
            id: "key_2".into(),
            hash: "h2".into(),
            ..key.clone()
        };
        assert!(!s.insert_api_key(&dup).await.unwrap(), "names are unique");
        assert!(s.revoke_api_key("ci").await.unwrap());
        assert!(
            s.insert_api_key(&dup).await.unwrap(),
            "a revoked name is free"
        );
        assert_eq!(s.api_keys().await.unwrap().len(), 2);

        let u = UserRow {
            app: "a".into(),
            id: "u1".into(),
            email: "x@y".into(),
            password: "p".into(),
            roles: vec!["player".into()],
            created_at_us: 1,
            updated_at_us: 1,
        };
        assert!(s.insert_user(&u).await.unwrap());
        assert!(
            !s.insert_user(&UserRow {
                id: "u2".into(),
                ..u.clone()
            })
            .await
            .unwrap()
        );
        assert!(
            s.insert_user(&UserRow {
                app: "b".into(),
                ..u.clone()
            })
            .await
            .unwrap()
        );
        assert_eq!(
            s.user_by_email("a", "x@y").await.unwrap().unwrap().roles,
            ["player"]
        );

        let far = now_us() + 100_000_000;
        s.insert_refresh_token("r1", "a", "u1", far).await.unwrap();
        s.insert_refresh_token("r2", "a", "u1", far).await.unwrap();
        s.insert_refresh_token("r3", "a", "u1", far).await.unwrap();
        assert_eq!(
            s.use_refresh_token("b", "r1").await.unwrap(),
            RefreshUse::Invalid
        );
        assert_eq!(
            s.use_refresh_token("a", "r1").await.unwrap(),
            RefreshUse::Rotated("u1".into())
        );
        assert_eq!(
            s.use_refresh_token("a", "r1").await.unwrap(),
            RefreshUse::JustUsed,
            "a second use moments later is refused, nothing more"
        );
        // A logout revokes one token; using it later is no replay.
        assert!(s.revoke_refresh_token("a", "r3").await.unwrap());
        assert_eq!(
            s.use_refresh_token("a", "r3").await.unwrap(),
            RefreshUse::Invalid
        );
        // A use long after the refresh is a replay: the family goes.
        sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = rotated_at - 60000000 WHERE hash = 'r1'",
        )
        .execute(&s.pool)
        .await
        .unwrap();
        assert_eq!(
            s.use_refresh_token("a", "r1").await.unwrap(),
            RefreshUse::Reused("u1".into())
        );
        assert_eq!(
            s.use_refresh_token("a", "r2").await.unwrap(),
            RefreshUse::Invalid,
            "the replay revoked every token of the user"
        );
        s.insert_reset_token("t", "a", "u1", far).await.unwrap();
        assert_eq!(
            s.use_reset_token("a", "t").await.unwrap().as_deref(),
            Some("u1")
        );
        assert_eq!(s.use_reset_token("a", "t").await.unwrap(), None);
        assert!(s.delete_user("a", "u1").await.unwrap());
        assert!(s.user("a", "u1").await.unwrap().is_none());
        assert!(s.user("b", "u1").await.unwrap().is_some());

        for (kid, at) in [("k1", 10), ("k2", 20)] {
            s.insert_signing_key(&SigningKeyRow {
                app: "a".into(),
                kid: kid.into(),
                private_key: "sealed".into(),
                public_key: "pub".into(),
                created_at_us: at,
                retired_at_us: None,
            })
            .await
            .unwrap();
        }
        let keys = s.signing_keys(0).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].retired_at_us, Some(20));
        assert_eq!(keys[1].retired_at_us, None);
        assert_eq!(s.signing_keys(25).await.unwrap().len(), 1);
        // Deleting the app takes its signing keys with it.
        let spec = nimbus_core::AppSpec {
            name: "a".into(),
            ..Default::default()
        };
        s.create_and_activate_revision(&spec, "").await.unwrap();
        s.delete_app("a").await.unwrap();
        assert!(s.signing_keys(0).await.unwrap().is_empty());
    }
}
