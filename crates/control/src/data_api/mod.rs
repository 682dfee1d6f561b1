//! Control API for an app's configuration and secrets (`config`) and its
//! S3 keys (`s3_keys`): deploy-time settings, under API-key scopes. The
//! key-value and document endpoints, under the stores' client access
//! rules, are the data capabilities' own (`nimbus_data`'s `rest.rs`).

mod config;
mod s3_keys;

pub(crate) use config::{config_delete, config_list, config_put, secret_put};
pub(crate) use s3_keys::{create_s3_key, revoke_s3_key};

use crate::ctx::ApiError;
use axum::http::StatusCode;

pub(super) fn not_found(m: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, m)
}
