//! `/v1/apps/{app}/kv/{store}`: raw values by key, counters and
//! compare-and-swap, listings; a store opens through [`KvStore::open`]
//! with the caller's access rule.

use super::KvStore;
use crate::Caller;
use crate::face::{ApiError, ApiResult, DataFace};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_api::{Counter, Deleted, KeyPage, KvOp, Swapped};
use nimbus_identity::Principal;
use nimbus_store::KvError;
use serde::Deserialize;

/// Opens `store` of `app` for the caller.
fn open(
    face: &DataFace,
    principal: &Principal,
    app: &str,
    store: &str,
    write: bool,
) -> ApiResult<KvStore> {
    let spec = face.app(app)?;
    let caller = Caller::Client { principal, write };
    Ok(KvStore::open(&spec, store, caller, face.max_value_bytes)?)
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

/// `GET /v1/apps/{app}/kv/{store}/{*key}`: the raw value.
pub(crate) async fn get(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    open(&face, &who, &app, &store, false)?.reach(&key)?;
    match face.store.kv_get(&app, &store, &key).await? {
        Some(v) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response()),
        None => Err(ApiError::not_found(format!(
            "no key {key:?} in {app}/{store}"
        ))),
    }
}

#[derive(Deserialize)]
pub(crate) struct SetQuery {
    ttl: Option<String>,
}

/// `PUT /v1/apps/{app}/kv/{store}/{*key}?ttl=30s`: the body is the value.
pub(crate) async fn put(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
    Query(q): Query<SetQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    open(&face, &who, &app, &store, true)?.check_write(&key, body.len())?;
    let ttl_ms = match q.ttl {
        Some(t) => Some(
            humantime::parse_duration(&t)
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "ttl {t:?} is not a duration ({e}): write e.g. 30s, 5m"
                    ))
                })?
                .as_millis()
                .clamp(1, u64::MAX as u128) as u64,
        ),
        None => None,
    };
    face.store.kv_set(&app, &store, &key, &body, ttl_ms).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/apps/{app}/kv/{store}/{*key}`.
pub(crate) async fn delete(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> ApiResult<Json<Deleted>> {
    open(&face, &who, &app, &store, true)?.reach(&key)?;
    let deleted = face.store.kv_delete(&app, &store, &key).await?;
    Ok(Json(Deleted { deleted }))
}

/// `POST /v1/apps/{app}/kv/{store}/{*key}` with `{"increment": N}` or
/// `{"compare_and_swap": {"expected": "old" | null, "value": "new"}}`.
pub(crate) async fn op(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let kv = open(&face, &who, &app, &store, true)?;
    // Whose key it is comes before what is asked of it: another user's key
    // is refused whatever the body says.
    kv.reach(&key)?;
    let op: KvOp = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "send {{\"increment\": N}} or {{\"compare_and_swap\": {{\"expected\": ..., \"value\": ...}}}} ({e})"
        ))
    })?;
    match op {
        KvOp::Increment(n) => {
            kv.check_write(&key, 0)?;
            let value = face.store.kv_increment(&app, &store, &key, n).await?;
            Ok(Json(Counter { value }).into_response())
        }
        KvOp::CompareAndSwap { expected, value } => {
            kv.check_write(&key, value.len())?;
            let swapped = face
                .store
                .kv_compare_and_swap(
                    &app,
                    &store,
                    &key,
                    expected.as_deref().map(str::as_bytes),
                    value.as_bytes(),
                )
                .await?;
            if !swapped {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!(
                        "compare-and-swap of {key:?} failed: its value is not the expected one; read it again and retry"
                    ),
                ));
            }
            Ok(Json(Swapped { swapped }).into_response())
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/apps/{app}/kv/{store}?prefix=&after=&limit=`: keys, in order.
pub(crate) async fn list(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, store)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<KeyPage>> {
    let prefix = open(&face, &who, &app, &store, false)?
        .list_prefix(q.prefix.as_deref().unwrap_or_default())?;
    Ok(Json(
        face.store
            .kv_list(
                &app,
                &store,
                &prefix,
                q.after.as_deref(),
                q.limit.unwrap_or(100).clamp(1, 1000),
            )
            .await?,
    ))
}
