//! The control API of WebSocket connections: list an app's, send to one,
//! close one. A connection is found only under its own app, so a key of
//! one app reaches nothing of another's.

use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use nimbus_realtime::{ConnectionInfo, Outgoing, SendError};
use serde::Deserialize;

fn refused(e: SendError) -> ApiError {
    let status = match e {
        SendError::NotOpen { .. } => StatusCode::NOT_FOUND,
        SendError::SlowConsumer { .. } => StatusCode::GONE,
    };
    ApiError(status, e.to_string())
}

/// `GET /v1/apps/{app}/connections`: the app's open connections on this node.
pub(crate) async fn list(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> Json<Vec<ConnectionInfo>> {
    Json(ctx.platform.gateway.realtime().list(&app))
}

/// `POST /v1/apps/{app}/connections/{id}/messages`: the body, as a text
/// message when its `Content-Type` is text or JSON, else as a binary one.
pub(crate) async fn send(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let realtime = ctx.platform.gateway.realtime();
    let limit = realtime.config().send_buffer_bytes;
    if body.len() > limit {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the message is {} bytes, over the {limit} bytes a connection may have waiting: send smaller messages",
                body.len()
            ),
        ));
    }
    let text = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/") || t.starts_with("application/json"));
    let msg = if text {
        Outgoing::Text(String::from_utf8(body.to_vec()).map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "the body is not UTF-8, which a text message must be: send it as application/octet-stream for a binary message".into(),
            )
        })?)
    } else {
        Outgoing::Binary(body)
    };
    realtime.send(&app, &id, msg).map_err(refused)?;
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
    if code != 1000 && !(3000..=4999).contains(&code) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("close code {code} is not one an app may send: use 1000, or 3000-4999"),
        ));
    }
    let reason = q.reason.unwrap_or_default();
    if reason.len() > 123 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "the close reason is {} bytes; a close frame carries at most 123",
                reason.len()
            ),
        ));
    }
    ctx.platform
        .gateway
        .realtime()
        .close(&app, &id, code, &reason)
        .map_err(refused)?;
    Ok(StatusCode::ACCEPTED)
}
