//! The data capabilities of an app, each in one module tree with the same
//! shape:
//!
//! * `kv/`: key-value stores (`[kv.NAME]`);
//! * `docs/`: document collections (`[collections.NAME]`);
//! * `config.rs`: configuration and secrets as guests read them
//!   (`wasi:config/store`).
//!
//! A capability's `mod.rs` holds its **one policy**: which store or
//! collection a caller reaches and what a write may hold, decided for a
//! function by its manifest grants and for a client by the store's access
//! rule ([`Caller`]); a refusal is a [`Refusal`], which each face turns
//! into its own error. `guest.rs` is its binding for guests (host
//! functions, no network hop, linked through
//! [`nimbus_runtime::GuestCapability`]) and `rest.rs` its `/v1` endpoints
//! (their entries in the control API's route table: [`routes`]). Both faces
//! call the policy and then the store (`nimbus_store`, which holds the SQL
//! for both database backends); neither checks anything the policy does.
//!
//! The manifest sections and their validation are in
//! `nimbus_core::manifest::data`, because the CLI checks a manifest before
//! it uploads it and must not link a runtime for that.
//!
//! Invariants:
//! * A rule exists once: the guest and REST faces of a capability refuse
//!   the same things for the same reasons.
//! * Everything is scoped to the caller's app: a store, collection or key
//!   of another app cannot be named.
//! * Host calls bound what they make the host hold: [`MAX_BATCH_KEYS`]
//!   keys per batch call, [`MAX_CALL_BYTES`] returned per call.

pub mod config;
pub mod docs;
mod face;
pub mod kv;

pub use face::{ApiError, ApiResult, DataFace, DataRoute, routes};

use nimbus_core::FunctionSpec;
use nimbus_identity::{IdentityError, Principal};
use nimbus_runtime::GuestCapability;
use nimbus_store::Store;
use std::sync::Arc;

/// Most bytes one host call returns to a guest (a batch read, a query
/// page): the host never holds more for one call, whatever the guest asks.
pub const MAX_CALL_BYTES: usize = 16 << 20;
/// Most keys one batch call names.
pub const MAX_BATCH_KEYS: usize = 1000;

/// Who asks a capability for a store or collection.
#[derive(Clone, Copy)]
pub enum Caller<'a> {
    /// A function of the app: what its manifest grants it.
    Function(&'a FunctionSpec),
    /// A client over the API: what the store's access rule grants them.
    Client {
        principal: &'a Principal,
        /// A write is asked for.
        write: bool,
    },
}

/// Why a capability's policy refused a request.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The app declares no such store or collection (or is not deployed).
    #[error("{0}")]
    NotFound(String),
    /// The function's manifest does not grant it.
    #[error("{0}")]
    NotGranted(String),
    /// The store's access rule refuses the client.
    #[error(transparent)]
    Access(#[from] IdentityError),
    /// A bad key or id.
    #[error("{0}")]
    Invalid(String),
    /// A value over the limit.
    #[error("{0}")]
    TooLarge(String),
}

impl From<nimbus_core::data::WriteError> for Refusal {
    fn from(e: nimbus_core::data::WriteError) -> Self {
        match e {
            nimbus_core::data::WriteError::Invalid(_) => Refusal::Invalid(e.to_string()),
            nimbus_core::data::WriteError::TooLarge { .. } => Refusal::TooLarge(e.to_string()),
        }
    }
}

/// The guest sides of the data capabilities, over `store`, with the
/// largest value or document the node accepts.
pub fn guest_capabilities(store: &Store, max_value_bytes: u64) -> Vec<Arc<dyn GuestCapability>> {
    vec![
        Arc::new(kv::guest::Kv::new(store.clone(), max_value_bytes)),
        Arc::new(docs::guest::Docs::new(store.clone(), max_value_bytes)),
        Arc::new(config::Config),
    ]
}
