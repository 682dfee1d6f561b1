//! The control API's one route table: every endpoint with its method, its
//! path, what a caller needs ([`Need`]), whether app pages may call it on
//! an app's origin, and which service it meters. [`router`] and
//! [`client_router`] are built from it, and so is the printed table
//! (`nimbus routes`, docs/API.md): there is no second list of paths, and
//! authorization never matches path strings — the router finds the entry,
//! and the entry says what it needs.
//!
//! Each endpoint sits behind one `guard` middleware: on an app's origin,
//! the host check (on a host an app owns, only that app's endpoints) and,
//! once the body is read, a fair CPU turn of the app while its handler runs
//! (`nimbus_runtime::FairCpu::turn`: their CPU is spent on other threads,
//! and a slow client holds no turn); then `auth::authenticate` with the
//! entry's need; then the handler; then metering of clients' KV and
//! document calls that the store answered. A unit test keeps docs/API.md
//! equal to [`markdown`].

use crate::auth;
use crate::ctx::{ApiError, Ctx};
use crate::platform::Platform;
use crate::{api, console, data_api, events_api, realtime_api, replay_api, usage_api, users_api};
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, any, on};
use axum::{Json, Router};
use nimbus_core::Service;
use nimbus_identity::Scope;
use std::sync::Arc;

/// What a caller of an endpoint needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: anyone (health, the console's page, an app's user-pool
    /// endpoints, which check user tokens themselves).
    Nothing,
    /// The store's client access rule, applied by the handler: an API key
    /// with the data scope on the app, or a user token of the app, or
    /// nobody, as the store's `access` allows.
    DataRule,
    /// An API key with this scope on the app in the path.
    App(Scope),
    /// An API key with this scope on the whole platform (not limited to an
    /// app).
    Platform(Scope),
    /// An API key with this scope, limited to an app or not: the handler
    /// narrows what an app-limited key sees or touches.
    AnyApp(Scope),
}

impl Need {
    /// In words, for the printed table.
    pub fn describe(&self) -> String {
        match self {
            Need::Nothing => "nothing".into(),
            Need::DataRule => "the store's access rule (key with data, or user token)".into(),
            Need::App(s) => format!("key with {} on the app", s.as_str()),
            Need::Platform(s) => format!("key with {} on the platform", s.as_str()),
            Need::AnyApp(s) => format!("key with {} (any app)", s.as_str()),
        }
    }
}

/// An HTTP method of a route (`Any`: every method, passed to a function).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Any,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
            Verb::Any => "ANY",
        }
    }

    /// The verb of a method a data route names.
    fn of(method: &axum::http::Method) -> Verb {
        match *method {
            axum::http::Method::GET => Verb::Get,
            axum::http::Method::HEAD => Verb::Head,
            axum::http::Method::POST => Verb::Post,
            axum::http::Method::PUT => Verb::Put,
            axum::http::Method::PATCH => Verb::Patch,
            axum::http::Method::DELETE => Verb::Delete,
            _ => Verb::Any,
        }
    }

    fn filter(self) -> Option<MethodFilter> {
        Some(match self {
            Verb::Get => MethodFilter::GET,
            Verb::Head => MethodFilter::HEAD,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
            Verb::Any => return None,
        })
    }
}

/// One endpoint of the control API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub verb: Verb,
    /// The path pattern, `{name}` for a segment and `{*name}` for the rest.
    pub path: &'static str,
    pub need: Need,
    /// Served on apps' origins too, for app pages (on a host an app owns,
    /// for that app only); otherwise only on the control listener.
    pub client: bool,
    /// The service whose operations it meters for the app in the path
    /// (answered successes and conflicts only; see [`guard`]).
    pub meters: Option<Service>,
}

/// An endpoint and its handler.
struct Route {
    endpoint: Endpoint,
    handler: MethodRouter<Ctx>,
}

impl Route {
    fn client(mut self) -> Route {
        self.endpoint.client = true;
        self
    }
}

fn route<H, T>(verb: Verb, path: &'static str, need: Need, handler: H) -> Route
where
    H: Handler<T, Ctx>,
    T: 'static,
{
    Route {
        endpoint: Endpoint {
            verb,
            path,
            need,
            client: false,
            meters: None,
        },
        handler: match verb.filter() {
            Some(f) => on(f, handler),
            None => any(handler),
        },
    }
}

impl Route {
    /// Each success counts as one operation of the app on `service`.
    fn metered(mut self, service: Service) -> Route {
        self.endpoint.meters = Some(service);
        self
    }
}

/// The data capabilities' endpoints (`nimbus_data::routes`): each under
/// its store's access rule, open to app pages, metered as its service.
fn data_routes() -> Vec<Route> {
    nimbus_data::routes::<Ctx>()
        .into_iter()
        .map(|r| Route {
            endpoint: Endpoint {
                verb: Verb::of(&r.method),
                path: r.path,
                need: Need::DataRule,
                client: true,
                meters: Some(r.service),
            },
            handler: r.handler,
        })
        .collect()
}

async fn health() -> Json<nimbus_api::Health> {
    Json(nimbus_api::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The table.
fn table() -> Vec<Route> {
    use Need::*;
    use Scope::*;
    use Verb::*;
    macro_rules! app {
        ($rest:literal) => {
            concat!("/v1/apps/{app}", $rest)
        };
    }
    let mut table = vec![
        route(Get, "/v1/health", Nothing, health).client(),
        route(Get, "/console", Nothing, console::redirect),
        route(Get, "/console/", Nothing, console::index),
        route(Get, "/console/{name}", Nothing, console::named),
        // Platform.
        route(Get, "/v1/status", Platform(ReadLogs), api::status),
        route(Get, "/v1/cluster", Platform(Admin), api::cluster),
        route(
            Get,
            "/v1/usage",
            Platform(ReadLogs),
            usage_api::platform_usage,
        ),
        route(
            Get,
            "/v1/metrics",
            Platform(ReadLogs),
            crate::metrics::scrape,
        ),
        route(Get, "/v1/keys", AnyApp(Admin), users_api::list_keys),
        route(Post, "/v1/keys", AnyApp(Admin), users_api::create_key),
        route(
            Delete,
            "/v1/keys/{name}",
            AnyApp(Admin),
            users_api::revoke_key,
        ),
        // S3 keys are created with the data scope on their app; so revoked.
        route(
            Delete,
            "/v1/keys/s3/{access_key}",
            AnyApp(Data),
            data_api::revoke_s3_key,
        ),
        route(
            Put,
            "/v1/components/{hash}",
            AnyApp(Deploy),
            api::upload_component,
        ),
        route(
            Head,
            "/v1/components/{hash}",
            AnyApp(Deploy),
            api::component_exists,
        ),
        route(
            Get,
            "/v1/invocations/{id}",
            AnyApp(ReadLogs),
            replay_api::find,
        ),
        route(Get, "/v1/traces/{id}", AnyApp(ReadLogs), replay_api::trace),
        // Apps and their revisions.
        route(Get, "/v1/apps", AnyApp(ReadLogs), api::list_apps),
        route(Get, app!(""), App(ReadLogs), api::get_app),
        route(Delete, app!(""), App(Deploy), api::delete_app),
        route(Get, app!("/revisions"), App(ReadLogs), api::list_revisions),
        route(Post, app!("/revisions"), App(Deploy), api::deploy),
        route(Post, app!("/rollback"), App(Deploy), api::rollback),
        route(Get, app!("/functions"), App(ReadLogs), api::list_functions),
        route(Get, app!("/usage"), App(ReadLogs), usage_api::app_usage),
        route(Get, app!("/logs"), App(ReadLogs), api::logs),
        route(Get, app!("/events"), App(ReadLogs), events_api::list_events),
        // Invocations.
        route(
            Any,
            app!("/functions/{function}/invoke"),
            App(Invoke),
            api::invoke_root,
        ),
        route(
            Any,
            app!("/functions/{function}/invoke/"),
            App(Invoke),
            api::invoke_root,
        ),
        route(
            Any,
            app!("/functions/{function}/invoke/{*path}"),
            App(Invoke),
            api::invoke_path,
        ),
        route(
            Get,
            app!("/invocations"),
            App(ReadLogs),
            api::list_invocations,
        ),
        route(
            Get,
            app!("/invocations/{id}"),
            App(ReadLogs),
            events_api::get_invocation,
        ),
        route(
            Get,
            app!("/invocations/{id}/input"),
            App(ReadLogs),
            replay_api::input,
        ),
        route(
            Post,
            app!("/invocations/{id}/replay"),
            App(Invoke),
            replay_api::replay,
        ),
        // WebSocket connections.
        route(Get, app!("/connections"), App(ReadLogs), realtime_api::list),
        route(
            Post,
            app!("/connections/{id}/messages"),
            App(Invoke),
            realtime_api::send,
        )
        .metered(Service::Realtime),
        route(
            Delete,
            app!("/connections/{id}"),
            App(Invoke),
            realtime_api::close,
        )
        .metered(Service::Realtime),
        route(
            Post,
            app!("/channels/{channel}/messages"),
            App(Invoke),
            realtime_api::publish,
        )
        .metered(Service::Realtime),
        // Events.
        route(Get, app!("/queues"), App(ReadLogs), events_api::depths),
        route(
            Post,
            app!("/queues/{queue}/messages"),
            App(Invoke),
            events_api::send,
        ),
        route(
            Post,
            app!("/topics/{topic}/messages"),
            App(Invoke),
            events_api::publish,
        ),
        route(
            Get,
            app!("/functions/{function}/dlq"),
            App(ReadLogs),
            events_api::dlq_list,
        ),
        route(
            Post,
            app!("/functions/{function}/dlq/redrive"),
            App(Deploy),
            events_api::dlq_redrive,
        ),
        route(
            Post,
            app!("/functions/{function}/dlq/purge"),
            App(Deploy),
            events_api::dlq_purge,
        ),
        route(
            Get,
            app!("/functions/{function}/dlq/{id}"),
            App(ReadLogs),
            events_api::dlq_show,
        ),
    ];
    // Key-value and documents, under the stores' access rules.
    table.extend(data_routes());
    table.extend([
        route(Post, app!("/keys/s3"), App(Data), data_api::create_s3_key),
        // Configuration and secrets.
        route(Get, app!("/config"), App(ReadLogs), data_api::config_list),
        route(
            Put,
            app!("/config/{key}"),
            App(Deploy),
            data_api::config_put,
        ),
        route(
            Delete,
            app!("/config/{key}"),
            App(Deploy),
            data_api::config_delete,
        ),
        route(
            Put,
            app!("/secrets/{key}"),
            App(Deploy),
            data_api::secret_put,
        ),
        route(
            Delete,
            app!("/secrets/{key}"),
            App(Deploy),
            data_api::config_delete,
        ),
        // The app's user pool: its own clients, by user token.
        route(Post, app!("/auth/signup"), Nothing, users_api::signup).client(),
        route(Post, app!("/auth/login"), Nothing, users_api::login).client(),
        route(Post, app!("/auth/refresh"), Nothing, users_api::refresh).client(),
        route(Post, app!("/auth/logout"), Nothing, users_api::logout).client(),
        route(Get, app!("/auth/me"), Nothing, users_api::me).client(),
        route(Delete, app!("/auth/me"), Nothing, users_api::delete_me).client(),
        route(
            Post,
            app!("/auth/password"),
            Nothing,
            users_api::change_password,
        )
        .client(),
        route(
            Post,
            app!("/auth/password-reset"),
            Nothing,
            users_api::request_reset,
        )
        .client(),
        route(
            Post,
            app!("/auth/password-reset/confirm"),
            Nothing,
            users_api::confirm_reset,
        )
        .client(),
        route(Get, app!("/auth/jwks.json"), Nothing, users_api::jwks).client(),
        // Operators manage the pool with keys.
        route(
            Post,
            app!("/auth/rotate-keys"),
            App(Users),
            users_api::rotate_keys,
        ),
        route(Get, app!("/users"), App(Users), users_api::list_users),
        route(Post, app!("/users"), App(Users), users_api::create_user),
        route(Get, app!("/users/{id}"), App(Users), users_api::get_user),
        route(
            Delete,
            app!("/users/{id}"),
            App(Users),
            users_api::delete_user,
        ),
        route(
            Put,
            app!("/users/{id}/roles"),
            App(Users),
            users_api::set_roles,
        ),
    ]);
    table
}

/// Every endpoint, in the table's order.
pub fn endpoints() -> Vec<Endpoint> {
    table().into_iter().map(|r| r.endpoint).collect()
}

/// The table as Markdown (docs/API.md is this, and a test keeps it so).
pub fn markdown() -> String {
    let mut out = String::from(
        "| method | path | needs | on app origins | meters |\n|---|---|---|---|---|\n",
    );
    for e in endpoints() {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            e.verb.as_str(),
            e.path,
            e.need.describe(),
            if e.client { "yes" } else { "" },
            e.meters.map(|s| s.as_str()).unwrap_or_default(),
        ));
    }
    out
}

/// Which listener a router serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Face {
    /// The control listener: every endpoint.
    Control,
    /// The apps' listener: the client endpoints only.
    Apps,
}

#[derive(Clone)]
struct Guarded {
    ctx: Ctx,
    endpoint: Arc<Endpoint>,
    face: Face,
}

fn build(platform: Arc<Platform>, face: Face) -> Router {
    let ctx = Ctx::new(platform);
    let mut router = Router::new();
    for r in table() {
        if face == Face::Apps && !r.endpoint.client {
            continue;
        }
        let path = r.endpoint.path;
        let endpoint_verb = r.endpoint.verb;
        let guarded = Guarded {
            ctx: ctx.clone(),
            endpoint: Arc::new(r.endpoint),
            face,
        };
        let layer = middleware::from_fn_with_state(guarded, guard);
        // `any` serves every method as the method router's fallback, which
        // a route layer leaves out.
        let handler = match endpoint_verb {
            Verb::Any => r.handler.layer(layer),
            _ => r.handler.route_layer(layer),
        };
        // Routes of one path with other methods merge into one entry.
        router = router.route(path, handler);
    }
    router
        .fallback(move |req: Request| async move {
            let message = match face {
                Face::Control => format!(
                    "no control API endpoint {} {}: `nimbus routes` lists them",
                    req.method(),
                    req.uri().path()
                ),
                Face::Apps => not_on_app_origins(&req),
            };
            ApiError(StatusCode::NOT_FOUND, message)
        })
        .with_state(ctx)
}

/// The control API router: every endpoint, for the control listener.
pub fn router(platform: Arc<Platform>) -> Router {
    build(platform, Face::Control)
}

/// The part of the control API served on the apps' listener, for app
/// pages: the client endpoints only ([`Endpoint::client`]), and on a host
/// that an app owns, only that app's. The rest is served only by
/// [`router`] on the control listener, so no app's code shares an origin
/// with the console or with the requests that carry operators' keys.
pub fn client_router(platform: Arc<Platform>) -> Router {
    build(platform, Face::Apps)
}

fn not_on_app_origins(req: &Request) -> String {
    format!(
        "{} {} is not served on app origins: the console and the control API have a listener of their own (`nimbus up --control-listen`, by default on loopback at the app port + 1; `nimbus` commands find it in the data dir)",
        req.method(),
        req.uri().path()
    )
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

/// Every endpoint's middleware, in this order: on an app's origin, the
/// host check and the app's CPU turn; then who the caller is and whether
/// the endpoint's [`Need`] lets them; then the handler; then metering.
async fn guard(State(g): State<Guarded>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let app = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => params
            .iter()
            .find(|(name, _)| *name == "app")
            .map(|(_, v)| v.to_string()),
        Err(_) => None,
    };
    let mut req = Request::from_parts(parts, body);
    if app.is_none() && g.endpoint.path.contains("{app}") {
        return ApiError(
            StatusCode::BAD_REQUEST,
            "the app name in the path is not valid percent-encoded UTF-8".into(),
        )
        .into_response();
    }
    let mut turn = None;
    if g.face == Face::Apps
        && let Some(app) = &app
    {
        let table = g.ctx.platform.gateway.table();
        let owner = nimbus_gateway::request_host(&req).and_then(|h| table.host_owner(&h));
        if owner.is_some_and(|o| o != app) {
            return ApiError(StatusCode::NOT_FOUND, not_on_app_origins(&req)).into_response();
        }
        // An app that is not deployed has nothing to share, and naming
        // apps that do not exist must not count as apps present.
        if table.app(app).is_some() {
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
            req = Request::from_parts(parts, axum::body::Body::from(body));
            turn = Some(
                g.ctx
                    .platform
                    .runtime
                    .fair
                    .turn(Arc::from(app.as_str()))
                    .await,
            );
        }
    }
    let principal = match auth::authenticate(&g.ctx, &req, app.as_deref(), g.endpoint.need) {
        Ok(p) => p,
        Err(refused) => return auth::refusal(refused),
    };
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    drop(turn);
    // Clients' KV and document calls that the store answered — a success,
    // or a conflict with the expected value or version (409, 412) — are
    // one operation of their app each. Refusals (401, 403), bad requests
    // and not-found answers are not metered: they may come before the
    // caller was authorized, and must not let anyone add to an app's bill.
    if let (Some(service), Some(app)) = (g.endpoint.meters, &app) {
        let s = resp.status();
        if s.is_success() || matches!(s, StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED) {
            g.ctx.platform.records.meter(app, service, 1);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn each_method_and_path_is_listed_once() {
        let mut seen = HashSet::new();
        for e in endpoints() {
            assert!(
                seen.insert((e.verb, e.path)),
                "{} {} is listed twice",
                e.verb.as_str(),
                e.path
            );
        }
    }

    #[test]
    fn only_user_pool_data_and_health_face_app_origins() {
        for e in endpoints() {
            let user_pool = e.path.starts_with("/v1/apps/{app}/auth/")
                && e.path != "/v1/apps/{app}/auth/rotate-keys";
            let data = e.path.starts_with("/v1/apps/{app}/kv/")
                || e.path.starts_with("/v1/apps/{app}/docs/");
            assert_eq!(
                e.client,
                user_pool || data || e.path == "/v1/health",
                "{} {}",
                e.verb.as_str(),
                e.path
            );
            // What app pages may call needs no operator's key.
            if e.client {
                assert!(matches!(e.need, Need::Nothing | Need::DataRule), "{e:?}");
            }
        }
    }

    #[test]
    fn an_app_path_needs_its_app_or_its_access_rule() {
        for e in endpoints() {
            if e.path.starts_with("/v1/apps/{app}") {
                assert!(
                    matches!(e.need, Need::App(_) | Need::DataRule | Need::Nothing),
                    "{} {} needs {:?}: a key's app limit would not apply",
                    e.verb.as_str(),
                    e.path,
                    e.need
                );
            }
            // Every endpoint under an access rule meters (so do some that
            // need a key: realtime sends and publishes).
            if e.need == Need::DataRule {
                assert!(e.meters.is_some(), "{e:?}");
            }
        }
    }

    #[test]
    fn changes_need_more_than_reading() {
        let need = |verb, path: &str| {
            endpoints()
                .into_iter()
                .find(|e| e.verb == verb && e.path == path)
                .unwrap_or_else(|| panic!("{path} is not in the table"))
                .need
        };
        assert_eq!(
            need(Verb::Get, "/v1/apps/{app}"),
            Need::App(Scope::ReadLogs)
        );
        assert_eq!(
            need(Verb::Delete, "/v1/apps/{app}"),
            Need::App(Scope::Deploy)
        );
        assert_eq!(
            need(Verb::Post, "/v1/apps/{app}/revisions"),
            Need::App(Scope::Deploy)
        );
        assert_eq!(
            need(Verb::Put, "/v1/apps/{app}/secrets/{key}"),
            Need::App(Scope::Deploy)
        );
        assert_eq!(
            need(Verb::Post, "/v1/apps/{app}/auth/rotate-keys"),
            Need::App(Scope::Users)
        );
        let app = |s| Need::App(s);
        for (verb, path, expected) in [
            (Verb::Get, "/v1/health", Need::Nothing),
            (Verb::Post, "/v1/apps/{app}/auth/login", Need::Nothing),
            (Verb::Get, "/v1/apps/{app}/users", app(Scope::Users)),
            (
                Verb::Get,
                "/v1/apps/{app}/kv/{store}/{*key}",
                Need::DataRule,
            ),
            (
                Verb::Any,
                "/v1/apps/{app}/functions/{function}/invoke/{*path}",
                app(Scope::Invoke),
            ),
            (
                Verb::Post,
                "/v1/apps/{app}/queues/{queue}/messages",
                app(Scope::Invoke),
            ),
            (
                Verb::Get,
                "/v1/apps/{app}/functions/{function}/dlq",
                app(Scope::ReadLogs),
            ),
            (
                Verb::Post,
                "/v1/apps/{app}/functions/{function}/dlq/redrive",
                app(Scope::Deploy),
            ),
            (Verb::Get, "/v1/apps/{app}/logs", app(Scope::ReadLogs)),
            (Verb::Post, "/v1/apps/{app}/keys/s3", app(Scope::Data)),
            (
                Verb::Delete,
                "/v1/keys/s3/{access_key}",
                Need::AnyApp(Scope::Data),
            ),
            (Verb::Delete, "/v1/keys/{name}", Need::AnyApp(Scope::Admin)),
            (Verb::Post, "/v1/keys", Need::AnyApp(Scope::Admin)),
            (Verb::Get, "/v1/status", Need::Platform(Scope::ReadLogs)),
            (Verb::Get, "/v1/usage", Need::Platform(Scope::ReadLogs)),
            (Verb::Get, "/v1/metrics", Need::Platform(Scope::ReadLogs)),
            (Verb::Get, "/v1/cluster", Need::Platform(Scope::Admin)),
            (Verb::Get, "/v1/apps/{app}/usage", app(Scope::ReadLogs)),
            (
                Verb::Post,
                "/v1/apps/{app}/invocations/{id}/replay",
                app(Scope::Invoke),
            ),
            (
                Verb::Get,
                "/v1/apps/{app}/invocations/{id}/input",
                app(Scope::ReadLogs),
            ),
            (
                Verb::Get,
                "/v1/invocations/{id}",
                Need::AnyApp(Scope::ReadLogs),
            ),
            (Verb::Get, "/v1/apps", Need::AnyApp(Scope::ReadLogs)),
            (
                Verb::Put,
                "/v1/components/{hash}",
                Need::AnyApp(Scope::Deploy),
            ),
        ] {
            assert_eq!(need(verb, path), expected, "{} {path}", verb.as_str());
        }
        // No key-holding endpoint is open.
        for e in endpoints() {
            if e.need == Need::Nothing {
                assert!(
                    e.client || e.path.starts_with("/console"),
                    "{} {} needs nothing",
                    e.verb.as_str(),
                    e.path
                );
            }
        }
    }

    #[test]
    fn the_docs_list_the_table() {
        let docs = include_str!("../../../docs/API.md");
        assert!(
            docs.contains(&markdown()),
            "docs/API.md does not hold the route table: paste `nimbus routes --markdown` into it"
        );
    }
}
