//! Control API for events: send to queues, publish to topics, queue depths,
//! event status with its attempts, and dead-letter queues.

use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use nimbus_api::{
    ChannelStatus, DeadLetters, EventDetail, InvocationLookup, MessageRow, Published, Purged,
    QueueDepths, Redriven, Sent,
};
use nimbus_events::{EventError, Outgoing};
use nimbus_store::ChannelDepth;
use serde::Deserialize;

/// An events engine refusal, answered.
pub(crate) fn event_error(e: EventError) -> ApiError {
    {
        let status = match &e {
            EventError::NotFound(_) => StatusCode::NOT_FOUND,
            EventError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EventError::Invalid(_) => StatusCode::BAD_REQUEST,
            EventError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

fn too_large(ctx: &Ctx, len: usize) -> ApiResult<()> {
    let limit = ctx.platform.events.max_message_bytes();
    if len as u64 > limit {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the message is {len} bytes, over this server's limit of {limit} bytes (--max-message-kb)"
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/apps/{app}/queues/{queue}/messages`: the body is the payload;
/// `content-type`, `ce-*`, `idempotency-key` and `nimbus-message-group`
/// headers describe it. 202 once it is stored.
pub(crate) async fn send(
    State(ctx): State<Ctx>,
    Path((app, queue)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    too_large(&ctx, body.len())?;
    let msg = Outgoing::from_headers(&headers, body.to_vec()).map_err(event_error)?;
    let r = ctx
        .platform
        .events
        .send(&app, &queue, msg)
        .await
        .map_err(event_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Sent {
            id: r.id,
            duplicate: r.duplicate,
        }),
    ))
}

/// `POST /v1/apps/{app}/topics/{topic}/messages`: one copy per subscriber.
pub(crate) async fn publish(
    State(ctx): State<Ctx>,
    Path((app, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    too_large(&ctx, body.len())?;
    let msg = Outgoing::from_headers(&headers, body.to_vec()).map_err(event_error)?;
    let copies = ctx
        .platform
        .events
        .publish(&app, &topic, msg)
        .await
        .map_err(event_error)?;
    let ids: Vec<_> = copies.into_iter().map(|r| r.id).collect();
    Ok((StatusCode::ACCEPTED, Json(Published { ids })))
}

/// `GET /v1/apps/{app}/queues`: every channel with unfinished messages or a
/// consumer, with its depth by state.
pub(crate) async fn depths(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<QueueDepths>> {
    let table = ctx.platform.gateway.table();
    let active = table.app(&app).cloned();
    let mut depths = ctx.platform.events.store().channel_depths(&app).await?;
    // The depth of `channel`, taken out of `depths` (zero if it has none).
    let mut take = |channel: String| match depths.iter().position(|d| d.channel == channel) {
        Some(i) => depths.remove(i),
        None => ChannelDepth {
            channel,
            ..Default::default()
        },
    };
    let status = |d: ChannelDepth, function: Option<String>| ChannelStatus {
        channel: d.channel,
        function,
        queued: d.queued,
        running: d.running,
        failed: d.failed,
        dead: d.dead,
    };
    let mut channels = Vec::new();
    if let Some(a) = &active {
        for c in a.spec.consumers() {
            channels.push(status(take(c.channel.to_string()), Some(c.function)));
        }
        // Queues without a consumer.
        for q in a.spec.queues.keys() {
            let name = format!("queue:{q}");
            if !channels.iter().any(|c| c.channel == name) {
                channels.push(status(take(name), None));
            }
        }
    }
    // Channels of a previous revision.
    channels.extend(depths.into_iter().map(|d| status(d, None)));
    Ok(Json(QueueDepths { app, channels }))
}

/// An event with its payload and its attempts.
async fn event_detail(
    store: &nimbus_store::Store,
    app: &str,
    message: MessageRow,
) -> ApiResult<EventDetail> {
    let body = store.message_body(app, &message.id).await?;
    let invocations = store
        .invocations(app, None, Some(&message.id), 1000)
        .await?;
    let (body, body_base64) = match String::from_utf8(body) {
        Ok(text) => (Some(text), None),
        Err(e) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
        ),
    };
    Ok(EventDetail {
        message,
        body,
        body_base64,
        invocations,
    })
}

/// `GET /v1/apps/{app}/invocations/{id}`: an event with its state and
/// attempts, or a plain invocation.
pub(crate) async fn get_invocation(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<InvocationLookup>> {
    let store = ctx.platform.events.store();
    match store.message(&app, &id).await {
        Ok(row) => Ok(Json(InvocationLookup::Event(
            event_detail(store, &app, row).await?,
        ))),
        Err(nimbus_store::StoreError::NotFound(_)) => {
            let inv = store
                .invocation(&app, &id)
                .await?
                .ok_or_else(|| {
                    ApiError(
                        StatusCode::NOT_FOUND,
                        format!("app {app:?} has no invocation or event {id:?} (records are kept for a limited time)"),
                    )
                })?;
            Ok(Json(InvocationLookup::Invocation(inv)))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    function: Option<String>,
    state: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

const STATES: [&str; 5] = ["queued", "running", "failed", "succeeded", "dead"];

fn check_state(s: &str) -> ApiResult<()> {
    if STATES.contains(&s) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown state {s:?}: use one of {}", STATES.join(", ")),
        ))
    }
}

/// `GET /v1/apps/{app}/events?state=&function=&after=&limit=`.
pub(crate) async fn list_events(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<MessageRow>>> {
    let state = q.state.as_deref().unwrap_or("queued");
    check_state(state)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(
        ctx.platform
            .events
            .store()
            .messages_in_state(
                &app,
                q.function.as_deref(),
                state,
                q.after.as_deref(),
                limit,
            )
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    after: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/apps/{app}/functions/{function}/dlq`.
pub(crate) async fn dlq_list(
    State(ctx): State<Ctx>,
    Path((app, function)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Vec<MessageRow>>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(
        ctx.platform
            .events
            .store()
            .messages_in_state(&app, Some(&function), "dead", q.after.as_deref(), limit)
            .await?,
    ))
}

/// `GET /v1/apps/{app}/functions/{function}/dlq/{id}`: with its body.
pub(crate) async fn dlq_show(
    State(ctx): State<Ctx>,
    Path((app, function, id)): Path<(String, String, String)>,
) -> ApiResult<Json<EventDetail>> {
    let store = ctx.platform.events.store();
    let row = store.message(&app, &id).await?;
    if row.state != "dead" || row.function.as_deref() != Some(function.as_str()) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "event {id:?} is not in the dead-letter queue of {app}/{function} (it is {})",
                row.state
            ),
        ));
    }
    Ok(Json(event_detail(store, &app, row).await?))
}

/// `POST /v1/apps/{app}/functions/{function}/dlq/redrive` `{"ids": [...]}`
/// (all when absent): back to their queues with a fresh attempt count.
pub(crate) async fn dlq_redrive(
    State(ctx): State<Ctx>,
    Path((app, function)): Path<(String, String)>,
    body: Option<Json<DeadLetters>>,
) -> ApiResult<Json<Redriven>> {
    let ids = body.and_then(|Json(b)| b.ids);
    let redriven = ctx
        .platform
        .events
        .redrive(&app, &function, ids.as_deref())
        .await
        .map_err(event_error)?;
    Ok(Json(Redriven { redriven }))
}

/// `POST /v1/apps/{app}/functions/{function}/dlq/purge` `{"ids": [...]}`
/// (all when absent): deleted for good.
pub(crate) async fn dlq_purge(
    State(ctx): State<Ctx>,
    Path((app, function)): Path<(String, String)>,
    body: Option<Json<DeadLetters>>,
) -> ApiResult<Json<Purged>> {
    let ids = body.and_then(|Json(b)| b.ids);
    let purged = ctx
        .platform
        .events
        .store()
        .purge_dead(&app, &function, ids.as_deref())
        .await?;
    Ok(Json(Purged { purged }))
}
