//! Who calls a data endpoint ([`Principal`]), and what a store's or
//! collection's client access rule (`none`, `public-read`,
//! `authenticated`, `owner`, `owner-read`) lets them do there
//! ([`authorize`] → [`Grant`]). The control API authenticates the
//! principal; the data capabilities apply the rule.

use crate::{Claims, IdentityError, KeyInfo, Scope};
use nimbus_core::policy::Access;
use std::sync::Arc;

/// The authenticated caller of a control API request: who a client access
/// rule is applied to.
#[derive(Clone)]
pub enum Principal {
    /// An API key.
    Key(Arc<KeyInfo>),
    /// A user of the app in the path, by their access token.
    User(Arc<Claims>),
    /// No credentials.
    Anonymous,
}

/// What a data request may do under its store's access rule.
pub enum Grant {
    /// An API key with the data scope: everything.
    Full,
    /// Reads by anyone.
    PublicRead,
    /// A signed-in user of the app: reads and writes.
    User,
    /// A signed-in user: only what they own.
    Owner(String),
}

impl Grant {
    /// The subject an owner-rule grant is limited to.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Grant::Owner(s) => Some(s),
            _ => None,
        }
    }
}

/// Decides a KV or document request: keys need the data scope on the app;
/// users and anonymous callers get what the store's `access` rule allows.
pub fn authorize(
    principal: &Principal,
    app: &str,
    what: &str,
    access: Access,
    write: bool,
) -> Result<Grant, IdentityError> {
    match principal {
        Principal::Key(k) => {
            if k.allows(Some(app), Scope::Data) {
                Ok(Grant::Full)
            } else {
                Err(IdentityError::Forbidden(format!(
                    "API key {:?} may not use {what} of app {app:?}: it needs the data scope on the app",
                    k.name
                )))
            }
        }
        Principal::Anonymous => match access {
            Access::PublicRead if !write => Ok(Grant::PublicRead),
            Access::PublicRead => Err(IdentityError::Unauthorized(format!(
                "{what} is read-only for clients (access = \"public-read\"): writes need an API key with the data scope, or a function"
            ))),
            Access::None => Err(IdentityError::Unauthorized(format!(
                "{what} is not open to clients (access = \"none\"): use an API key with the data scope, or a function"
            ))),
            Access::OwnerRead if write => Err(IdentityError::Unauthorized(format!(
                "{what} is read-only for clients (access = \"owner-read\"): writes need an API key with the data scope, or a function"
            ))),
            _ => Err(IdentityError::Unauthorized(format!(
                "{what} needs a signed-in user: send `Authorization: Bearer ACCESS_TOKEN` (log in at /v1/apps/{app}/auth/login)"
            ))),
        },
        Principal::User(c) => match access {
            Access::None => Err(IdentityError::Forbidden(format!(
                "{what} is not open to clients (access = \"none\")"
            ))),
            Access::PublicRead if !write => Ok(Grant::PublicRead),
            Access::PublicRead => Err(IdentityError::Forbidden(format!(
                "{what} is read-only for clients (access = \"public-read\")"
            ))),
            Access::Authenticated => Ok(Grant::User),
            Access::Owner => Ok(Grant::Owner(c.subject.clone())),
            Access::OwnerRead if !write => Ok(Grant::Owner(c.subject.clone())),
            Access::OwnerRead => Err(IdentityError::Forbidden(format!(
                "{what} is read-only for clients (access = \"owner-read\"): a user reads only their own, and only functions write"
            ))),
        },
    }
}
