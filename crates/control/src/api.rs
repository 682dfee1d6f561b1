//! HTTP handlers of the control API for apps, their revisions and
//! functions, components, invocations and logs, and the node's status
//! (the routes and what each needs are in [`crate::routes`]).
//!
//! Deploy protocol: the CLI uploads each component once
//! (`HEAD`, then `PUT /v1/components/{sha256}`, streamed and hash-verified),
//! then posts the manifest with the function → hash map to
//! `/v1/apps/{app}/revisions`; `deploy` validates it at once (400 on a
//! bad request) and then answers with JSON lines of progress
//! ([`nimbus_api::DeployEvent`]) while it compiles, so the CLI can draw a
//! progress bar.

use crate::auth::Principal;
use crate::ctx::{ApiError, ApiResult, Ctx};
use crate::platform::DeployEvent;
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use nimbus_api::{
    Activated, AppDetail, AppSummary, Cluster, ClusterNode, ComponentStored, DeployRequest,
    FunctionSummary, Functions, NodeStatus, RevisionSummary, RollbackRequest, RouteSummary,
};
use nimbus_runtime::InvokeRequest;
use nimbus_store::{LogQuery, PutError};
use serde::Deserialize;

pub(crate) async fn status(State(ctx): State<Ctx>) -> Json<NodeStatus> {
    let rt = &ctx.platform.runtime;
    Json(NodeStatus {
        in_flight: rt.admission().in_flight() as u64,
        waiting: rt.admission().waiting() as u64,
        max_in_flight: rt.config().max_in_flight,
        loaded_components: rt.loaded_count() as u64,
        records_dropped: ctx.platform.records.dropped(),
        max_message_bytes: ctx.platform.events.max_message_bytes(),
    })
}

fn check_hash(hash: &str) -> ApiResult<()> {
    if nimbus_core::names::is_sha256_hex(hash) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{hash:?} is not a SHA-256 hex digest (64 lowercase hex digits)"),
        ))
    }
}

pub(crate) async fn component_exists(
    State(ctx): State<Ctx>,
    Path(hash): Path<String>,
) -> StatusCode {
    if nimbus_core::names::is_sha256_hex(&hash) && ctx.platform.components.contains(&hash) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

pub(crate) async fn upload_component(
    State(ctx): State<Ctx>,
    Path(hash): Path<String>,
    body: Body,
) -> ApiResult<Json<ComponentStored>> {
    check_hash(&hash)?;
    let limit = ctx.platform.max_component_bytes;
    let stream = body.into_data_stream();
    let size = ctx
        .platform
        .components
        .put_stream(&hash, limit, stream)
        .await
        .map_err(|e| {
            let status = match &e {
                PutError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                PutError::HashMismatch { .. } | PutError::Body(_) => StatusCode::BAD_REQUEST,
                PutError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError(status, e.to_string())
        })?;
    Ok(Json(ComponentStored { hash, size }))
}

/// The nodes sharing this node's database (admin): each with its last
/// heartbeat, and which one answered.
pub(crate) async fn cluster(State(ctx): State<Ctx>) -> ApiResult<Json<Cluster>> {
    let store = &ctx.platform.store;
    let live_after = nimbus_store::now_us() - nimbus_store::NODE_LIVE_FOR.as_micros() as i64;
    let nodes = store
        .nodes()
        .await?
        .into_iter()
        .map(|n| ClusterNode {
            live: n.seen_at_us > live_after,
            id: n.id,
            url: n.url,
            started_at_us: n.started_at_us,
            seen_at_us: n.seen_at_us,
        })
        .collect();
    Ok(Json(Cluster {
        node: store.node_id().to_string(),
        backend: match store.backend() {
            nimbus_store::Backend::Sqlite => "sqlite",
            nimbus_store::Backend::Postgres => "postgres",
        }
        .into(),
        nodes,
    }))
}

pub(crate) async fn list_apps(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Vec<AppSummary>>> {
    let table = ctx.platform.gateway.table();
    let rows = ctx.platform.store.apps().await?;
    // An app-limited key sees its own app only.
    let only = match &principal {
        Principal::Key(k) => k.app.clone(),
        _ => None,
    };
    Ok(Json(
        rows.into_iter()
            .filter(|a| only.as_ref().is_none_or(|o| *o == a.name))
            .map(|a| {
                let active = table.app(&a.name);
                AppSummary {
                    functions: active.map_or(0, |x| x.spec.functions.len()),
                    routes: active.map_or(0, |x| x.spec.routes.len()),
                    host: active.and_then(|x| x.spec.host.clone()),
                    name: a.name,
                    active_revision: a.active_revision,
                    updated_at_us: a.updated_at_us,
                }
            })
            .collect(),
    ))
}

pub(crate) async fn get_app(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<AppDetail>> {
    let row = ctx.platform.store.app(&app).await?;
    let spec = match row.active_revision {
        Some(n) => Some(ctx.platform.store.revision(&app, n).await?.spec),
        None => None,
    };
    Ok(Json(AppDetail {
        name: row.name,
        active_revision: row.active_revision,
        spec,
    }))
}

pub(crate) async fn delete_app(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    ctx.platform.delete(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_revisions(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<RevisionSummary>>> {
    let row = ctx.platform.store.app(&app).await?;
    let revs = ctx.platform.store.revisions(&app).await?;
    Ok(Json(
        revs.into_iter()
            .map(|r| RevisionSummary {
                active: Some(r.number) == row.active_revision,
                number: r.number,
                created_at_us: r.created_at_us,
                functions: r.spec.functions.keys().cloned().collect(),
                routes: r.spec.routes.len(),
            })
            .collect(),
    ))
}

/// Validates synchronously (400 on a bad request), then streams
/// [`DeployEvent`]s as JSON lines while compiling and activating.
pub(crate) async fn deploy(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(body): Json<DeployRequest>,
) -> ApiResult<Response> {
    let spec = ctx
        .platform
        .validate(&app, &body.manifest, &body.components)?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let platform = ctx.platform.clone();
    tokio::spawn(async move {
        if let Err(e) = platform.deploy(spec, body.manifest, tx.clone()).await {
            let _ = tx
                .send(DeployEvent::Error {
                    message: e.to_string(),
                })
                .await;
        }
    });
    let lines = tokio_stream_lines(rx);
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

fn tokio_stream_lines(
    rx: tokio::sync::mpsc::Receiver<DeployEvent>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).expect("events serialize");
        line.push(b'\n');
        Some((Ok(bytes::Bytes::from(line)), rx))
    })
}

pub(crate) async fn rollback(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Option<Json<RollbackRequest>>,
) -> ApiResult<Json<Activated>> {
    let target = body.map(|Json(b)| b).unwrap_or_default().revision;
    let active_revision = ctx.platform.rollback(&app, target).await?;
    Ok(Json(Activated {
        app,
        active_revision,
    }))
}

pub(crate) async fn list_functions(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<Functions>> {
    let table = ctx.platform.gateway.table();
    let active = table.app(&app).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("app {app:?} is not deployed: see `nimbus apps`"),
        )
    })?;
    let functions = active
        .spec
        .functions
        .iter()
        .map(|(name, f)| FunctionSummary {
            name: name.clone(),
            component: f.component.clone(),
            limits: f.limits,
            env: f.env.keys().cloned().collect(),
            allowed_outbound_hosts: f.allowed_outbound_hosts.clone(),
            routes: active
                .spec
                .routes
                .iter()
                .filter(|r| &r.function == name)
                .map(|r| RouteSummary {
                    path: r.path.clone(),
                    methods: r.methods.clone(),
                })
                .collect(),
            in_flight: active.functions.get(name).map_or(0, |x| x.in_flight()),
        })
        .collect();
    Ok(Json(Functions {
        app,
        revision: active.revision,
        host: active.spec.host.clone(),
        functions,
    }))
}

pub(crate) async fn invoke_root(
    State(ctx): State<Ctx>,
    Path((app, function)): Path<(String, String)>,
    req: Request,
) -> Response {
    invoke(ctx, app, function, String::new(), req).await
}

pub(crate) async fn invoke_path(
    State(ctx): State<Ctx>,
    Path((app, function, path)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    invoke(ctx, app, function, path, req).await
}

/// Calls a function directly, bypassing routes: the request (method,
/// headers, body, query) is passed on with the path after `/invoke`.
async fn invoke(ctx: Ctx, app: String, function: String, path: String, req: Request) -> Response {
    let table = ctx.platform.gateway.table();
    let Some(f) = table
        .app(&app)
        .and_then(|a| a.functions.get(&function))
        .cloned()
    else {
        return ApiError(
            StatusCode::NOT_FOUND,
            format!("no function {app}/{function} is deployed: see `nimbus functions {app}`"),
        )
        .into_response();
    };
    let caller = match req.extensions().get::<Principal>() {
        Some(Principal::Key(k)) => Some(nimbus_runtime::Caller {
            kind: "api_key",
            subject: k.name.clone(),
            claims: None,
        }),
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(header::AUTHORIZATION);
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri = format!("/{path}{query}");
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(e) => {
            return ApiError(
                StatusCode::BAD_REQUEST,
                format!("invalid path {uri:?}: {e}"),
            )
            .into_response();
        }
    };
    if nimbus_gateway::asynchronous::wants_async(&parts.headers) {
        let req = http::Request::from_parts(parts, body);
        return nimbus_gateway::asynchronous::accept(
            &ctx.platform.events,
            &f,
            req,
            None,
            &[],
            caller.as_ref(),
            None,
        )
        .await
        .map(Body::new);
    }
    let body = body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())));
    let req = http::Request::from_parts(parts, body);
    let meta = InvokeRequest {
        trigger: "invoke",
        caller,
        ..Default::default()
    };
    let resp = ctx.platform.runtime.invoke(&f, req, meta).await;
    let mut resp = resp.map(Body::new);
    if let Ok(v) = HeaderValue::from_str(&f.revision.to_string()) {
        resp.headers_mut().insert("nimbus-revision", v);
    }
    resp
}

#[derive(Deserialize)]
pub(crate) struct InvocationsQuery {
    function: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn list_invocations(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<InvocationsQuery>,
) -> ApiResult<Json<Vec<nimbus_store::InvocationRow>>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(
        ctx.platform
            .store
            .invocations(&app, q.function.as_deref(), None, limit)
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    function: Option<String>,
    invocation: Option<String>,
    after: Option<i64>,
    since_us: Option<i64>,
    limit: Option<i64>,
    grep: Option<String>,
}

pub(crate) async fn logs(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Vec<nimbus_core::LogEntry>>> {
    let query = LogQuery {
        app,
        function: q.function,
        invocation: q.invocation,
        after_seq: q.after.unwrap_or(0),
        since_us: q.since_us.unwrap_or(0),
        grep: q.grep.filter(|g| !g.is_empty()),
        limit: q.limit.unwrap_or(500).clamp(1, 5000),
    };
    Ok(Json(ctx.platform.store.logs(&query).await?))
}
