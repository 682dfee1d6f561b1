//! Control API for data: key-value stores (`kv`), document collections
//! (`docs`: ETag / `If-Match` versions, bulk writes, queries with
//! `?explain`), configuration and secrets (`config`) of an app, and its S3
//! keys (`s3_keys`).
//!
//! The stores' client access rules (`none`, `public-read`,
//! `authenticated`, `owner`, `owner-read`: `owner`'s reads without its
//! writes) are applied through `auth::authorize`. Under `owner`, a user
//! reaches only keys under `SUBJECT/` and documents whose owner field names
//! them, and writes go through the document's current version, so a
//! concurrent change conflicts instead of changing hands. Keys, ids and
//! sizes are checked by `nimbus_core::data::check_kv_write` /
//! `check_doc_write`, as for guests.

mod config;
mod docs;
mod kv;
mod s3_keys;

pub(crate) use config::{config_delete, config_list, config_put, secret_put};
pub(crate) use docs::{doc_bulk, doc_delete, doc_get, doc_patch, doc_put, doc_query};
pub(crate) use kv::{kv_delete, kv_get, kv_list, kv_op, kv_put};
pub(crate) use s3_keys::{create_s3_key, revoke_s3_key};

use crate::ctx::ApiError;
use axum::http::StatusCode;
use nimbus_core::data::WriteError;
use nimbus_store::{DocError, KvError};

pub(super) fn not_found(m: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, m)
}

impl From<DocError> for ApiError {
    fn from(e: DocError) -> Self {
        match e {
            DocError::Conflict(m) => ApiError(StatusCode::PRECONDITION_FAILED, m),
            DocError::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
            DocError::Store(e) => e.into(),
        }
    }
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NotANumber(_) | KvError::Overflow(_) => {
                ApiError(StatusCode::CONFLICT, e.to_string())
            }
            KvError::Store(e) => e.into(),
        }
    }
}

/// A write refused by the data rule both faces share: a bad key or id is
/// a bad request, an oversized value 413.
pub(super) fn refused(e: WriteError) -> ApiError {
    let status = match e {
        WriteError::Invalid(_) => StatusCode::BAD_REQUEST,
        WriteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
    };
    ApiError(status, e.to_string())
}
