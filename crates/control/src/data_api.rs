//! Control API for data: key-value stores, document collections (ETag /
//! `If-Match` versions, bulk writes, queries with `?explain`),
//! configuration and secrets of an app, and S3 keys.
//!
//! The stores' client access rules (`none`, `public-read`,
//! `authenticated`, `owner`, `owner-read`: `owner`'s reads without its
//! writes) are applied here through `auth::authorize`. Under `owner`, a
//! user reaches only keys under `SUBJECT/` and documents whose owner field
//! names them, and writes go through the document's current version, so a
//! concurrent change conflicts instead of changing hands. Keys, ids and
//! sizes are checked by `nimbus_core::data::check_kv_write` /
//! `check_doc_write`, as for guests.

use crate::auth::{Grant, Principal, authorize};
use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::data::WriteError;
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

/// A write refused by the data rule both faces share: a bad key or id is
/// a bad request, an oversized value 413.
fn refused(e: WriteError) -> ApiError {
    let status = match e {
        WriteError::Invalid(_) => StatusCode::BAD_REQUEST,
        WriteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
    };
    ApiError(status, e.to_string())
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
) -> ApiResult<Json<Value>> {
    kv_store(&ctx, &who, &app, &store, Some(&key), true)?;
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
    Extension(who): Extension<Principal>,
    Path((app, store, key)): Path<(String, String, String)>,
    Json(op): Json<KvOp>,
) -> ApiResult<Json<Value>> {
    let (limit, _) = kv_store(&ctx, &who, &app, &store, Some(&key), true)?;
    // The key (an operation's value, if any, is checked below).
    check_kv(&app, &store, &key, 0, limit)?;
    let db = &ctx.platform.store;
    match (op.increment, op.compare_and_swap) {
        (Some(n), None) => Ok(Json(
            json!({ "value": db.kv_increment(&app, &store, &key, n).await? }),
        )),
        (None, Some(c)) => {
            check_kv(&app, &store, &key, c.value.len(), limit)?;
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
    Extension(who): Extension<Principal>,
    Path((app, store)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<nimbus_store::KeyPage>> {
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

/// A declared collection of an active app, and what the caller may do in
/// it: under the `owner` rule, the grant and the owner field.
fn collection(
    ctx: &Ctx,
    principal: &Principal,
    app: &str,
    coll: &str,
    write: bool,
) -> ApiResult<Owned> {
    let table = ctx.platform.gateway.table();
    let active = table
        .app(app)
        .ok_or_else(|| not_found(format!("app {app:?} is not deployed")))?;
    let spec = active.spec.collections.get(coll).ok_or_else(|| {
        not_found(format!(
            "app {app:?} has no collection {coll:?}: declare it in nimbus.toml as [collections.{coll}]"
        ))
    })?;
    let grant = authorize(
        principal,
        app,
        &format!("collection {coll:?}"),
        spec.access,
        write,
    )?;
    Ok(grant.owner().map(|subject| {
        (
            subject.to_string(),
            spec.owner_field.clone().unwrap_or_else(|| "owner".into()),
        )
    }))
}

/// Under the owner rule: the user's subject and the owner field.
type Owned = Option<(String, String)>;

fn not_yours(coll: &str, id: &str, field: &str) -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        format!("document {coll}/{id} belongs to another user (its {field:?} is not your user id)"),
    )
}

/// Under the owner rule, the current document (which must be the user's)
/// and the version to write against, so a concurrent change conflicts.
async fn owned_current(
    ctx: &Ctx,
    app: &str,
    coll: &str,
    id: &str,
    owned: &Owned,
    expected: Option<i64>,
) -> ApiResult<Option<i64>> {
    let Some((subject, field)) = owned else {
        return Ok(expected);
    };
    let current = ctx.platform.store.doc_get(app, coll, id).await?;
    let version = match &current {
        Some(d) => {
            if !owns(&d.value(), field, subject) {
                return Err(not_yours(coll, id, field));
            }
            d.version
        }
        None => 0,
    };
    if expected.is_some_and(|e| e != version) {
        return Err(ApiError(
            StatusCode::PRECONDITION_FAILED,
            format!("document {coll}/{id} is at version {version}, not the expected one"),
        ));
    }
    Ok(Some(version))
}

/// Whether `body`'s owner field names `subject`.
fn owns(body: &Value, field: &str, subject: &str) -> bool {
    field_value(body, field).and_then(Value::as_str) == Some(subject)
}

/// The value at a dotted field path.
fn field_value<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(body, |v, k| v.get(k))
}

fn check_doc(ctx: &Ctx, coll: &str, id: &str, len: usize) -> ApiResult<()> {
    let place = format_args!("collection {coll:?}");
    nimbus_core::data::check_doc_write(place, Some(id), len, ctx.platform.max_value_bytes)
        .map_err(refused)
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
    Extension(who): Extension<Principal>,
    Path((app, coll, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let owned = collection(&ctx, &who, &app, &coll, false)?;
    match ctx.platform.store.doc_get(&app, &coll, &id).await? {
        Some(d) => {
            if let Some((subject, field)) = &owned
                && !owns(&d.value(), field, subject)
            {
                return Err(not_yours(&coll, &id, field));
            }
            Ok(with_etag(d))
        }
        None => Err(not_found(format!("no document {coll}/{id} in app {app:?}"))),
    }
}

/// `PUT /v1/apps/{app}/docs/{coll}/{id}` (body: a JSON object; `If-Match`
/// for optimistic concurrency).
pub(crate) async fn doc_put(
    State(ctx): State<Ctx>,
    Extension(who): Extension<Principal>,
    Path((app, coll, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let owned = collection(&ctx, &who, &app, &coll, true)?;
    check_doc(&ctx, &coll, &id, body.len())?;
    let mut body = body;
    if let Some((subject, field)) = &owned {
        // The document must name its writer as owner (set if absent).
        let mut v: Value = serde_json::from_str(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the document is not JSON: {e}"),
            )
        })?;
        match field_value(&v, field) {
            None => {
                if field.contains('.') {
                    return Err(ApiError(
                        StatusCode::BAD_REQUEST,
                        format!("set the owner field {field:?} to your user id"),
                    ));
                }
                if let Some(o) = v.as_object_mut() {
                    o.insert(field.clone(), Value::String(subject.clone()));
                }
            }
            Some(Value::String(s)) if s == subject => {}
            Some(_) => return Err(not_yours(&coll, &id, field)),
        }
        body = v.to_string();
    }
    let expected =
        owned_current(&ctx, &app, &coll, &id, &owned, expected_version(&headers)?).await?;
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
    Extension(who): Extension<Principal>,
    Path((app, coll, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let owned = collection(&ctx, &who, &app, &coll, true)?;
    check_doc(&ctx, &coll, &id, body.len())?;
    if let Some((subject, field)) = &owned {
        let patch: Value = serde_json::from_str(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the patch is not JSON: {e}"),
            )
        })?;
        // A patch may not hand the document to someone else (or drop its owner).
        let head = field.split('.').next().unwrap_or(field);
        if patch.get(head).is_some() && !owns(&patch, field, subject) {
            return Err(not_yours(&coll, &id, field));
        }
    }
    let expected =
        owned_current(&ctx, &app, &coll, &id, &owned, expected_version(&headers)?).await?;
    if owned.is_some() && expected == Some(0) {
        return Err(not_found(format!("no document {coll}/{id} in app {app:?}")));
    }
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
    Extension(who): Extension<Principal>,
    Path((app, coll, id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let owned = collection(&ctx, &who, &app, &coll, true)?;
    if owned.is_none() {
        let existed = ctx.platform.store.doc_delete(&app, &coll, &id).await?;
        return Ok(Json(json!({ "deleted": existed })));
    }
    // Under the owner rule: delete the version that was checked, so a
    // document created or replaced meanwhile is not deleted unseen.
    match owned_current(&ctx, &app, &coll, &id, &owned, None).await? {
        Some(0) | None => Ok(Json(json!({ "deleted": false }))),
        Some(version) => {
            if ctx
                .platform
                .store
                .doc_delete_at(&app, &coll, &id, Some(version))
                .await?
            {
                Ok(Json(json!({ "deleted": true })))
            } else {
                Err(ApiError(
                    StatusCode::PRECONDITION_FAILED,
                    format!(
                        "document {coll}/{id} changed while it was being deleted: read it again"
                    ),
                ))
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ExplainQuery {
    explain: Option<bool>,
}

/// `POST /v1/apps/{app}/docs/{coll}/_query` (body: the JSON query;
/// `?explain=true` adds the query plan).
pub(crate) async fn doc_query(
    State(ctx): State<Ctx>,
    Extension(who): Extension<Principal>,
    Path((app, coll)): Path<(String, String)>,
    Query(x): Query<ExplainQuery>,
    body: String,
) -> ApiResult<impl axum::response::IntoResponse> {
    let owned = collection(&ctx, &who, &app, &coll, false)?;
    let mut q = DocQuery::parse(if body.trim().is_empty() { "{}" } else { &body })?;
    // Under the owner rule a query sees the user's documents only.
    if let Some((subject, field)) = owned {
        q.filters
            .push((field, nimbus_store::Op::Eq, Value::String(subject)));
    }
    let page = ctx.platform.store.doc_query(&app, &coll, &q).await?;
    let plan = match x.explain {
        Some(true) => Some(ctx.platform.store.doc_query_plan(&app, &coll, &q).await?),
        _ => None,
    };
    // Serialized straight from the stored text, never as a tree of values.
    #[derive(serde::Serialize)]
    struct Out {
        documents: Vec<nimbus_store::Document>,
        cursor: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        ended_early: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        plan: Option<String>,
    }
    Ok(Json(Out {
        documents: page.documents,
        cursor: page.cursor,
        ended_early: page.ended_early,
        plan,
    }))
}

/// `POST /v1/apps/{app}/docs/{coll}` with a JSON array of objects, each
/// with an `"id"`: creates or replaces them all in one transaction.
pub(crate) async fn doc_bulk(
    State(ctx): State<Ctx>,
    Extension(who): Extension<Principal>,
    Path((app, coll)): Path<(String, String)>,
    Json(docs): Json<Vec<Value>>,
) -> ApiResult<Json<Value>> {
    if collection(&ctx, &who, &app, &coll, true)?.is_some() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "bulk writes to {coll:?} (owner rule) need an API key: write documents one at a time"
            ),
        ));
    }
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
        check_doc(&ctx, &coll, &id, text.len())?;
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

/// `DELETE /v1/keys/s3/{access_key}`: revokes an S3 key of an app the
/// caller's key has the data scope on (the scope that creates them). The
/// next request signed with it is refused, on every node: secrets are read
/// from the store for each request.
pub(crate) async fn revoke_s3_key(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(access_key): Path<String>,
) -> ApiResult<StatusCode> {
    let store = &ctx.platform.store;
    let mine = match (&principal, store.s3_key(&access_key).await?) {
        (Principal::Key(k), Some((app, _))) => k.allows(Some(&app), nimbus_identity::Scope::Data),
        _ => false,
    };
    // Another app's key is as unknown as a missing one.
    if !mine || !store.delete_s3_key(&access_key).await? {
        return Err(not_found(format!(
            "no S3 key {access_key:?} that this API key may revoke: see `nimbus keys list`"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
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
