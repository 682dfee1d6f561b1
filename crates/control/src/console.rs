//! The web console at `/console`: one page and its script and styles,
//! compiled into the binary (nothing is fetched from anywhere else). The
//! page is public; everything it shows comes from the control API, called
//! by the browser with the API key the user logs in with, so the console
//! can do exactly what that key may do.
//!
//! It is served only on the control listener, never on an app's origin,
//! so no app page shares its origin; the key stays in the page's memory
//! (no storage), the page cannot be framed, and
//! `Cross-Origin-Opener-Policy: same-origin` cuts it off from any page that
//! opened it (which would otherwise hold a reference to its window).
//!
//! Plain HTML, CSS and JavaScript (`console/`, compiled in with
//! `include_str!`), charts and the trace waterfall drawn as SVG and
//! positioned boxes, no framework: no npm build step inside the Rust build,
//! nothing to fetch at run time (the console must work with no network
//! beyond this machine), and nothing a framework would add for this many
//! views. It is tested in a real browser (`tests/e2e/`).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

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

/// `GET /console`: to the page.
pub(crate) async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/`: the page.
pub(crate) async fn index() -> Response {
    file("")
}

/// `GET /console/{name}`: its script and styles.
pub(crate) async fn named(Path(name): Path<String>) -> Response {
    file(&name)
}
