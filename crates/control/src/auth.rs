//! Who is calling the control API, and whether they may.
//!
//! Every request is authenticated once by [`authenticate`]: an API key
//! (`Authorization: Bearer KEY`), a user token of the app in the path, or
//! nobody. What the endpoint needs comes from one table, [`need`]: most need
//! a key with a scope on the app in the path; client-facing endpoints
//! (`/auth/...`) need nothing here and check user tokens themselves; KV and
//! document endpoints let handlers apply the store's client access rule.

use crate::ctx::{ApiError, Ctx};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nimbus_core::policy::Access;
use nimbus_identity::{Claims, IdentityError, KeyInfo, Scope};
use std::sync::Arc;

/// The authenticated caller of a control API request.
#[derive(Clone)]
pub(crate) enum Principal {
    /// An API key.
    Key(Arc<KeyInfo>),
    /// A user of the app in the path, by their access token.
    User(Arc<Claims>),
    /// No credentials.
    Anonymous,
}

/// What an endpoint requires.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// Nothing (health, client auth endpoints, JWKS).
    Nothing,
    /// Checked by the handler against the store's access rule.
    DataRule,
    /// A key with the scope, on the app (`None`: platform-wide).
    Key(Option<String>, Scope),
    /// A key with the scope, on any app (the handler narrows it).
    AnyKey(Scope),
}

/// The one table of what each endpoint needs.
fn need(method: &Method, path: &str) -> Need {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let read = |app: &str| {
        if method == Method::GET || method == Method::HEAD {
            Need::Key(Some(app.to_string()), Scope::ReadLogs)
        } else {
            Need::Key(Some(app.to_string()), Scope::Deploy)
        }
    };
    match seg.as_slice() {
        ["v1", "health"] => Need::Nothing,
        // The console's page: public; what it shows needs the user's key.
        ["console", ..] => Need::Nothing,
        // S3 keys are created with the data scope on their app; so revoked.
        ["v1", "keys", "s3", _] => Need::AnyKey(Scope::Data),
        ["v1", "keys", ..] => Need::AnyKey(Scope::Admin),
        ["v1", "components", ..] => Need::AnyKey(Scope::Deploy),
        ["v1", "apps"] | ["v1", "invocations", _] | ["v1", "traces", _] => {
            Need::AnyKey(Scope::ReadLogs)
        }
        ["v1", "apps", app] | ["v1", "apps", app, "revisions" | "rollback"] => read(app),
        ["v1", "apps", app, rest @ ..] => {
            let app = app.to_string();
            let key = |s| Need::Key(Some(app.clone()), s);
            match rest {
                ["auth", "rotate-keys"] => key(Scope::Users),
                ["auth", ..] => Need::Nothing,
                ["users", ..] => key(Scope::Users),
                ["kv", ..] | ["docs", ..] => Need::DataRule,
                ["keys", "s3"] => key(Scope::Data),
                ["invocations", _, "replay"] => key(Scope::Invoke),
                ["functions", _, "invoke", ..]
                | ["queues", _, "messages"]
                | ["topics", _, "messages"] => key(Scope::Invoke),
                ["functions", _, "dlq", ..] => read(&app),
                ["functions"]
                | ["invocations", ..]
                | ["events"]
                | ["logs"]
                | ["queues"]
                | ["usage"] => key(Scope::ReadLogs),
                ["config", ..] | ["secrets", ..] => read(&app),
                _ => key(Scope::Admin),
            }
        }
        ["v1", "status"] | ["v1", "usage"] | ["v1", "metrics"] => Need::Key(None, Scope::ReadLogs),
        _ => Need::Key(None, Scope::Admin),
    }
}

/// Whether app pages may call an endpoint on an app's origin: health, an
/// app's user-pool endpoints (`/auth/...` and its JWKS, not key rotation)
/// and its data under the client access rules. Everything else — the
/// console and the rest of the control API — is served only on the
/// control listener. `Some(app)` names the app in the path (`Some(None)`:
/// health, of no app).
pub(crate) fn client_facing(path: &str) -> Option<Option<String>> {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match seg.as_slice() {
        ["v1", "health"] => Some(None),
        ["v1", "apps", _, "auth", "rotate-keys"] => None,
        ["v1", "apps", app, "auth" | "kv" | "docs", _, ..] => {
            let app = percent_encoding::percent_decode_str(app)
                .decode_utf8()
                .ok()?;
            Some(Some(app.into_owned()))
        }
        _ => None,
    }
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The app named by a `/v1/apps/{app}/...` path.
fn app_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/apps/")?;
    Some(rest.split('/').next().unwrap_or(rest)).filter(|a| !a.is_empty())
}

pub(crate) fn unauthorized(message: String) -> Response {
    let mut r = ApiError(StatusCode::UNAUTHORIZED, message).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
    r
}

/// The middleware: finds the principal, checks [`need`], and passes the
/// principal on as a request extension.
pub(crate) async fn authenticate(State(ctx): State<Ctx>, mut req: Request, next: Next) -> Response {
    let required = need(req.method(), req.uri().path());
    let principal = match bearer(&req) {
        None => Principal::Anonymous,
        Some(token) => match ctx.platform.keys.verify(token) {
            Some(key) => Principal::Key(key),
            // A JWT (three dot-separated parts) of the app in the path.
            None if token.split('.').count() == 3 => {
                let Some(app) = app_of(req.uri().path()) else {
                    return unauthorized(
                        "a user token is only accepted on its app's endpoints (/v1/apps/APP/...)"
                            .into(),
                    );
                };
                match ctx.platform.users.tokens().verify(app, token) {
                    Ok(c) => Principal::User(c),
                    // A client that sends its (expired) token everywhere can
                    // still log in and refresh.
                    Err(_) if required == Need::Nothing => Principal::Anonymous,
                    Err(e) => return unauthorized(e.to_string()),
                }
            }
            None => {
                return unauthorized(
                    "unknown or revoked API key: send `Authorization: Bearer KEY` with a key from `nimbus keys create` (a local server's bootstrap admin key is in DATA_DIR/admin-token)".into(),
                );
            }
        },
    };
    let ok = match (&required, &principal) {
        (Need::Nothing | Need::DataRule, _) => true,
        (Need::Key(app, scope), Principal::Key(k)) => k.allows(app.as_deref(), *scope),
        (Need::AnyKey(scope), Principal::Key(k)) => k.has(*scope),
        (_, Principal::User(_) | Principal::Anonymous) => {
            return unauthorized(
                "this endpoint needs an API key: send `Authorization: Bearer KEY` (create one with `nimbus keys create`)".into(),
            );
        }
    };
    if !ok {
        let (Need::Key(_, scope) | Need::AnyKey(scope)) = required else {
            unreachable!("only key requirements can fail here")
        };
        let Principal::Key(k) = &principal else {
            unreachable!("only keys reach here")
        };
        let target = match (&required, app_of(req.uri().path())) {
            (Need::Key(None, _), _) => "the platform".to_string(),
            (_, Some(app)) => format!("app {app:?}"),
            _ => "this endpoint".to_string(),
        };
        return ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "API key {:?} may not do this on {target}: it needs the {} scope there (it has: {}{})",
                k.name,
                scope.as_str(),
                k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                k.app.as_ref().map(|a| format!("; limited to app {a:?}")).unwrap_or_default()
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// What a data request may do under its store's access rule.
pub(crate) enum Grant {
    /// An API key with the data scope: everything.
    Full,
    /// Reads by anyone.
    PublicRead,
    /// A signed-in user of the app: reads and writes.
    User,
    /// A signed-in user: only what they own.
    Owner(String),
}

impl Grant {
    /// The subject an owner-rule grant is limited to.
    pub(crate) fn owner(&self) -> Option<&str> {
        match self {
            Grant::Owner(s) => Some(s),
            _ => None,
        }
    }
}

/// Decides a KV or document request: keys need the data scope on the app;
/// users and anonymous callers get what the store's `access` rule allows.
pub(crate) fn authorize(
    principal: &Principal,
    app: &str,
    what: &str,
    access: Access,
    write: bool,
) -> Result<Grant, ApiError> {
    match principal {
        Principal::Key(k) => {
            if k.allows(Some(app), Scope::Data) {
                Ok(Grant::Full)
            } else {
                Err(ApiError(
                    StatusCode::FORBIDDEN,
                    format!(
                        "API key {:?} may not use {what} of app {app:?}: it needs the data scope on the app",
                        k.name
                    ),
                ))
            }
        }
        Principal::Anonymous => match access {
            Access::PublicRead if !write => Ok(Grant::PublicRead),
            Access::PublicRead => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{what} is read-only for clients (access = \"public-read\"): writes need an API key with the data scope, or a function"
                ),
            )),
            Access::None => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{what} is not open to clients (access = \"none\"): use an API key with the data scope, or a function"
                ),
            )),
            Access::OwnerRead if write => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{what} is read-only for clients (access = \"owner-read\"): writes need an API key with the data scope, or a function"
                ),
            )),
            _ => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{what} needs a signed-in user: send `Authorization: Bearer ACCESS_TOKEN` (log in at /v1/apps/{app}/auth/login)"
                ),
            )),
        },
        Principal::User(c) => match access {
            Access::None => Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("{what} is not open to clients (access = \"none\")"),
            )),
            Access::PublicRead if !write => Ok(Grant::PublicRead),
            Access::PublicRead => Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("{what} is read-only for clients (access = \"public-read\")"),
            )),
            Access::Authenticated => Ok(Grant::User),
            Access::Owner => Ok(Grant::Owner(c.subject.clone())),
            Access::OwnerRead if !write => Ok(Grant::Owner(c.subject.clone())),
            Access::OwnerRead => Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "{what} is read-only for clients (access = \"owner-read\"): a user reads only their own, and only functions write"
                ),
            )),
        },
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        let status = match &e {
            IdentityError::Invalid(_) => StatusCode::BAD_REQUEST,
            IdentityError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IdentityError::Forbidden(_) => StatusCode::FORBIDDEN,
            IdentityError::NotFound(_) => StatusCode::NOT_FOUND,
            IdentityError::Conflict(_) => StatusCode::CONFLICT,
            IdentityError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            IdentityError::Store(_) | IdentityError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_endpoints_face_app_origins() {
        assert_eq!(client_facing("/v1/health"), Some(None));
        for p in [
            "/v1/apps/game/auth/login",
            "/v1/apps/game/auth/jwks.json",
            "/v1/apps/game/kv/scores/k",
            "/v1/apps/game/docs/leaderboard/_query",
        ] {
            assert_eq!(client_facing(p), Some(Some("game".into())), "{p}");
        }
        for p in [
            "/console",
            "/console/console.js",
            "/v1/apps",
            "/v1/apps/game",
            "/v1/apps/game/revisions",
            "/v1/apps/game/auth/rotate-keys",
            "/v1/apps/game/users",
            "/v1/apps/game/logs",
            "/v1/apps/game/keys/s3",
            "/v1/apps/game/secrets/x",
            "/v1/keys",
            "/v1/status",
            "/v1/metrics",
        ] {
            assert_eq!(client_facing(p), None, "{p}");
        }
    }

    #[test]
    fn every_endpoint_has_a_need() {
        let get = Method::GET;
        let post = Method::POST;
        let k = |a: &str, s| Need::Key(Some(a.into()), s);
        assert_eq!(need(&get, "/v1/health"), Need::Nothing);
        assert_eq!(need(&post, "/v1/apps/a/revisions"), k("a", Scope::Deploy));
        assert_eq!(need(&get, "/v1/apps/a/revisions"), k("a", Scope::ReadLogs));
        assert_eq!(need(&Method::DELETE, "/v1/apps/a"), k("a", Scope::Deploy));
        assert_eq!(need(&post, "/v1/apps/a/auth/login"), Need::Nothing);
        assert_eq!(
            need(&post, "/v1/apps/a/auth/rotate-keys"),
            k("a", Scope::Users)
        );
        assert_eq!(need(&get, "/v1/apps/a/users"), k("a", Scope::Users));
        assert_eq!(need(&get, "/v1/apps/a/kv/s/k"), Need::DataRule);
        assert_eq!(
            need(&post, "/v1/apps/a/functions/f/invoke/x"),
            k("a", Scope::Invoke)
        );
        assert_eq!(
            need(&post, "/v1/apps/a/queues/q/messages"),
            k("a", Scope::Invoke)
        );
        assert_eq!(
            need(&get, "/v1/apps/a/functions/f/dlq"),
            k("a", Scope::ReadLogs)
        );
        assert_eq!(
            need(&post, "/v1/apps/a/functions/f/dlq/redrive"),
            k("a", Scope::Deploy)
        );
        assert_eq!(need(&get, "/v1/apps/a/logs"), k("a", Scope::ReadLogs));
        assert_eq!(
            need(&Method::PUT, "/v1/apps/a/secrets/x"),
            k("a", Scope::Deploy)
        );
        assert_eq!(need(&post, "/v1/apps/a/keys/s3"), k("a", Scope::Data));
        assert_eq!(
            need(&Method::DELETE, "/v1/keys/s3/NKX"),
            Need::AnyKey(Scope::Data)
        );
        assert_eq!(
            need(&Method::DELETE, "/v1/keys/ci"),
            Need::AnyKey(Scope::Admin)
        );
        assert_eq!(need(&post, "/v1/apps/a/whatever"), k("a", Scope::Admin));
        assert_eq!(need(&get, "/v1/status"), Need::Key(None, Scope::ReadLogs));
        assert_eq!(need(&get, "/v1/usage"), Need::Key(None, Scope::ReadLogs));
        assert_eq!(need(&get, "/v1/apps/a/usage"), k("a", Scope::ReadLogs));
        assert_eq!(
            need(&post, "/v1/apps/a/invocations/i/replay"),
            k("a", Scope::Invoke)
        );
        assert_eq!(
            need(&get, "/v1/apps/a/invocations/i/input"),
            k("a", Scope::ReadLogs)
        );
        assert_eq!(
            need(&get, "/v1/invocations/i"),
            Need::AnyKey(Scope::ReadLogs)
        );
        assert_eq!(need(&get, "/v1/apps"), Need::AnyKey(Scope::ReadLogs));
        assert_eq!(
            need(&Method::PUT, "/v1/components/abc"),
            Need::AnyKey(Scope::Deploy)
        );
        assert_eq!(need(&get, "/v1/nothing"), Need::Key(None, Scope::Admin));
        assert_eq!(app_of("/v1/apps/demo/kv/x"), Some("demo"));
        assert_eq!(app_of("/v1/apps/"), None);
    }
}
