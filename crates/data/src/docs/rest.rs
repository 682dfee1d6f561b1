//! `/v1/apps/{app}/docs/{coll}`: JSON documents with versions (ETags),
//! merge patches, queries and bulk writes; a collection opens through
//! [`Collection::open`] with the caller's access rule (the owner rule sees
//! and writes only the user's documents).

use super::{Collection, field_value};
use crate::Caller;
use crate::face::{ApiError, ApiResult, DataFace};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_api::{Deleted, DocPage, Written};
use nimbus_identity::Principal;
use nimbus_store::{DocError, DocQuery};
use serde::Deserialize;
use serde_json::Value;

/// Opens `coll` of `app` for the caller.
fn open(
    face: &DataFace,
    principal: &Principal,
    app: &str,
    coll: &str,
    write: bool,
) -> ApiResult<Collection> {
    let spec = face.app(app)?;
    let caller = Caller::Client { principal, write };
    Ok(Collection::open(&spec, coll, caller, face.max_value_bytes)?)
}

impl From<DocError> for ApiError {
    fn from(e: DocError) -> Self {
        match e {
            DocError::Conflict(m) => ApiError(StatusCode::PRECONDITION_FAILED, m),
            DocError::Invalid(m) => ApiError::bad_request(m),
            DocError::Store(e) => e.into(),
        }
    }
}

/// Under the owner rule, the current document (which must be the user's)
/// and the version to write against, so a concurrent change conflicts.
async fn owned_current(
    face: &DataFace,
    app: &str,
    c: &Collection,
    id: &str,
    expected: Option<i64>,
) -> ApiResult<Option<i64>> {
    if c.owner().is_none() {
        return Ok(expected);
    }
    let current = face.store.doc_get(app, c.name(), id).await?;
    let version = match &current {
        Some(d) => {
            c.check_owner(id, &d.value())?;
            d.version
        }
        None => 0,
    };
    if expected.is_some_and(|e| e != version) {
        return Err(ApiError(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "document {}/{id} is at version {version}, not the expected one",
                c.name()
            ),
        ));
    }
    Ok(Some(version))
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
pub(crate) async fn get(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, coll, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let c = open(&face, &who, &app, &coll, false)?;
    match face.store.doc_get(&app, &coll, &id).await? {
        Some(d) => {
            c.check_owner(&id, &d.value())?;
            Ok(with_etag(d))
        }
        None => Err(ApiError::not_found(format!(
            "no document {coll}/{id} in app {app:?}"
        ))),
    }
}

/// `PUT /v1/apps/{app}/docs/{coll}/{id}` (body: a JSON object; `If-Match`
/// for optimistic concurrency).
pub(crate) async fn put(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, coll, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let c = open(&face, &who, &app, &coll, true)?;
    c.check_write(Some(&id), body.len())?;
    let mut body = body;
    if let Some((subject, field)) = c.owner() {
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
                    o.insert(field.to_string(), Value::String(subject.to_string()));
                }
            }
            Some(_) => c.check_owner(&id, &v)?,
        }
        body = v.to_string();
    }
    let expected = owned_current(&face, &app, &c, &id, expected_version(&headers)?).await?;
    let d = face
        .store
        .doc_put(&app, &coll, &id, &body, expected)
        .await?;
    Ok(with_etag(d))
}

/// `PATCH /v1/apps/{app}/docs/{coll}/{id}`: a JSON merge patch (RFC 7396).
pub(crate) async fn patch(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, coll, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let c = open(&face, &who, &app, &coll, true)?;
    c.check_write(Some(&id), body.len())?;
    if let Some((_, field)) = c.owner() {
        let patch: Value = serde_json::from_str(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the patch is not JSON: {e}"),
            )
        })?;
        // A patch may not hand the document to someone else (or drop its owner).
        let head = field.split('.').next().unwrap_or(field);
        if patch.get(head).is_some() {
            c.check_owner(&id, &patch)?;
        }
    }
    let expected = owned_current(&face, &app, &c, &id, expected_version(&headers)?).await?;
    if c.owner().is_some() && expected == Some(0) {
        return Err(ApiError::not_found(format!(
            "no document {coll}/{id} in app {app:?}"
        )));
    }
    let d = face
        .store
        .doc_patch(&app, &coll, &id, &body, expected, face.max_value_bytes)
        .await?;
    Ok(with_etag(d))
}

/// `DELETE /v1/apps/{app}/docs/{coll}/{id}`.
pub(crate) async fn delete(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, coll, id)): Path<(String, String, String)>,
) -> ApiResult<Json<Deleted>> {
    let c = open(&face, &who, &app, &coll, true)?;
    if c.owner().is_none() {
        let existed = face.store.doc_delete(&app, &coll, &id).await?;
        return Ok(Json(Deleted { deleted: existed }));
    }
    // Under the owner rule: delete the version that was checked, so a
    // document created or replaced meanwhile is not deleted unseen.
    match owned_current(&face, &app, &c, &id, None).await? {
        Some(0) | None => Ok(Json(Deleted { deleted: false })),
        Some(version) => {
            if face
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
pub(crate) async fn query(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, coll)): Path<(String, String)>,
    Query(x): Query<ExplainQuery>,
    body: String,
) -> ApiResult<impl axum::response::IntoResponse> {
    let c = open(&face, &who, &app, &coll, false)?;
    let mut q = DocQuery::parse(if body.trim().is_empty() { "{}" } else { &body })?;
    // Under the owner rule a query sees the user's documents only.
    if let Some((subject, field)) = c.owner() {
        q.filters.push((
            field.to_string(),
            nimbus_store::Op::Eq,
            Value::String(subject.to_string()),
        ));
    }
    let page = face.store.doc_query(&app, &coll, &q).await?;
    let plan = match x.explain {
        Some(true) => Some(face.store.doc_query_plan(&app, &coll, &q).await?),
        _ => None,
    };
    // Serialized straight from the stored text, never as a tree of values.
    Ok(Json(DocPage { plan, ..page }))
}

/// `POST /v1/apps/{app}/docs/{coll}` with a JSON array of objects, each
/// with an `"id"`: creates or replaces them all in one transaction.
pub(crate) async fn bulk(
    State(face): State<DataFace>,
    Extension(who): Extension<Principal>,
    Path((app, coll)): Path<(String, String)>,
    Json(docs): Json<Vec<Value>>,
) -> ApiResult<Json<Written>> {
    let c = open(&face, &who, &app, &coll, true)?;
    if c.owner().is_some() {
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
        c.check_write(Some(&id), text.len())?;
        items.push((id, text));
    }
    let n = face.store.doc_put_many(&app, &coll, &items).await?;
    Ok(Json(Written { written: n as u64 }))
}
