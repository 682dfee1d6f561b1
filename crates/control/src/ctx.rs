//! What every control API handler shares: its context ([`Ctx`]) and its
//! error ([`ApiError`], answered as `{"error": message}`). A module of its
//! own, below the router and the handler modules alike, so handlers do not
//! import from the router that imports them.

use crate::platform::{Platform, PlatformError};
use axum::http::StatusCode;
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) platform: Arc<Platform>,
    /// What the data capabilities' endpoints work with.
    data: nimbus_data::DataFace,
}

impl Ctx {
    pub(crate) fn new(platform: Arc<Platform>) -> Ctx {
        let data = nimbus_data::DataFace::new(
            platform.store.clone(),
            platform.gateway.clone(),
            platform.max_value_bytes,
        );
        Ctx { platform, data }
    }
}

/// The data capabilities' handlers take their part of the context.
impl axum::extract::FromRef<Ctx> for nimbus_data::DataFace {
    fn from_ref(ctx: &Ctx) -> Self {
        ctx.data.clone()
    }
}

/// An error answered as `{"error": message}` (the data capabilities'
/// too, so both kinds of handler share one).
pub(crate) use nimbus_data::ApiError;

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> Self {
        let status = match &e {
            PlatformError::Invalid(_) => StatusCode::BAD_REQUEST,
            PlatformError::NotFound(_) => StatusCode::NOT_FOUND,
            PlatformError::Conflict(_) => StatusCode::CONFLICT,
            PlatformError::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            PlatformError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
