//! What the capabilities' REST faces share: their state ([`DataFace`]),
//! their error ([`ApiError`], answered as the API's `{"error": ...}`; the
//! control API's handlers answer with it too), and their entries for the
//! control API's route table ([`routes`]).

use crate::Refusal;
use axum::Json;
use axum::extract::FromRef;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use nimbus_core::{AppSpec, Service};
use nimbus_gateway::Gateway;
use nimbus_identity::IdentityError;
use nimbus_store::{Store, StoreError};
use std::sync::Arc;

/// What a data endpoint works with. The control API's context hands it to
/// the handlers (`FromRef`).
#[derive(Clone)]
pub struct DataFace {
    pub(crate) store: Store,
    gateway: Arc<Gateway>,
    /// Largest KV value or document the node accepts.
    pub(crate) max_value_bytes: u64,
}

impl DataFace {
    pub fn new(store: Store, gateway: Arc<Gateway>, max_value_bytes: u64) -> DataFace {
        DataFace {
            store,
            gateway,
            max_value_bytes,
        }
    }

    /// The active spec of `app`.
    pub(crate) fn app(&self, app: &str) -> Result<Arc<AppSpec>, ApiError> {
        self.gateway
            .table()
            .app(app)
            .map(|a| a.spec.clone())
            .ok_or_else(|| ApiError::not_found(format!("app {app:?} is not deployed")))
    }
}

/// An API endpoint's refusal or failure: a status and what was wrong,
/// answered as [`nimbus_api::ErrorBody`].
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn not_found(m: String) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, m)
    }

    pub(crate) fn bad_request(m: String) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(nimbus_api::ErrorBody { error: self.1 })).into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::Access(e) => return e.into(),
            Refusal::NotFound(_) | Refusal::NotGranted(_) => StatusCode::NOT_FOUND,
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        };
        ApiError(status, r.to_string())
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        let status = match &e {
            IdentityError::Invalid(_) => StatusCode::BAD_REQUEST,
            IdentityError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IdentityError::Forbidden(_) => StatusCode::FORBIDDEN,
            IdentityError::NotFound(_) => StatusCode::NOT_FOUND,
            IdentityError::Conflict(_) => StatusCode::CONFLICT,
            IdentityError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            IdentityError::Store(_) | IdentityError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// One data endpoint: all of them are open to app pages, under the
/// store's access rule, and metered as their capability's service.
pub struct DataRoute<S> {
    pub method: Method,
    /// The path pattern (`{name}`, `{*rest}`).
    pub path: &'static str,
    pub service: Service,
    pub handler: MethodRouter<S>,
}

fn route<S, H, T>(method: Method, path: &'static str, service: Service, handler: H) -> DataRoute<S>
where
    S: Clone + Send + Sync + 'static,
    H: Handler<T, S>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a data route's method");
    DataRoute {
        method,
        path,
        service,
        handler: on(filter, handler),
    }
}

/// Every data endpoint, for a router whose state `S` yields a [`DataFace`].
pub fn routes<S>() -> Vec<DataRoute<S>>
where
    S: Clone + Send + Sync + 'static,
    DataFace: FromRef<S>,
{
    use crate::docs::rest as docs;
    use crate::kv::rest as kv;
    use Method as M;
    use Service::{Docs, Kv};
    vec![
        route(M::GET, "/v1/apps/{app}/kv/{store}", Kv, kv::list),
        route(M::GET, "/v1/apps/{app}/kv/{store}/{*key}", Kv, kv::get),
        route(M::PUT, "/v1/apps/{app}/kv/{store}/{*key}", Kv, kv::put),
        route(
            M::DELETE,
            "/v1/apps/{app}/kv/{store}/{*key}",
            Kv,
            kv::delete,
        ),
        route(M::POST, "/v1/apps/{app}/kv/{store}/{*key}", Kv, kv::op),
        route(M::POST, "/v1/apps/{app}/docs/{coll}", Docs, docs::bulk),
        route(
            M::POST,
            "/v1/apps/{app}/docs/{coll}/_query",
            Docs,
            docs::query,
        ),
        route(M::GET, "/v1/apps/{app}/docs/{coll}/{id}", Docs, docs::get),
        route(M::PUT, "/v1/apps/{app}/docs/{coll}/{id}", Docs, docs::put),
        route(
            M::PATCH,
            "/v1/apps/{app}/docs/{coll}/{id}",
            Docs,
            docs::patch,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/docs/{coll}/{id}",
            Docs,
            docs::delete,
        ),
    ]
}
