//! The identity API's bodies: API keys and S3 keys (`/v1/keys`), an app's
//! users (`/v1/apps/{app}/users`) and its signing-key rotation. Secrets
//! appear in one body only, [`CreatedKey`]; password hashes in none.

use serde::{Deserialize, Serialize};

/// `GET /v1/keys`: one API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id.
    pub id: String,
    pub name: String,
    /// The app it is limited to; `None`: every app.
    pub app: Option<String>,
    /// Its scopes, comma-separated (`deploy,read-logs`).
    pub scopes: String,
    pub created_at_us: i64,
    pub revoked_at_us: Option<i64>,
}

/// `GET /v1/keys`: one S3 access key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Key {
    pub access_key: String,
    /// The app whose buckets it reaches.
    pub app: String,
    pub created_at_us: i64,
}

/// `GET /v1/keys`: the keys the caller may manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<ApiKey>,
    pub s3_keys: Vec<S3Key>,
}

/// `POST /v1/keys`: the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    pub name: String,
    /// Limit it to one app (`None`: every app).
    #[serde(default)]
    pub app: Option<String>,
    /// Scope names (`admin`, `deploy`, `read-logs`, `invoke`, `data`,
    /// `users`).
    pub scopes: Vec<String>,
}

/// `POST /v1/keys` (201): the key, and its secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub app: Option<String>,
    pub scopes: Vec<String>,
    /// Send as `Authorization: Bearer SECRET`.
    pub secret: String,
}

/// A user of an app's pool (never their password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub app: String,
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// `GET /v1/apps/{app}/users`: a page of users, by email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    pub app: String,
    pub users: Vec<User>,
}

/// `POST /v1/apps/{app}/users`: the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `POST /v1/apps/{app}/auth/rotate-keys`: the new signing key's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotated {
    pub app: String,
    pub kid: String,
}

/// What an app's `reset_hook` function receives (`POST
/// /auth/password-reset`, JSON) when a user asks to reset their password:
/// the one-time token to send them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordResetHook {
    /// Always `password_reset`.
    #[serde(rename = "type")]
    pub kind: String,
    pub app: String,
    pub user_id: String,
    pub email: String,
    /// The token to confirm the reset with.
    pub token: String,
    /// When it expires, in seconds since the epoch.
    pub expires_at: u64,
}
