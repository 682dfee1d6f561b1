//! Who is calling, and what they may do.
//!
//! * [`ApiKeys`] (`keys.rs`): named API keys with [`Scope`]s, per app or
//!   platform-wide, stored as SHA-256 hashes and held in memory for the
//!   request path. The bootstrap admin token is the first such key.
//! * [`Tokens`] (`tokens.rs`): each app's Ed25519 signing keys (sealed at
//!   rest, rotated on demand), access tokens (JWT) issued and verified with
//!   them, the JWKS document publishing their public halves, and tokens of
//!   external issuers verified through their JWKS URL.
//! * [`Users`] (`users.rs`): per-app user pools — sign-up, login (argon2,
//!   rate-limited per account and per IP), refresh-token rotation with reuse
//!   detection, logout, password change and reset, account deletion.
//! * [`Limiter`] (`limit.rs`): keyed token buckets (`governor`), used for
//!   logins here and for gateway rate limits.
//! * [`Sealer`] (`seal.rs`): encryption of secrets at rest.
//! * [`Principal`], [`authorize`] (`access.rs`): a data request's caller
//!   and what a store's client access rule grants them.
//!
//! Invariant: secrets are never stored in clear — API keys, refresh and reset
//! tokens as SHA-256 hashes (they are 256-bit random), passwords as argon2
//! hashes, private keys sealed.

mod access;
mod keys;
mod limit;
pub mod seal;
mod tokens;
mod users;

pub use access::{Grant, Principal, authorize};
pub use keys::{ApiKeys, CreatedKey, KeyInfo, Scope};
pub use limit::Limiter;
pub use seal::Sealer;
pub use tokens::{Claims, ExternalKeys, Tokens};
pub use users::{Session, Users};

use std::time::Duration;

/// Errors of identity operations; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The request is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// No valid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Not found (404).
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with existing state (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts (429).
    #[error("{message}")]
    TooMany {
        /// What was limited.
        message: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] nimbus_store::StoreError),
    /// Something that should not fail did.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of this crate.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// SHA-256 of a secret, hex: how high-entropy tokens are stored and found.
pub fn hash_secret(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A new random secret: `prefix` and 256 random bits, hex.
pub fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
