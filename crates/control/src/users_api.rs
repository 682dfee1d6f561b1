//! Control API for identity: the client-facing user pool endpoints
//! (`/v1/apps/{app}/auth/...`), user administration, and API keys.

use crate::auth::Principal;
use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use nimbus_api::{ApiKey, CreatedKey, KeyList, KeyRotated, NewKey, NewUser, S3Key, User, UserList};
use nimbus_core::policy::AuthSpec;
use nimbus_gateway::ClientIp;
use nimbus_identity::{Claims, IdentityError, Scope, Session};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;

/// An error of an endpoint that may be rate-limited: a `429` carries
/// `Retry-After`.
pub(crate) enum AuthError {
    Api(ApiError),
    Identity(IdentityError),
}

impl From<ApiError> for AuthError {
    fn from(e: ApiError) -> Self {
        AuthError::Api(e)
    }
}

impl From<IdentityError> for AuthError {
    fn from(e: IdentityError) -> Self {
        AuthError::Identity(e)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match self {
            AuthError::Api(e) => e.into_response(),
            AuthError::Identity(IdentityError::TooMany {
                message,
                retry_after,
            }) => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let mut r = ApiError(StatusCode::TOO_MANY_REQUESTS, message).into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                r
            }
            AuthError::Identity(e) => ApiError::from(e).into_response(),
        }
    }
}

type AuthResult<T> = Result<T, AuthError>;

/// The user pool settings of a deployed app.
fn pool(ctx: &Ctx, app: &str) -> ApiResult<AuthSpec> {
    let table = ctx.platform.gateway.table();
    let active = table.app(app).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("app {app:?} is not deployed"),
        )
    })?;
    active.spec.auth.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("app {app:?} has no user pool: add an [auth] table to its nimbus.toml"),
        )
    })
}

fn ip(ext: &Option<Extension<ClientIp>>) -> Option<IpAddr> {
    ext.as_ref().map(|Extension(ClientIp(ip))| *ip)
}

/// The signed-in user of a client request.
fn user(principal: &Principal, app: &str) -> ApiResult<Arc<Claims>> {
    match principal {
        Principal::User(c) => Ok(c.clone()),
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            format!(
                "send the user's valid access token (it is missing, expired or invalid): `Authorization: Bearer ACCESS_TOKEN` (from /v1/apps/{app}/auth/login or /refresh)"
            ),
        )),
    }
}

fn session(status: StatusCode, s: Session) -> Response {
    let mut r = (status, Json(s)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
pub(crate) struct Credentials {
    email: String,
    password: String,
}

/// `POST /v1/apps/{app}/auth/signup`.
pub(crate) async fn signup(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    client: Option<Extension<ClientIp>>,
    Json(c): Json<Credentials>,
) -> AuthResult<Response> {
    let spec = pool(&ctx, &app)?;
    let s = ctx
        .platform
        .users
        .signup(&app, &spec, &c.email, &c.password, ip(&client))
        .await?;
    Ok(session(StatusCode::CREATED, s))
}

/// `POST /v1/apps/{app}/auth/login`.
pub(crate) async fn login(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    client: Option<Extension<ClientIp>>,
    Json(c): Json<Credentials>,
) -> AuthResult<Response> {
    let spec = pool(&ctx, &app)?;
    let s = ctx
        .platform
        .users
        .login(&app, &spec, &c.email, &c.password, ip(&client))
        .await?;
    Ok(session(StatusCode::OK, s))
}

#[derive(Deserialize)]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

/// `POST /v1/apps/{app}/auth/refresh`.
pub(crate) async fn refresh(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(b): Json<RefreshBody>,
) -> ApiResult<Response> {
    let spec = pool(&ctx, &app)?;
    let s = ctx
        .platform
        .users
        .refresh(&app, &spec, &b.refresh_token)
        .await?;
    Ok(session(StatusCode::OK, s))
}

#[derive(Deserialize)]
pub(crate) struct LogoutBody {
    refresh_token: String,
    /// End every session of the account, access tokens included.
    #[serde(default)]
    everywhere: bool,
}

/// `POST /v1/apps/{app}/auth/logout`: revokes the refresh token; with
/// `"everywhere": true`, ends every session of the account (its access
/// tokens stop working at once, on every node).
pub(crate) async fn logout(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(b): Json<LogoutBody>,
) -> ApiResult<StatusCode> {
    pool(&ctx, &app)?;
    if b.everywhere {
        ctx.platform
            .users
            .logout_everywhere(&app, &b.refresh_token)
            .await?;
    } else {
        ctx.platform.users.logout(&app, &b.refresh_token).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/apps/{app}/auth/me`.
pub(crate) async fn me(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Response> {
    let c = user(&principal, &app)?;
    let u = ctx.platform.users.get(&app, &c.subject).await?;
    Ok(Json(u).into_response())
}

#[derive(Deserialize)]
pub(crate) struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// `POST /v1/apps/{app}/auth/password`: changes the password; every other
/// session ends and a new one is returned.
pub(crate) async fn change_password(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Extension(principal): Extension<Principal>,
    Json(b): Json<PasswordBody>,
) -> AuthResult<Response> {
    let c = user(&principal, &app)?;
    let spec = pool(&ctx, &app)?;
    let s = ctx
        .platform
        .users
        .change_password(
            &app,
            &spec,
            &c.subject,
            &b.current_password,
            &b.new_password,
        )
        .await?;
    Ok(session(StatusCode::OK, s))
}

#[derive(Deserialize)]
pub(crate) struct ResetRequest {
    email: String,
}

/// Attempts at delivering a reset token, and the pauses between them.
const RESET_DELIVERY_BACKOFF: [u64; 3] = [0, 1, 5];

/// Calls the reset hook with the token (a JSON body), retrying a few times.
/// The token is handed over in memory only: it is never stored in clear, so
/// it does not go through the event store (whose bodies the API shows).
/// No replay input is kept of it, and the token is redacted from its logs
/// (`InvokeRequest::secret`).
async fn deliver_reset(
    ctx: Ctx,
    function: Arc<nimbus_runtime::Function>,
    body: String,
    token: String,
) {
    for (attempt, pause) in RESET_DELIVERY_BACKOFF.iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_secs(*pause)).await;
        let req = http::Request::post("/auth/password-reset")
            .header(header::CONTENT_TYPE, "application/json")
            .body(
                http_body_util::Full::new(bytes::Bytes::from(body.clone())).map_err(
                    |never: std::convert::Infallible| -> wasmtime_wasi_http::Error {
                        match never {}
                    },
                ),
            )
            .expect("a static request is valid");
        let meta = nimbus_runtime::InvokeRequest {
            trigger: "auth",
            patient: true,
            secret: Some(token.clone()),
            ..Default::default()
        };
        let resp = ctx.platform.runtime.invoke(&function, req, meta).await;
        let status = resp.status();
        let done = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .is_ok();
        if status.is_success() && done {
            return;
        }
        tracing::warn!(
            function = %function,
            %status,
            attempt = attempt + 1,
            "the password-reset hook failed"
        );
    }
    tracing::error!(function = %function, "the password-reset hook failed every attempt: the user must ask again");
}

/// `POST /v1/apps/{app}/auth/password-reset`: if the account exists, a
/// one-time token goes to the app's `reset_hook` function (a `POST` with a
/// JSON body, retried a few times). The answer is the same either way.
pub(crate) async fn request_reset(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    client: Option<Extension<ClientIp>>,
    Json(b): Json<ResetRequest>,
) -> AuthResult<(StatusCode, Json<nimbus_api::ResetRequested>)> {
    let spec = pool(&ctx, &app)?;
    let Some(hook) = spec.reset_hook.clone() else {
        return Err(AuthError::Api(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "app {app:?} has no password-reset delivery: set [auth] reset_hook to a function that sends the token to the user"
            ),
        )));
    };
    let table = ctx.platform.gateway.table();
    let function = table
        .app(&app)
        .and_then(|a| a.functions.get(&hook))
        .cloned()
        .ok_or_else(|| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reset_hook {hook:?} is not a deployed function of {app:?}"),
            )
        })?;
    if let Some((user, token, expires_at)) = ctx
        .platform
        .users
        .request_reset(&app, &spec, &b.email, ip(&client))
        .await?
    {
        let body = serde_json::to_string(&nimbus_api::PasswordResetHook {
            kind: "password_reset".into(),
            app,
            user_id: user.id,
            email: user.email,
            token: token.clone(),
            expires_at,
        })
        .expect("a reset hook body serializes");
        tokio::spawn(deliver_reset(ctx.clone(), function, body, token));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(nimbus_api::ResetRequested {
            status: "if the account exists, a reset token was sent".into(),
        }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct ResetConfirm {
    token: String,
    new_password: String,
}

/// `POST /v1/apps/{app}/auth/password-reset/confirm`.
pub(crate) async fn confirm_reset(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(b): Json<ResetConfirm>,
) -> ApiResult<StatusCode> {
    let spec = pool(&ctx, &app)?;
    ctx.platform
        .users
        .confirm_reset(&app, &spec, &b.token, &b.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct DeleteBody {
    password: String,
}

/// `DELETE /v1/apps/{app}/auth/me` with `{"password": ...}`.
pub(crate) async fn delete_me(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Extension(principal): Extension<Principal>,
    Json(b): Json<DeleteBody>,
) -> AuthResult<StatusCode> {
    let c = user(&principal, &app)?;
    let spec = pool(&ctx, &app)?;
    ctx.platform
        .users
        .delete_account(&app, &spec, &c.subject, &b.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/apps/{app}/auth/jwks.json`: the public keys of the app's tokens.
pub(crate) async fn jwks(State(ctx): State<Ctx>, Path(app): Path<String>) -> Response {
    let mut r = Json(ctx.platform.users.tokens().jwks(&app)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// `POST /v1/apps/{app}/auth/rotate-keys`: a new signing key.
pub(crate) async fn rotate_keys(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<KeyRotated>> {
    pool(&ctx, &app)?;
    let kid = ctx.platform.users.tokens().rotate(&app).await?;
    Ok(Json(KeyRotated { app, kid }))
}

#[derive(Deserialize)]
pub(crate) struct UsersQuery {
    after: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/apps/{app}/users?after=EMAIL&limit=N`.
pub(crate) async fn list_users(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<UsersQuery>,
) -> ApiResult<Json<UserList>> {
    pool(&ctx, &app)?;
    let users = ctx
        .platform
        .users
        .list(
            &app,
            q.after.as_deref().unwrap_or(""),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(UserList {
        app,
        users: users.into_iter().map(User::from).collect(),
    }))
}

/// `POST /v1/apps/{app}/users`: creates a user (sign-up need not be open).
pub(crate) async fn create_user(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(b): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let spec = pool(&ctx, &app)?;
    let u = ctx
        .platform
        .users
        .create(&app, &spec, &b.email, &b.password, b.roles)
        .await?;
    Ok((StatusCode::CREATED, Json(u.into())))
}

/// `GET /v1/apps/{app}/users/{id}`.
pub(crate) async fn get_user(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<User>> {
    Ok(Json(ctx.platform.users.get(&app, &id).await?.into()))
}

/// `DELETE /v1/apps/{app}/users/{id}`.
pub(crate) async fn delete_user(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    ctx.platform.users.delete(&app, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct RolesBody {
    roles: Vec<String>,
}

/// `PUT /v1/apps/{app}/users/{id}/roles`.
pub(crate) async fn set_roles(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
    Json(b): Json<RolesBody>,
) -> ApiResult<StatusCode> {
    ctx.platform.users.set_roles(&app, &id, &b.roles).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn caller_key(principal: &Principal) -> ApiResult<&nimbus_identity::KeyInfo> {
    match principal {
        Principal::Key(k) => Ok(k),
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "managing keys needs an admin API key".into(),
        )),
    }
}

/// `GET /v1/keys`: the keys the caller can manage — API keys, and S3 keys
/// (access key id, app, creation time; never a secret).
pub(crate) async fn list_keys(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<KeyList>> {
    let by = caller_key(&principal)?;
    let s3_keys = ctx
        .platform
        .store
        .s3_keys()
        .await?
        .into_iter()
        .filter(|k| by.allows(Some(&k.app), Scope::Admin))
        .map(S3Key::from)
        .collect();
    let keys = ctx.platform.keys.list(by).await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(ApiKey::from).collect(),
        s3_keys,
    }))
}

/// `POST /v1/keys`: a new key; its secret is in this answer only.
pub(crate) async fn create_key(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Json(b): Json<NewKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let by = caller_key(&principal)?;
    let scopes = b
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(app) = &b.app {
        nimbus_core::names::check_name("app", app)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    }
    let created = ctx
        .platform
        .keys
        .create(by, &b.name, b.app.as_deref(), &scopes)
        .await?;
    let info = created.info;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: info.id,
            name: info.name,
            app: info.app,
            scopes: info.scopes.iter().map(|s| s.as_str().to_string()).collect(),
            secret: created.secret,
        }),
    ))
}

/// `DELETE /v1/keys/{name}`: revokes a key (by name or id).
pub(crate) async fn revoke_key(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let by = caller_key(&principal)?;
    ctx.platform.keys.revoke(by, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
