//! `/v1/apps/{app}/docs/{coll}`: JSON documents with versions (ETags),
//! merge patches, queries and bulk writes; under the collection's access
//! rule (the owner rule sees and writes only the user's documents).

use super::{not_found, refused};
use crate::auth::{Principal, authorize};
use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_api::{Deleted, Written};
use nimbus_store::DocQuery;
use serde::Deserialize;
use serde_json::Value;

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
) -> ApiResult<Json<Deleted>> {
    let owned = collection(&ctx, &who, &app, &coll, true)?;
    if owned.is_none() {
        let existed = ctx.platform.store.doc_delete(&app, &coll, &id).await?;
        return Ok(Json(Deleted { deleted: existed }));
    }
    // Under the owner rule: delete the version that was checked, so a
    // document created or replaced meanwhile is not deleted unseen.
    match owned_current(&ctx, &app, &coll, &id, &owned, None).await? {
        Some(0) | None => Ok(Json(Deleted { deleted: false })),
        Some(version) => {
            if ctx
                .platform
                .store
                .doc_delete_at(&app, &coll, &id, Some(version))
                .await?
            {
                Ok(Json(Deleted { deleted: true }))
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
) -> ApiResult<Json<Written>> {
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
    Ok(Json(Written { written: n as u64 }))
}
