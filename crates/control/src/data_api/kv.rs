//! `/v1/apps/{app}/kv/{store}`: raw values by key, counters and
//! compare-and-swap, listings; under the store's access rule.

use super::{not_found, refused};
use crate::auth::{Grant, Principal, authorize};
use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_api::{Counter, Deleted, KeyPage, KvOp, Swapped};
use serde::Deserialize;

/// The value limit of a declared store of an active app, and what the
/// caller may do in it (`write`: a write is asked for). Under the `owner`
/// rule a user reaches only keys under `SUBJECT/`.
fn kv_store(
    ctx: &Ctx,
    principal: &Principal,
    app: &str,
    store: &str,
    key: Option<&str>,
    write: bool,
) -> ApiResult<(u64, Grant)> {
    let table = ctx.platform.gateway.table();
    let active = table
        .app(app)
        .ok_or_else(|| not_found(format!("app {app:?} is not deployed")))?;
    let spec = active.spec.kv.get(store).ok_or_else(|| {
        not_found(format!(
            "app {app:?} has no KV store {store:?}: declare it in nimbus.toml as [kv.{store}]"
        ))
    })?;
    let grant = authorize(
        principal,
        app,
        &format!("KV store {store:?}"),
        spec.access,
        write,
    )?;
    if let (Some(owner), Some(key)) = (grant.owner(), key)
        && !key.starts_with(&format!("{owner}/"))
    {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "under the owner rule of {app}/{store}, a user reaches only keys under \"{owner}/\""
            ),
        ));
    }
    let limit = nimbus_core::data::value_limit(spec.max_value_bytes, ctx.platform.max_value_bytes);
    Ok((limit, grant))
}

/// Checks a KV write of `len` bytes at `key` of `app`/`store`.
fn check_kv(app: &str, store: &str, key: &str, len: usize, limit: u64) -> ApiResult<()> {
    nimbus_core::data::check_kv_write(format_args!("{app}/{store}"), key, len, limit)
        .map_err(refused)
}

/// `GET /v1/apps/{app}/kv/{store}/{*key}`: the raw value.
pub(crate) async fn kv_get(
    State(ctx): State<Ctx>,
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    kv_store(&ctx, &who, &app, &store, Some(&key), false)?;
    match ctx.platform.store.kv_get(&app, &store, &key).await? {
        Some(v) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response()),
        None => Err(not_found(format!("no key {key:?} in {app}/{store}"))),
    }
}

#[derive(Deserialize)]
pub(crate) struct SetQuery {
    ttl: Option<String>,
}

/// `PUT /v1/apps/{app}/kv/{store}/{*key}?ttl=30s`: the body is the value.
pub(crate) async fn kv_put(
    State(ctx): State<Ctx>,
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
    Query(q): Query<SetQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (limit, _) = kv_store(&ctx, &who, &app, &store, Some(&key), true)?;
    check_kv(&app, &store, &key, body.len(), limit)?;
    let ttl_ms = match q.ttl {
        Some(t) => Some(
            humantime::parse_duration(&t)
                .map_err(|e| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!("ttl {t:?} is not a duration ({e}): write e.g. 30s, 5m"),
                    )
                })?
                .as_millis()
                .clamp(1, u64::MAX as u128) as u64,
        ),
        None => None,
    };
    ctx.platform
        .store
        .kv_set(&app, &store, &key, &body, ttl_ms)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/apps/{app}/kv/{store}/{*key}`.
pub(crate) async fn kv_delete(
    State(ctx): State<Ctx>,
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> ApiResult<Json<Deleted>> {
    kv_store(&ctx, &who, &app, &store, Some(&key), true)?;
    let deleted = ctx.platform.store.kv_delete(&app, &store, &key).await?;
    Ok(Json(Deleted { deleted }))
}

/// `POST /v1/apps/{app}/kv/{store}/{*key}` with `{"increment": N}` or
/// `{"compare_and_swap": {"expected": "old" | null, "value": "new"}}`.
pub(crate) async fn kv_op(
    State(ctx): State<Ctx>,
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (limit, _) = kv_store(&ctx, &who, &app, &store, Some(&key), true)?;
    let op: KvOp = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("send {{\"increment\": N}} or {{\"compare_and_swap\": {{\"expected\": ..., \"value\": ...}}}} ({e})"),
        )
    })?;
    // The key (an operation's value, if any, is checked below).
    check_kv(&app, &store, &key, 0, limit)?;
    let db = &ctx.platform.store;
    match op {
        KvOp::Increment(n) => {
            let value = db.kv_increment(&app, &store, &key, n).await?;
            Ok(Json(Counter { value }).into_response())
        }
        KvOp::CompareAndSwap { expected, value } => {
            check_kv(&app, &store, &key, value.len(), limit)?;
            let swapped = db
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
pub(crate) async fn kv_list(
    State(ctx): State<Ctx>,
    Extension(who): Extension<Principal>,
    Path((app, store)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<KeyPage>> {
    let (_, grant) = kv_store(&ctx, &who, &app, &store, None, false)?;
    // Under the owner rule a listing stays within the user's keys.
    let prefix = match grant.owner() {
        Some(owner) => {
            let mine = format!("{owner}/");
            let asked = q.prefix.clone().unwrap_or_default();
            if asked.starts_with(&mine) {
                asked
            } else if mine.starts_with(&asked) {
                mine
            } else {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    format!("under the owner rule of {app}/{store}, list keys under \"{owner}/\""),
                ));
            }
        }
        None => q.prefix.clone().unwrap_or_default(),
    };
    Ok(Json(
        ctx.platform
            .store
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
