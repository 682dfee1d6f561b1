//! Control API for data: key-value stores, document collections,
//! configuration and secrets of an app.

use crate::api::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_store::{DocError, DocQuery, KvError};
use serde::Deserialize;
use serde_json::{Value, json};

fn not_found(m: String) -> ApiError {
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

/// The value limit of a declared store of an active app.
fn kv_store(ctx: &Ctx, app: &str, store: &str) -> ApiResult<u64> {
    let table = ctx.platform.gateway.table();
    let active = table
        .app(app)
        .ok_or_else(|| not_found(format!("app {app:?} is not deployed")))?;
    let spec = active.spec.kv.get(store).ok_or_else(|| {
        not_found(format!(
            "app {app:?} has no KV store {store:?}: declare it in nimbus.toml as [kv.{store}]"
        ))
    })?;
    Ok(spec
        .max_value_bytes
        .unwrap_or(u64::MAX)
        .min(ctx.platform.max_value_bytes))
}

fn check_key(key: &str) -> ApiResult<()> {
    nimbus_core::data::check_kv_key(key).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))
}

/// `GET /v1/apps/{app}/kv/{store}/{*key}`: the raw value.
pub(crate) async fn kv_get(
    State(ctx): State<Ctx>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    kv_store(&ctx, &app, &store)?;
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
    Path((app, store, key)): Path<(String, String, String)>,
    Query(q): Query<SetQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let limit = kv_store(&ctx, &app, &store)?;
    check_key(&key)?;
    if body.len() as u64 > limit {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the value is {} bytes, over the limit of {limit} bytes of {app}/{store}",
                body.len()
            ),
        ));
    }
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
    Path((app, store, key)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    kv_store(&ctx, &app, &store)?;
    let existed = ctx.platform.store.kv_delete(&app, &store, &key).await?;
    Ok(Json(json!({ "deleted": existed })))
}

#[derive(Deserialize)]
pub(crate) struct KvOp {
    increment: Option<i64>,
    compare_and_swap: Option<CasBody>,
}

#[derive(Deserialize)]
pub(crate) struct CasBody {
    expected: Option<String>,
    value: String,
}

/// `POST /v1/apps/{app}/kv/{store}/{*key}` with `{"increment": N}` or
/// `{"compare_and_swap": {"expected": "old" | null, "value": "new"}}`.
pub(crate) async fn kv_op(
    State(ctx): State<Ctx>,
    Path((app, store, key)): Path<(String, String, String)>,
    Json(op): Json<KvOp>,
) -> ApiResult<Json<Value>> {
    let limit = kv_store(&ctx, &app, &store)?;
    check_key(&key)?;
    let db = &ctx.platform.store;
    match (op.increment, op.compare_and_swap) {
        (Some(n), None) => Ok(Json(
            json!({ "value": db.kv_increment(&app, &store, &key, n).await? }),
        )),
        (None, Some(c)) => {
            if c.value.len() as u64 > limit {
                return Err(ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the value is over the limit of {limit} bytes"),
                ));
            }
            let swapped = db
                .kv_compare_and_swap(
                    &app,
                    &store,
                    &key,
                    c.expected.as_deref().map(str::as_bytes),
                    c.value.as_bytes(),
                )
                .await?;
            if !swapped {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!("compare-and-swap of {key:?} failed: its value is not the expected one; read it again and retry"),
                ));
            }
            Ok(Json(json!({ "swapped": true })))
        }
        _ => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "send {\"increment\": N} or {\"compare_and_swap\": {\"expected\": ..., \"value\": ...}}"
                .into(),
        )),
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
    Path((app, store)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<nimbus_store::KeyPage>> {
    kv_store(&ctx, &app, &store)?;
    Ok(Json(
        ctx.platform
            .store
            .kv_list(
                &app,
                &store,
                q.prefix.as_deref().unwrap_or(""),
                q.after.as_deref(),
                q.limit.unwrap_or(100).clamp(1, 1000),
            )
            .await?,
    ))
}

fn collection(ctx: &Ctx, app: &str, coll: &str) -> ApiResult<()> {
    let table = ctx.platform.gateway.table();
    let active = table
        .app(app)
        .ok_or_else(|| not_found(format!("app {app:?} is not deployed")))?;
    if !active.spec.collections.contains_key(coll) {
        return Err(not_found(format!(
            "app {app:?} has no collection {coll:?}: declare it in nimbus.toml as [collections.{coll}]"
        )));
    }
    Ok(())
}

fn check_doc(ctx: &Ctx, id: &str, len: usize) -> ApiResult<()> {
    nimbus_core::data::check_doc_id(id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    if len as u64 > ctx.platform.max_value_bytes {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the document is {len} bytes, over the limit of {} bytes",
                ctx.platform.max_value_bytes
            ),
        ));
    }
    Ok(())
}

/// `If-Match: 3` (or `"3"`): the version a write expects; `0` means absent.
fn expected_version(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_matches('"'))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "If-Match must be a document version (0: only if absent)".into(),
                )
            }),
    }
}

fn with_etag(doc: nimbus_store::Document) -> Response {
    let etag = format!("\"{}\"", doc.version);
    ([(header::ETAG, etag)], Json(doc)).into_response()
}

/// `GET /v1/apps/{app}/docs/{coll}/{id}`.
pub(crate) async fn doc_get(
    State(ctx): State<Ctx>,
    Path((app, coll, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    collection(&ctx, &app, &coll)?;
    match ctx.platform.store.doc_get(&app, &coll, &id).await? {
        Some(d) => Ok(with_etag(d)),
        None => Err(not_found(format!("no document {coll}/{id} in app {app:?}"))),
    }
}

/// `PUT /v1/apps/{app}/docs/{coll}/{id}` (body: a JSON object; `If-Match`
/// for optimistic concurrency).
pub(crate) async fn doc_put(
    State(ctx): State<Ctx>,
    Path((app, coll, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    collection(&ctx, &app, &coll)?;
    check_doc(&ctx, &id, body.len())?;
    let expected = expected_version(&headers)?;
    let d = ctx
        .platform
        .store
        .doc_put(&app, &coll, &id, &body, expected)
        .await?;
    Ok(with_etag(d))
}

/// `PATCH /v1/apps/{app}/docs/{coll}/{id}`: a JSON merge patch (RFC 7396).
pub(crate) async fn doc_patch(
    State(ctx): State<Ctx>,
    Path((app, coll, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    collection(&ctx, &app, &coll)?;
    check_doc(&ctx, &id, body.len())?;
    let expected = expected_version(&headers)?;
    let d = ctx
        .platform
        .store
        .doc_patch(
            &app,
            &coll,
            &id,
            &body,
            expected,
            ctx.platform.max_value_bytes,
        )
        .await?;
    Ok(with_etag(d))
}

/// `DELETE /v1/apps/{app}/docs/{coll}/{id}`.
pub(crate) async fn doc_delete(
    State(ctx): State<Ctx>,
    Path((app, coll, id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    collection(&ctx, &app, &coll)?;
    let existed = ctx.platform.store.doc_delete(&app, &coll, &id).await?;
    Ok(Json(json!({ "deleted": existed })))
}

#[derive(Deserialize)]
pub(crate) struct ExplainQuery {
    explain: Option<bool>,
}

/// `POST /v1/apps/{app}/docs/{coll}/_query` (body: the JSON query;
/// `?explain=true` adds the query plan).
pub(crate) async fn doc_query(
    State(ctx): State<Ctx>,
    Path((app, coll)): Path<(String, String)>,
    Query(x): Query<ExplainQuery>,
    body: String,
) -> ApiResult<Json<Value>> {
    collection(&ctx, &app, &coll)?;
    let q = DocQuery::parse(if body.trim().is_empty() { "{}" } else { &body })?;
    let (docs, cursor) = ctx.platform.store.doc_query(&app, &coll, &q).await?;
    let mut out = json!({ "documents": docs, "cursor": cursor });
    if x.explain == Some(true) {
        out["plan"] = json!(ctx.platform.store.doc_query_plan(&app, &coll, &q).await?);
    }
    Ok(Json(out))
}

/// `POST /v1/apps/{app}/docs/{coll}` with a JSON array of objects, each
/// with an `"id"`: creates or replaces them all in one transaction.
pub(crate) async fn doc_bulk(
    State(ctx): State<Ctx>,
    Path((app, coll)): Path<(String, String)>,
    Json(docs): Json<Vec<Value>>,
) -> ApiResult<Json<Value>> {
    collection(&ctx, &app, &coll)?;
    let mut items = Vec::with_capacity(docs.len());
    for d in docs {
        let id = d["id"]
            .as_str()
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "every document of a bulk write needs a string \"id\"".into(),
                )
            })?
            .to_string();
        let mut body = d;
        if let Some(o) = body.as_object_mut() {
            o.remove("id");
        }
        let text = body.to_string();
        check_doc(&ctx, &id, text.len())?;
        items.push((id, text));
    }
    let n = ctx.platform.store.doc_put_many(&app, &coll, &items).await?;
    Ok(Json(json!({ "written": n })))
}

#[derive(Deserialize)]
pub(crate) struct ScopeQuery {
    function: Option<String>,
}

/// `GET /v1/apps/{app}/config`: variables and the names of secrets (never
/// their values).
pub(crate) async fn config_list(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.platform.store.app(&app).await?;
    let rows = ctx.platform.store.config_rows(&app).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "function": if r.function.is_empty() { None } else { Some(r.function) },
                "key": r.key,
                "value": if r.secret { None } else { Some(r.value) },
                "secret": r.secret,
                "updated_at_us": r.updated_at_us,
            })
        })
        .collect();
    Ok(Json(json!({ "app": app, "config": list })))
}

async fn set(
    ctx: &Ctx,
    app: &str,
    key: &str,
    function: Option<&str>,
    value: Option<&str>,
    secret: bool,
) -> ApiResult<Json<Value>> {
    let changed = ctx
        .platform
        .set_config(app, function, key, value, secret)
        .await?;
    Ok(Json(json!({ "key": key, "changed": changed })))
}

/// `PUT /v1/apps/{app}/config/{key}?function=F` (body: the value).
pub(crate) async fn config_put(
    State(ctx): State<Ctx>,
    Path((app, key)): Path<(String, String)>,
    Query(q): Query<ScopeQuery>,
    body: String,
) -> ApiResult<Json<Value>> {
    set(&ctx, &app, &key, q.function.as_deref(), Some(&body), false).await
}

/// `DELETE /v1/apps/{app}/config/{key}?function=F`.
pub(crate) async fn config_delete(
    State(ctx): State<Ctx>,
    Path((app, key)): Path<(String, String)>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult<Json<Value>> {
    set(&ctx, &app, &key, q.function.as_deref(), None, false).await
}

/// `PUT /v1/apps/{app}/secrets/{key}?function=F` (body: the value; it is
/// sealed at rest and never returned).
pub(crate) async fn secret_put(
    State(ctx): State<Ctx>,
    Path((app, key)): Path<(String, String)>,
    Query(q): Query<ScopeQuery>,
    body: String,
) -> ApiResult<Json<Value>> {
    set(&ctx, &app, &key, q.function.as_deref(), Some(&body), true).await
}

/// `POST /v1/apps/{app}/keys/s3`: a new S3 access key for the app's
/// buckets. The secret is shown once, in this answer, and stored sealed.
pub(crate) async fn create_s3_key(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    ctx.platform.store.app(&app).await?;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const ANY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let pick = |alphabet: &[u8], n: usize| -> String {
        (0..n)
            .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
            .collect()
    };
    let access_key = format!("NK{}", pick(UPPER, 18));
    let secret = pick(ANY, 40);
    ctx.platform
        .store
        .insert_s3_key(&access_key, &app, &ctx.platform.sealer.seal(&secret))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "app": app, "access_key": access_key, "secret_key": secret })),
    ))
}
