//! The game's web client: static files compiled into the component and
//! served from the `/game/` routes (`/` redirects there). The page talks
//! to the game API, the user pool and the data API of the `game` app.

use game_shared::Reply;
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

/// (path under /game/, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    ("", "text/html; charset=utf-8", include_bytes!("../static/index.html")),
    ("index.html", "text/html; charset=utf-8", include_bytes!("../static/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../static/app.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../static/style.css")),
    ("icon.svg", "image/svg+xml", include_bytes!("../static/icon.svg")),
];

/// A version tag for the files: changes whenever the component does.
fn etag() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (_, _, bytes) in FILES {
        for b in bytes.iter() {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
    }
    format!("\"{h:016x}\"")
}

fn serve(req: &IncomingRequest) -> Reply {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return Reply::error(405, "the game's pages are read with GET");
    }
    let pq = req.path_with_query().unwrap_or_default();
    let path = pq.split('?').next().unwrap_or("");
    let Some(file) = path.strip_prefix("/game/").or(if path == "/game" { Some("") } else { None }) else {
        let mut r = Reply::error(302, "the game is at /game/");
        r.headers.push(("location".into(), "/game/".into()));
        return r;
    };
    if path == "/game" {
        let mut r = Reply::error(301, "the game is at /game/");
        r.headers.push(("location".into(), "/game/".into()));
        return r;
    }
    // Unknown paths under /game/ are the page's own views: serve the page.
    let (ctype, bytes) = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, t, b)| (*t, *b))
        .unwrap_or((FILES[0].1, FILES[0].2));
    let tag = etag();
    let mut r = if game_shared::header(req, "if-none-match").as_deref() == Some(tag.as_str()) {
        Reply { status: 304, content_type: ctype, body: Vec::new(), headers: Vec::new() }
    } else {
        Reply { status: 200, content_type: ctype, body: bytes.to_vec(), headers: Vec::new() }
    };
    r.headers.push(("etag".into(), tag));
    r.headers.push(("cache-control".into(), "no-cache".into()));
    r
}

struct Web;

impl wasi::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        serve(&request).send(out);
    }
}

wasi::http::proxy::export!(Web);
