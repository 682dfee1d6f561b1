//! `/v1/apps/{app}/config` and `/secrets`: variables, app-wide or per
//! function, and secrets (sealed at rest, never returned).

use crate::ctx::{ApiResult, Ctx};
use axum::Json;
use axum::extract::{Path, Query, State};
use nimbus_api::{ConfigChanged, ConfigEntry, ConfigList};
use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct ScopeQuery {
    function: Option<String>,
}

/// `GET /v1/apps/{app}/config`: variables and the names of secrets (never
/// their values).
pub(crate) async fn config_list(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<ConfigList>> {
    ctx.platform.store.app(&app).await?;
    let rows = ctx.platform.store.config_rows(&app).await?;
    let config = rows
        .into_iter()
        .map(|r| ConfigEntry {
            function: (!r.function.is_empty()).then_some(r.function),
            key: r.key,
            value: (!r.secret).then_some(r.value),
            secret: r.secret,
            updated_at_us: r.updated_at_us,
        })
        .collect();
    Ok(Json(ConfigList { app, config }))
}

async fn set(
    ctx: &Ctx,
    app: &str,
    key: &str,
    function: Option<&str>,
    value: Option<&str>,
    secret: bool,
) -> ApiResult<Json<ConfigChanged>> {
    let changed = ctx
        .platform
        .set_config(app, function, key, value, secret)
        .await?;
    Ok(Json(ConfigChanged {
        key: key.to_string(),
        changed,
    }))
}

/// `PUT /v1/apps/{app}/config/{key}?function=F` (body: the value).
pub(crate) async fn config_put(
    State(ctx): State<Ctx>,
    Path((app, key)): Path<(String, String)>,
    Query(q): Query<ScopeQuery>,
    body: String,
) -> ApiResult<Json<ConfigChanged>> {
    set(&ctx, &app, &key, q.function.as_deref(), Some(&body), false).await
}

/// `DELETE /v1/apps/{app}/config/{key}?function=F`.
pub(crate) async fn config_delete(
    State(ctx): State<Ctx>,
    Path((app, key)): Path<(String, String)>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult<Json<ConfigChanged>> {
    set(&ctx, &app, &key, q.function.as_deref(), None, false).await
}

/// `PUT /v1/apps/{app}/secrets/{key}?function=F` (body: the value; it is
/// sealed at rest and never returned).
pub(crate) async fn secret_put(
    State(ctx): State<Ctx>,
    Path((app, key)): Path<(String, String)>,
    Query(q): Query<ScopeQuery>,
    body: String,
) -> ApiResult<Json<ConfigChanged>> {
    set(&ctx, &app, &key, q.function.as_deref(), Some(&body), true).await
}
