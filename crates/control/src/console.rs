//! The web console at `/console`: one page and its script and styles,
//! compiled into the binary (nothing is fetched from anywhere else). The
//! page is public; everything it shows comes from the control API, called
//! by the browser with the API key the user logs in with, so the console
//! can do exactly what that key may do.
//!
//! It shares its origin with the apps' pages, so the key stays in the
//! page's memory (no storage an app page could read), the page cannot be
//! framed, and `Cross-Origin-Opener-Policy: same-origin` cuts it off from
//! any app page that opened it (which would otherwise hold a reference to
//! its window).

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// (file, content type, text)
const FILES: &[(&str, &str, &str)] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
];

fn file(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, text)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::HeaderName::from_static("cross-origin-opener-policy"),
                    "same-origin",
                ),
                // The console runs only its own script, and only talks to this server.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
                ),
            ],
            *text,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no console file {name:?}: open /console/"),
        )
            .into_response(),
    }
}

pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { file("") }))
        .route(
            "/console/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}
