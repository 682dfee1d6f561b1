//! The reference app and the console in a real browser: Debian's headless
//! Chromium driven by playwright-core (`tests/e2e/play.mjs`), against a real
//! server with the game deployed. `scripts/test` installs both; the
//! screenshots land in `target/e2e-artifacts/`.

mod common;

use common::{Server, repo, s3_url};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the browser test needs, or a message saying how to get it.
fn browser_setup() -> (PathBuf, String) {
    let e2e = repo().join("tests/e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run ./scripts/test (it installs Debian's chromium) or `apt-get install -y chromium`"
    );
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test or `npm ci --prefix tests/e2e`"
    );
    (e2e, chromium)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_play_a_game_and_the_console_shows_it() {
    let (e2e, chromium) = browser_setup();
    let s = Server::start(&[]);
    let game = repo().join("examples/game");
    // Two revisions, so that the console has one to roll back to.
    assert!(s.deploy(&game).contains("deployed game revision 1"));
    assert!(s.deploy(&game).contains("deployed game revision 2"));

    let artifacts = repo().join("target/e2e-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = Command::new("node")
        .arg(e2e.join("play.mjs"))
        .env("BASE_URL", &s.url)
        .env("CONTROL_URL", &s.control)
        .env("ADMIN_KEY", s.token().trim())
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("running node (install Node.js: Debian's nodejs package)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser test failed:\n{log}");
    assert!(log.contains("all browser checks passed"), "{log}");

    // What the browser did is what the server holds.
    let app = s.api("/v1/apps/game").await;
    assert_eq!(
        app["active_revision"], 1,
        "the console rolled the game back"
    );
    let board = s
        .http
        .post(format!("{}/v1/apps/game/docs/leaderboard/_query", s.url))
        .body(r#"{"order_by": [["points", "desc"]]}"#)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(board["documents"][0]["body"]["name"], "alice", "{board}");
    assert_eq!(board["documents"][0]["body"]["wins"], 1, "{board}");
    for shot in [
        "game-illegal-move",
        "game-after-reload",
        "game-won",
        "game-leaderboard",
        "console-connections",
        "console-invocations",
        "console-trace",
        "console-usage",
        "console-rollback",
    ] {
        let png = std::fs::read(artifacts.join(format!("{shot}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{shot}.png is not a screenshot"
        );
    }
}

/// A hostile tenant on the shared origin: a page that registers a service
/// worker over `/`, which copies every `Authorization` header it sees into
/// a cache the tenant's page reads back.
const EVIL: &str = r#"
[app]
name = "evil"

[functions.page]
component = "@WASM@/site.wasm"
env = { BODY = '''<!doctype html><title>evil</title><script>
window.registration = navigator.serviceWorker.register("/evil-sw.js", { scope: "/" })
  .then(() => "registered", (e) => "refused: " + e.message);
</script>''' }

[functions.sw]
component = "@WASM@/site.wasm"
env = { CONTENT_TYPE = "text/javascript", HEADERS = "service-worker-allowed: /", BODY = '''
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (e) => {
  const auth = e.request.headers.get("authorization");
  if (auth) e.waitUntil(caches.open("loot").then((c) => c.put("/loot/" + Math.random(), new Response(auth))));
});
''' }

[[triggers.http]]
route = "/evil"
function = "page"

[[triggers.http]]
route = "/evil-sw.js"
function = "sw"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_service_worker_sees_nothing_of_the_console() {
    let (e2e, chromium) = browser_setup();
    let s = Server::start(&[]);
    s.deploy(common::app_dir(EVIL).path());
    let out = Command::new("node")
        .arg(e2e.join("tenant.mjs"))
        .env("BASE_URL", &s.url)
        .env("CONTROL_URL", &s.control)
        .env("ADMIN_KEY", s.token().trim())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("running node (install Node.js: Debian's nodejs package)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the tenant browser probe failed:\n{log}"
    );
    assert!(log.contains("all tenant checks passed"), "{log}");
}

/// A browser uploads a file straight to object storage with a POST policy
/// a function signed (examples/uploads): the page's origin is not the S3
/// endpoint's, so the bucket's CORS rules are what let it read the answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_browser_uploads_with_a_policy_signed_by_a_function() {
    let (e2e, chromium) = browser_setup();
    common::guests();
    let s = Server::start(&["--s3-listen", "127.0.0.1:0"]);
    let s3 = s3_url(&s);
    assert!(
        s.deploy(&repo().join("examples/uploads"))
            .contains("deployed uploads")
    );
    let keys = s.cli_ok(&["keys", "create", "--app", "uploads", "--s3"]);
    let field = |prefix: &str| {
        keys.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no {prefix:?} in {keys}"))
            .to_string()
    };
    let (key, secret) = (field("access key id"), field("secret access key"));
    for (kind, name, value) in [
        ("config", "s3_endpoint", s3.as_str()),
        ("config", "s3_bucket", "user-files"),
        ("config", "s3_access_key", key.as_str()),
        ("secrets", "s3_secret_key", secret.as_str()),
    ] {
        let r = s
            .http
            .put(format!("{}/v1/apps/uploads/{kind}/{name}", s.control))
            .bearer_auth(s.token().trim())
            .body(value.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "setting {name}: {}", r.status());
    }
    // The bucket, and a CORS rule for the page's origin, with aws-cli.
    let aws = |args: &[&str]| {
        let out = Command::new(repo().join("target/pyenv/bin/aws"))
            .args(["--endpoint-url", &s3, "--region", "us-east-1"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .output()
            .expect("aws-cli in target/pyenv: run ./scripts/test (it creates it)");
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    aws(&["s3", "mb", "s3://user-files"]);
    let cors = format!(
        r#"{{"CORSRules":[{{"AllowedOrigins":["{}"],"AllowedMethods":["GET","HEAD","POST"],"AllowedHeaders":["x-amz-*"],"ExposeHeaders":["Content-Length"]}}]}}"#,
        s.url.trim_end_matches('/')
    );
    aws(&[
        "s3api",
        "put-bucket-cors",
        "--bucket",
        "user-files",
        "--cors-configuration",
        &cors,
    ]);

    let content = "hello from a browser form";
    let out = Command::new("node")
        .arg(e2e.join("upload.mjs"))
        .env("BASE_URL", &s.url)
        .env("CHROMIUM", &chromium)
        .env("CONTENT", content)
        .output()
        .expect("running node (install Node.js: Debian's nodejs package)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser upload failed:\n{log}");
    assert!(log.contains("all upload checks passed"), "{log}");
    // What the browser stored is there, public as its policy said.
    let key = log
        .lines()
        .find_map(|l| l.strip_prefix("[e2e] stored as: "))
        .unwrap_or_else(|| panic!("no key in {log}"));
    let r = reqwest::get(format!("{s3}/user-files/{key}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain",
        "the type its policy pinned"
    );
    assert_eq!(r.text().await.unwrap(), content);
}
