//! Who is calling the control API, and whether they may.
//!
//! Every request is authenticated once by [`authenticate`]: an API key
//! (`Authorization: Bearer KEY`), a user token of the app in the path, or
//! nobody. What the endpoint needs comes from its entry in the route table
//! ([`crate::routes`]): most need a key with a scope on the app in the
//! path; client-facing endpoints (`/auth/...`) need nothing here and check
//! user tokens themselves; KV and document endpoints let handlers apply the
//! store's client access rule ([`authorize`]).

use crate::ctx::{ApiError, Ctx};
use crate::routes::Need;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
pub(crate) use nimbus_identity::Principal;

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

fn unauthorized(message: String) -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, message)
}

/// The answer to a refused request: a 401 says how to authenticate
/// (`WWW-Authenticate: Bearer`).
pub(crate) fn refusal(e: ApiError) -> Response {
    let challenge = e.0 == StatusCode::UNAUTHORIZED;
    let mut r = e.into_response();
    if challenge {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
    }
    r
}

/// Who is calling (`app`: the app in the path), if `need` lets them: an
/// API key, a user token of `app`, or nobody; otherwise the refusal to
/// answer (401 without the credentials it needs, 403 with too few).
pub(crate) fn authenticate(
    ctx: &Ctx,
    req: &Request,
    app: Option<&str>,
    need: Need,
) -> Result<Principal, ApiError> {
    let principal = match bearer(req) {
        None => Principal::Anonymous,
        Some(token) => match ctx.platform.keys.verify(token) {
            Some(key) => Principal::Key(key),
            // A JWT (three dot-separated parts) of the app in the path.
            None if token.split('.').count() == 3 => {
                let Some(app) = app else {
                    return Err(unauthorized(
                        "a user token is only accepted on its app's endpoints (/v1/apps/APP/...)"
                            .into(),
                    ));
                };
                match ctx.platform.users.tokens().verify(app, token) {
                    Ok(c) => Principal::User(c),
                    // A client that sends its (expired) token everywhere can
                    // still log in and refresh.
                    Err(_) if need == Need::Nothing => Principal::Anonymous,
                    Err(e) => return Err(unauthorized(e.to_string())),
                }
            }
            None => {
                return Err(unauthorized(
                    "unknown or revoked API key: send `Authorization: Bearer KEY` with a key from `nimbus keys create` (a local server's bootstrap admin key is in DATA_DIR/admin-token)".into(),
                ));
            }
        },
    };
    let (scope, on) = match need {
        Need::Nothing | Need::DataRule => return Ok(principal),
        Need::App(scope) => (scope, app),
        Need::Platform(scope) | Need::AnyApp(scope) => (scope, None),
    };
    let Principal::Key(k) = &principal else {
        return Err(unauthorized(
            "this endpoint needs an API key: send `Authorization: Bearer KEY` (create one with `nimbus keys create`)".into(),
        ));
    };
    let ok = match need {
        Need::AnyApp(_) => k.has(scope),
        _ => k.allows(on, scope),
    };
    if ok {
        return Ok(principal);
    }
    let target = match (need, app) {
        (Need::Platform(_), _) => "the platform".to_string(),
        (_, Some(app)) => format!("app {app:?}"),
        _ => "this endpoint".to_string(),
    };
    Err(ApiError(
        StatusCode::FORBIDDEN,
        format!(
            "API key {:?} may not do this on {target}: it needs the {} scope there (it has: {}{})",
            k.name,
            scope.as_str(),
            k.scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            k.app
                .as_ref()
                .map(|a| format!("; limited to app {a:?}"))
                .unwrap_or_default()
        ),
    ))
}
