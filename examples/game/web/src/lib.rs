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

/// A version tag for the files (FNV-1a of their bytes), computed when the
/// component is compiled: it changes whenever the files do.
const ETAG: u64 = {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut f = 0;
    while f < FILES.len() {
        let bytes = FILES[f].2;
        let mut i = 0;
        while i < bytes.len() {
            h = (h ^ bytes[i] as u64).wrapping_mul(0x100000001b3);
            i += 1;
        }
        f += 1;
    }
    h
};

fn redirect(status: u16, to: &str) -> Reply {
    let mut r = Reply::error(status, format!("the game is at {to}"));
    r.headers.push(("location".into(), to.into()));
    r
}

fn serve(req: &IncomingRequest) -> Reply {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return Reply::error(405, "the game's pages are read with GET");
    }
    let pq = req.path_with_query().unwrap_or_default();
    let path = pq.split('?').next().unwrap_or("");
    let file = match path.strip_prefix("/game/") {
        Some(file) => file,
        None if path == "/game" => return redirect(301, "/game/"),
        None => return redirect(302, "/game/"),
    };
    // Unknown paths under /game/ are the page's own views: serve the page.
    let (ctype, bytes) = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, t, b)| (*t, *b))
        .unwrap_or((FILES[0].1, FILES[0].2));
    let tag = format!("\"{ETAG:016x}\"");
    let fresh = game_shared::header(req, "if-none-match").as_deref() == Some(tag.as_str());
    Reply {
        status: if fresh { 304 } else { 200 },
        content_type: ctype,
        body: if fresh { Vec::new() } else { bytes.to_vec() },
        headers: vec![("etag".into(), tag), ("cache-control".into(), "no-cache".into())],
    }
}

struct Web;

impl wasi::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        serve(&request).send(out);
    }
}

wasi::http::proxy::export!(Web);
