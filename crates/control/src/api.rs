//! HTTP handlers of the control API.

use crate::auth::{self, Principal};
use crate::ctx::{ApiError, ApiResult, Ctx};
use crate::data_api;
use crate::events_api;
use crate::platform::{DeployEvent, Platform};
use crate::usage_api;
use crate::users_api;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::{Json, Router};
use http_body_util::BodyExt;
use nimbus_runtime::InvokeRequest;
use nimbus_store::{LogQuery, PutError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The control API router (paths under `/v1/`). Every request passes
/// [`auth::authenticate`] first.
pub fn router(platform: Arc<Platform>) -> Router {
    let ctx = Ctx { platform };
    let protected = Router::new()
        .route(
            "/v1/keys",
            get(users_api::list_keys).post(users_api::create_key),
        )
        .route("/v1/keys/{name}", delete(users_api::revoke_key))
        .route("/v1/keys/s3/{access_key}", delete(data_api::revoke_s3_key))
        .route("/v1/usage", get(usage_api::platform_usage))
        .route("/v1/cluster", get(cluster))
        .route("/v1/metrics", get(crate::metrics::scrape))
        .route("/v1/invocations/{id}", get(crate::replay_api::find))
        .route("/v1/traces/{id}", get(crate::replay_api::trace))
        .route(
            "/v1/apps/{app}/invocations/{id}/input",
            get(crate::replay_api::input),
        )
        .route(
            "/v1/apps/{app}/invocations/{id}/replay",
            post(crate::replay_api::replay),
        )
        .route("/v1/apps/{app}/usage", get(usage_api::app_usage))
        .route("/v1/apps/{app}/auth/signup", post(users_api::signup))
        .route("/v1/apps/{app}/auth/login", post(users_api::login))
        .route("/v1/apps/{app}/auth/refresh", post(users_api::refresh))
        .route("/v1/apps/{app}/auth/logout", post(users_api::logout))
        .route(
            "/v1/apps/{app}/auth/me",
            get(users_api::me).delete(users_api::delete_me),
        )
        .route(
            "/v1/apps/{app}/auth/password",
            post(users_api::change_password),
        )
        .route(
            "/v1/apps/{app}/auth/password-reset",
            post(users_api::request_reset),
        )
        .route(
            "/v1/apps/{app}/auth/password-reset/confirm",
            post(users_api::confirm_reset),
        )
        .route("/v1/apps/{app}/auth/jwks.json", get(users_api::jwks))
        .route(
            "/v1/apps/{app}/auth/rotate-keys",
            post(users_api::rotate_keys),
        )
        .route(
            "/v1/apps/{app}/users",
            get(users_api::list_users).post(users_api::create_user),
        )
        .route(
            "/v1/apps/{app}/users/{id}",
            get(users_api::get_user).delete(users_api::delete_user),
        )
        .route("/v1/apps/{app}/users/{id}/roles", put(users_api::set_roles))
        .route("/v1/status", get(status))
        .route(
            "/v1/components/{hash}",
            put(upload_component).head(component_exists),
        )
        .route("/v1/apps", get(list_apps))
        .route("/v1/apps/{app}", get(get_app).delete(delete_app))
        .route("/v1/apps/{app}/revisions", get(list_revisions).post(deploy))
        .route("/v1/apps/{app}/rollback", post(rollback))
        .route("/v1/apps/{app}/functions", get(list_functions))
        .route(
            "/v1/apps/{app}/functions/{function}/invoke",
            any(invoke_root),
        )
        .route(
            "/v1/apps/{app}/functions/{function}/invoke/{*path}",
            any(invoke_path),
        )
        .route("/v1/apps/{app}/invocations", get(list_invocations))
        .route(
            "/v1/apps/{app}/invocations/{id}",
            get(events_api::get_invocation),
        )
        .route("/v1/apps/{app}/events", get(events_api::list_events))
        .route("/v1/apps/{app}/kv/{store}", get(data_api::kv_list))
        .route(
            "/v1/apps/{app}/kv/{store}/{*key}",
            get(data_api::kv_get)
                .put(data_api::kv_put)
                .delete(data_api::kv_delete)
                .post(data_api::kv_op),
        )
        .route("/v1/apps/{app}/docs/{coll}", post(data_api::doc_bulk))
        .route(
            "/v1/apps/{app}/docs/{coll}/_query",
            post(data_api::doc_query),
        )
        .route(
            "/v1/apps/{app}/docs/{coll}/{id}",
            get(data_api::doc_get)
                .put(data_api::doc_put)
                .patch(data_api::doc_patch)
                .delete(data_api::doc_delete),
        )
        .route("/v1/apps/{app}/keys/s3", post(data_api::create_s3_key))
        .route("/v1/apps/{app}/config", get(data_api::config_list))
        .route(
            "/v1/apps/{app}/config/{key}",
            put(data_api::config_put).delete(data_api::config_delete),
        )
        .route(
            "/v1/apps/{app}/secrets/{key}",
            put(data_api::secret_put).delete(data_api::config_delete),
        )
        .route("/v1/apps/{app}/queues", get(events_api::depths))
        .route(
            "/v1/apps/{app}/queues/{queue}/messages",
            post(events_api::send),
        )
        .route(
            "/v1/apps/{app}/topics/{topic}/messages",
            post(events_api::publish),
        )
        .route(
            "/v1/apps/{app}/functions/{function}/dlq",
            get(events_api::dlq_list),
        )
        .route(
            "/v1/apps/{app}/functions/{function}/dlq/redrive",
            post(events_api::dlq_redrive),
        )
        .route(
            "/v1/apps/{app}/functions/{function}/dlq/purge",
            post(events_api::dlq_purge),
        )
        .route(
            "/v1/apps/{app}/functions/{function}/dlq/{id}",
            get(events_api::dlq_show),
        )
        .route("/v1/apps/{app}/logs", get(logs))
        .route(
            "/v1/health",
            get(|| async { Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })) }),
        );
    Router::new()
        .merge(protected)
        .merge(crate::console::router())
        .fallback(|req: Request| async move {
            ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "no control API endpoint {} {}",
                    req.method(),
                    req.uri().path()
                ),
            )
        })
        .layer(middleware::from_fn_with_state(ctx.clone(), meter_clients))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            auth::authenticate,
        ))
        .with_state(ctx)
}

/// The part of the control API served on the apps' listener, for app
/// pages ([`auth::client_facing`]): on a host that an app owns, only that
/// app's endpoints. The rest is served only by [`router`] on the control
/// listener, so no app's code shares an origin with the console or with
/// the requests that carry operators' keys.
pub fn client_router(platform: Arc<Platform>) -> Router {
    let ctx = Ctx::new(platform.clone());
    router(platform).layer(middleware::from_fn_with_state(ctx, app_door))
}

/// The largest request body of a client-facing call: axum's default body
/// limit, which the handlers' extractors apply anyway.
const CLIENT_BODY_LIMIT: usize = 2 << 20;

fn unread_body(e: axum::Error) -> ApiError {
    let too_large = std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .any(|e| e.is::<http_body_util::LengthLimitError>());
    if too_large {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over {} MiB, the most a client call may send: store larger data as an object",
                CLIENT_BODY_LIMIT >> 20
            ),
        )
    } else {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        )
    }
}

async fn app_door(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let table = ctx.platform.gateway.table();
    let owner =
        nimbus_gateway::request_host(&req).and_then(|h| table.host_owner(&h).map(String::from));
    match auth::client_facing(req.uri().path()) {
        Some(None) => return next.run(req).await,
        Some(Some(app)) if owner.is_none_or(|o| o == app) => {
            if table.app(&app).is_none() {
                // Answered not found: nothing to share, and naming apps
                // that do not exist must not count as apps present.
                return next.run(req).await;
            }
            // The app's data and user-pool calls take its share of the CPU
            // as its guests do (see nimbus_runtime::FairCpu): their work
            // runs on other threads (the rows SQLite reads, the password
            // hashing), so the call holds one of its app's turns while its
            // handler runs. Only then: the body is read first and the
            // answer sent after, so a slow client holds no turn.
            let (parts, body) = req.into_parts();
            let body = match axum::body::to_bytes(body, CLIENT_BODY_LIMIT).await {
                Ok(b) => b,
                Err(e) => return unread_body(e).into_response(),
            };
            let req = Request::from_parts(parts, axum::body::Body::from(body));
            let _turn = ctx.platform.runtime.fair.turn(Arc::from(app)).await;
            return next.run(req).await;
        }
        _ => {}
    }
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "{} {} is not served on app origins: the console and the control API have a listener of their own (`nimbus up --control-listen`, by default on loopback at the app port + 1; `nimbus` commands find it in the data dir)",
            req.method(),
            req.uri().path()
        ),
    )
    .into_response()
}

/// The app (percent-decoded, as the router reads it) and service of a
/// client's KV or document call (`/v1/apps/APP/kv/...`,
/// `/v1/apps/APP/docs/...`).
fn data_call(path: &str) -> Option<(String, nimbus_core::Service)> {
    let (app, rest) = path.strip_prefix("/v1/apps/")?.split_once('/')?;
    let service = match rest.split_once('/')?.0 {
        "kv" => nimbus_core::Service::Kv,
        "docs" => nimbus_core::Service::Docs,
        _ => return None,
    };
    let app = percent_encoding::percent_decode_str(app)
        .decode_utf8()
        .ok()?;
    Some((app.into_owned(), service))
}

/// Meters clients' KV and document calls that the store answered — a
/// success, or a conflict with the expected value or version (409, 412) —
/// as one operation of their app each. Refusals (401, 403), bad requests
/// and not-found answers are not metered: they may come before the caller
/// was authorized, and must not let anyone add to an app's bill.
async fn meter_clients(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let call = data_call(req.uri().path());
    let resp = next.run(req).await;
    if let Some((app, service)) = call {
        let s = resp.status();
        if s.is_success() || matches!(s, StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED) {
            ctx.platform.records.meter(&app, service, 1);
        }
    }
    resp
}

async fn status(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    let rt = &ctx.platform.runtime;
    Json(json!({
        "in_flight": rt.admission().in_flight(),
        "waiting": rt.admission().waiting(),
        "max_in_flight": rt.config().max_in_flight,
        "loaded_components": rt.loaded_count(),
        "records_dropped": ctx.platform.records.dropped(),
        "max_message_bytes": ctx.platform.events.max_message_bytes(),
    }))
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

async fn component_exists(State(ctx): State<Ctx>, Path(hash): Path<String>) -> StatusCode {
    if nimbus_core::names::is_sha256_hex(&hash) && ctx.platform.components.contains(&hash) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn upload_component(
    State(ctx): State<Ctx>,
    Path(hash): Path<String>,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
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
    Ok(Json(json!({ "hash": hash, "size": size })))
}

#[derive(Serialize)]
struct AppSummary {
    name: String,
    active_revision: Option<i64>,
    host: Option<String>,
    functions: usize,
    routes: usize,
    updated_at_us: i64,
}

/// The nodes sharing this node's database (admin): each with its last
/// heartbeat, and which one answered.
async fn cluster(State(ctx): State<Ctx>) -> ApiResult<Json<serde_json::Value>> {
    let store = &ctx.platform.store;
    let live_after = nimbus_store::now_us() - nimbus_store::NODE_LIVE_FOR.as_micros() as i64;
    let nodes: Vec<serde_json::Value> = store
        .nodes()
        .await?
        .into_iter()
        .map(|n| {
            let live = n.seen_at_us > live_after;
            let mut v = json!(n);
            v["live"] = json!(live);
            v
        })
        .collect();
    Ok(Json(json!({
        "node": store.node_id(),
        "backend": match store.backend() {
            nimbus_store::Backend::Sqlite => "sqlite",
            nimbus_store::Backend::Postgres => "postgres",
        },
        "nodes": nodes,
    })))
}

async fn list_apps(
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

async fn get_app(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let row = ctx.platform.store.app(&app).await?;
    let spec = match row.active_revision {
        Some(n) => Some(ctx.platform.store.revision(&app, n).await?.spec),
        None => None,
    };
    Ok(Json(
        json!({ "name": row.name, "active_revision": row.active_revision, "spec": spec }),
    ))
}

async fn delete_app(State(ctx): State<Ctx>, Path(app): Path<String>) -> ApiResult<StatusCode> {
    ctx.platform.delete(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct RevisionSummary {
    number: i64,
    active: bool,
    created_at_us: i64,
    functions: Vec<String>,
    routes: usize,
}

async fn list_revisions(
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

#[derive(Deserialize)]
struct DeployBody {
    manifest: String,
    components: BTreeMap<String, String>,
}

/// Validates synchronously (400 on a bad request), then streams
/// [`DeployEvent`]s as JSON lines while compiling and activating.
async fn deploy(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(body): Json<DeployBody>,
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

#[derive(Deserialize, Default)]
struct RollbackBody {
    revision: Option<i64>,
}

async fn rollback(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Option<Json<RollbackBody>>,
) -> ApiResult<Json<serde_json::Value>> {
    let target = body.map(|Json(b)| b).unwrap_or_default().revision;
    let revision = ctx.platform.rollback(&app, target).await?;
    Ok(Json(json!({ "app": app, "active_revision": revision })))
}

async fn list_functions(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let table = ctx.platform.gateway.table();
    let active = table.app(&app).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("app {app:?} is not deployed: see `nimbus apps`"),
        )
    })?;
    let functions: Vec<_> = active
        .spec
        .functions
        .iter()
        .map(|(name, f)| {
            let routes: Vec<_> = active
                .spec
                .routes
                .iter()
                .filter(|r| &r.function == name)
                .map(|r| json!({ "path": r.path, "methods": r.methods }))
                .collect();
            json!({
                "name": name,
                "component": f.component,
                "limits": f.limits,
                "env": f.env.keys().collect::<Vec<_>>(),
                "allowed_outbound_hosts": f.allowed_outbound_hosts,
                "routes": routes,
                "in_flight": active.functions.get(name).map_or(0, |x| x.in_flight()),
            })
        })
        .collect();
    Ok(Json(
        json!({ "app": app, "revision": active.revision, "host": active.spec.host, "functions": functions }),
    ))
}

async fn invoke_root(
    State(ctx): State<Ctx>,
    Path((app, function)): Path<(String, String)>,
    req: Request,
) -> Response {
    invoke(ctx, app, function, String::new(), req).await
}

async fn invoke_path(
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
struct InvocationsQuery {
    function: Option<String>,
    limit: Option<i64>,
}

async fn list_invocations(
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
struct LogsQuery {
    function: Option<String>,
    invocation: Option<String>,
    after: Option<i64>,
    since_us: Option<i64>,
    limit: Option<i64>,
    grep: Option<String>,
}

async fn logs(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_calls_are_recognised() {
        use nimbus_core::Service;
        let call = data_call;
        assert_eq!(call("/v1/apps/a/kv/s/k"), Some(("a".into(), Service::Kv)));
        assert_eq!(
            call("/v1/apps/a/docs/c/_query"),
            Some(("a".into(), Service::Docs))
        );
        assert_eq!(
            call("/v1/apps/st%6Fred/kv/s/k"),
            Some(("stored".into(), Service::Kv)),
            "decoded as the router decodes it"
        );
        assert_eq!(call("/v1/apps/a/kv"), None);
        assert_eq!(call("/v1/apps/a/logs"), None);
        assert_eq!(call("/hello"), None);
    }
}
