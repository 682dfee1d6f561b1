//! The control API of WebSocket connections: list an app's, send to one,
//! close one, publish to a channel. A connection or channel is found only
//! under its own app, so a key of one app reaches nothing of another's;
//! on PostgreSQL, on whichever node holds it.

use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use nimbus_realtime::{ConnectionInfo, Outgoing, SendError};
use serde::Deserialize;

/// The most connections one list answers.
const MAX_LISTED: usize = 10_000;

fn refused(e: SendError) -> ApiError {
    let status = match e {
        SendError::NotOpen { .. } => StatusCode::NOT_FOUND,
        SendError::SlowConsumer { .. } => StatusCode::GONE,
        SendError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        SendError::Invalid(_) => StatusCode::BAD_REQUEST,
        SendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError(status, e.to_string())
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<usize>,
}

/// `GET /v1/apps/{app}/connections[?limit=]`: the app's open connections
/// on every node, oldest first (at most `limit`, 1000 by default).
pub(crate) async fn list(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<ConnectionInfo>>> {
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_LISTED);
    let list = ctx.platform.gateway.realtime().list(&app, limit).await;
    Ok(Json(list.map_err(refused)?))
}

/// The body as a message: text when its `Content-Type` is text or JSON,
/// else binary.
fn message(headers: &HeaderMap, body: Bytes) -> ApiResult<Outgoing> {
    let text = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/") || t.starts_with("application/json"));
    if !text {
        return Ok(Outgoing::Binary(body));
    }
    String::from_utf8(body.to_vec()).map(Outgoing::text).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "the body is not UTF-8, which a text message must be: send it as application/octet-stream for a binary message".into(),
        )
    })
}

/// `POST /v1/apps/{app}/connections/{id}/messages`: the body, as a text
/// message when its `Content-Type` is text or JSON, else as a binary one.
pub(crate) async fn send(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let msg = message(&headers, body)?;
    let realtime = ctx.platform.gateway.realtime();
    realtime.send(&app, &id, msg).await.map_err(refused)?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /v1/apps/{app}/channels/{channel}/messages`: the body (as for a
/// send) to every connection of the app subscribed to the channel.
pub(crate) async fn publish(
    State(ctx): State<Ctx>,
    Path((app, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let msg = message(&headers, body)?;
    let realtime = ctx.platform.gateway.realtime();
    realtime
        .publish(&app, &channel, msg)
        .await
        .map_err(refused)?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
pub(crate) struct CloseQuery {
    code: Option<u16>,
    reason: Option<String>,
}

/// `DELETE /v1/apps/{app}/connections/{id}`: closes it (`?code=` 1000 or
/// 3000–4999, `?reason=` up to 123 bytes); its disconnect function runs.
pub(crate) async fn close(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
    Query(q): Query<CloseQuery>,
) -> ApiResult<StatusCode> {
    let code = q.code.unwrap_or(1000);
    let reason = q.reason.unwrap_or_default();
    ctx.platform
        .gateway
        .realtime()
        .close(&app, &id, code, &reason)
        .await
        .map_err(refused)?;
    Ok(StatusCode::ACCEPTED)
}
