//! Replay: a failed invocation's kept input, and running it again against a
//! chosen revision, side by side with the original.
//!
//! The runtime keeps a failed invocation's input (see
//! `nimbus_runtime`'s `invoke` module); the record writer stores it in
//! `failed_inputs`, pruned with the records. `Platform::function_at`
//! prepares a non-active revision's function with its configuration.
//! `nimbus replay --local` builds a `Runtime` inside the CLI instead. Also
//! here: `GET /v1/traces/{id}`, a trace read back from the records and
//! their operation spans.

use crate::auth::Principal;
use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use nimbus_api::{
    InvocationRow, KeptInput, KeptInvocation, LogLine, ReplayRequest, Replayed, Run, Trace,
};
use nimbus_core::StoredInput;
use nimbus_store::LogQuery;
use std::sync::Arc;

/// Most response body bytes a replay returns.
const REPLAY_BODY_LIMIT: usize = 1 << 20;

fn not_kept(app: &str, id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "no input is kept for invocation {id} of app {app:?}: only failed invocations keep theirs (errors, traps, timeouts, 5xx), until their record is pruned"
        ),
    )
}

async fn kept_input(ctx: &Ctx, app: &str, id: &str) -> ApiResult<StoredInput> {
    ctx.platform
        .store
        .failed_input(app, id)
        .await?
        .ok_or_else(|| not_kept(app, id))
}

/// The stored input as the API shows it (the body base64-encoded).
fn kept(i: &StoredInput) -> KeptInput {
    KeptInput {
        method: i.method.clone(),
        path: i.path.clone(),
        headers: i.headers.clone(),
        body_base64: base64::engine::general_purpose::STANDARD.encode(&i.body),
        complete: i.complete,
    }
}

/// `GET /v1/invocations/{id}`: which app and function an invocation was
/// (for `nimbus replay ID`), if the caller's key reaches its app.
pub(crate) async fn find(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<InvocationRow>> {
    let row = ctx
        .platform
        .store
        .invocation_anywhere(&id)
        .await?
        .filter(|r| match &principal {
            Principal::Key(k) => k.allows(Some(&r.app), nimbus_identity::Scope::ReadLogs),
            _ => false,
        })
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no invocation {id} that this key can read"),
            )
        })?;
    Ok(Json(row))
}

/// `GET /v1/traces/{id}` (a trace id, or an invocation id of the trace):
/// the trace's invocations the caller's key may read, oldest first.
pub(crate) async fn trace(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Trace>> {
    let store = &ctx.platform.store;
    let trace_id =
        if nimbus_core::trace::TraceContext::parse(&format!("00-{id}-0000000000000001-01"))
            .is_some()
        {
            id.clone()
        } else {
            store
                .invocation_anywhere(&id)
                .await?
                .map(|r| r.trace_id)
                .ok_or_else(|| {
                    ApiError(
                        StatusCode::NOT_FOUND,
                        format!(
                            "{id:?} is neither a trace id (32 hex digits) nor a known invocation id"
                        ),
                    )
                })?
        };
    let visible = |app: &str| match &principal {
        Principal::Key(k) => k.allows(Some(app), nimbus_identity::Scope::ReadLogs),
        _ => false,
    };
    let spans: Vec<_> = store
        .trace(&trace_id)
        .await?
        .into_iter()
        .filter(|r| visible(&r.app))
        .collect();
    if spans.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no recorded invocation of trace {trace_id} that this key can read"),
        ));
    }
    // Guests' operations (KV, documents, objects, sends), under the
    // invocations this key may read.
    let seen: std::collections::HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let operations: Vec<_> = store
        .trace_ops(&trace_id)
        .await?
        .into_iter()
        .filter(|o| seen.contains(o.invocation_id.as_str()))
        .collect();
    Ok(Json(Trace {
        trace_id,
        spans,
        operations,
    }))
}

/// `GET /v1/apps/{app}/invocations/{id}/input`.
pub(crate) async fn input(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<KeptInvocation>> {
    let input = kept_input(&ctx, &app, &id).await?;
    let original = ctx.platform.store.invocation(&app, &id).await?;
    let revision = original.as_ref().map(|o| o.revision);
    let spec = match revision {
        Some(n) => Some(ctx.platform.store.revision(&app, n).await?.spec),
        None => None,
    };
    let function = original
        .as_ref()
        .and_then(|o| spec?.functions.remove(&o.function));
    Ok(Json(KeptInvocation {
        input: kept(&input),
        original,
        function,
    }))
}

async fn logs_of(ctx: &Ctx, app: &str, id: &str) -> ApiResult<Vec<LogLine>> {
    let entries = ctx
        .platform
        .store
        .logs(&LogQuery {
            app: app.to_string(),
            invocation: Some(id.to_string()),
            limit: 1000,
            ..Default::default()
        })
        .await?;
    Ok(entries
        .into_iter()
        .map(|e| LogLine {
            stream: e.stream,
            text: e.text,
        })
        .collect())
}

/// `POST /v1/apps/{app}/invocations/{id}/replay` with `{"revision": N}`:
/// runs the kept input again and answers both outcomes and their logs.
pub(crate) async fn replay(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
    body: Option<Json<ReplayRequest>>,
) -> ApiResult<Json<Replayed>> {
    let Json(body) = body.unwrap_or_default();
    let input = kept_input(&ctx, &app, &id).await?;
    let original = ctx
        .platform
        .store
        .invocation(&app, &id)
        .await?
        .ok_or_else(|| not_kept(&app, &id))?;
    let function: Arc<nimbus_runtime::Function> = ctx
        .platform
        .function_at(&app, body.revision, &original.function)
        .await?;
    let req = nimbus_runtime::replay_request(&input)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let meta = nimbus_runtime::InvokeRequest {
        trigger: "replay",
        ..Default::default()
    };
    let resp = ctx.platform.runtime.invoke(&function, req, meta).await;
    let status = resp.status().as_u16();
    let replay_id = resp
        .headers()
        .get(nimbus_runtime::INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match http_body_util::Limited::new(resp.into_body(), REPLAY_BODY_LIMIT)
        .collect()
        .await
    {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => format!("(the response body failed: {e})"),
    };
    ctx.platform.records.flush().await;
    let record = ctx.platform.store.invocation(&app, &replay_id).await?;
    Ok(Json(Replayed {
        original: Run {
            logs: logs_of(&ctx, &app, &id).await?,
            invocation_id: Some(id),
            revision: Some(original.revision),
            status: original.status,
            outcome: Some(original.outcome),
            error: original.error,
            body: None,
        },
        replay: Run {
            logs: logs_of(&ctx, &app, &replay_id).await?,
            invocation_id: Some(replay_id),
            revision: Some(function.revision),
            status,
            outcome: record.as_ref().map(|r| r.outcome),
            error: record.and_then(|r| r.error),
            body: Some(body),
        },
        input_complete: input.complete,
    }))
}
