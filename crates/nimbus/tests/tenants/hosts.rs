//! Origins: a host-bound app's host serves only that app, a host belongs to
//! one app, the console and the control API live on a listener of their
//! own, and no app installs a service worker over a shared origin.

use crate::common::{Server, app_dir};

/// Tenant A: bound to `shop.example.com`, a user pool, a page and a
/// service worker of its own.
const SHOP: &str = r#"
[app]
name = "shop"
host = "shop.example.com"

[auth]

[functions.page]
component = "@WASM@/site.wasm"
env = { BODY = "the shop" }

[functions.sw]
component = "@WASM@/site.wasm"
env = { BODY = "self.onfetch = () => {};", CONTENT_TYPE = "text/javascript", HEADERS = "service-worker-allowed: /" }

[[triggers.http]]
route = "/shop"
function = "page"

[[triggers.http]]
route = "/sw.js"
function = "sw"
"#;

/// Tenant B: no host, a `/login` page, a service worker script that asks
/// for the whole origin, and a user pool.
const EVIL: &str = r#"
[app]
name = "evil"

[auth]

[functions.login]
component = "@WASM@/site.wasm"
env = { BODY = "<form>type your shop password here</form>" }

[functions.sw]
component = "@WASM@/site.wasm"
env = { BODY = "self.onfetch = (e) => {};", CONTENT_TYPE = "text/javascript", HEADERS = "service-worker-allowed: /" }

[[triggers.http]]
route = "/login"
function = "login"

[[triggers.http]]
route = "/evil-sw.js"
function = "sw"
"#;

fn two_tenants() -> Server {
    let s = Server::in_process(&[]);
    s.deploy(app_dir(SHOP).path());
    s.deploy(app_dir(EVIL).path());
    s
}

async fn get(s: &Server, host: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = s.http.get(format!("{}{path}", s.url)).header("host", host);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenant_cannot_answer_on_a_bound_host() {
    let s = two_tenants();
    // B's page is not served on A's host, though A has no /login.
    let r = get(&s, "shop.example.com", "/login", &[]).await;
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("password"));
    // A's own routes are, and B's page still is on any other host.
    let r = get(&s, "shop.example.com", "/shop", &[]).await;
    assert_eq!(r.text().await.unwrap(), "the shop");
    let r = get(&s, "anything.test", "/login", &[]).await;
    assert_eq!(r.status(), 200);
    // Nor is B's client API (its user pool) served on A's origin; A's is.
    let r = get(&s, "shop.example.com", "/v1/apps/evil/auth/jwks.json", &[]).await;
    assert_eq!(r.status(), 404);
    let r = get(&s, "shop.example.com", "/v1/apps/shop/auth/jwks.json", &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("keys"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_belongs_to_one_app() {
    let s = two_tenants();
    let claim = EVIL.replace(
        "name = \"evil\"",
        "name = \"evil\"\nhost = \"SHOP.example.com\"",
    );
    let err = s.cli_err(&["deploy", app_dir(&claim).path().to_str().unwrap()]);
    assert!(
        err.contains("host \"shop.example.com\"")
            && err.contains("already belongs to app \"shop\""),
        "{err}"
    );
    // The refused deploy changed nothing: B still serves, unbound.
    let r = get(&s, "anything.test", "/login", &[]).await;
    assert_eq!(r.status(), 200);
    let r = get(&s, "shop.example.com", "/shop", &[]).await;
    assert_eq!(r.text().await.unwrap(), "the shop");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_and_the_control_api_are_not_on_app_origins() {
    let s = two_tenants();
    let admin = s.token();
    let admin = admin.trim();
    for host in ["127.0.0.1", "shop.example.com"] {
        for path in [
            "/console",
            "/console/console.js",
            "/v1/apps",
            "/v1/keys",
            "/v1/apps/shop/logs",
        ] {
            let auth = format!("Bearer {admin}");
            let r = get(&s, host, path, &[("authorization", &auth)]).await;
            assert_eq!(r.status(), 404, "{host}{path} on the app listener");
            let text = r.text().await.unwrap();
            assert!(text.contains("--control-listen"), "{text}");
        }
    }
    // The control listener serves them, and no app route.
    let r = s
        .http
        .get(format!("{}/v1/apps", s.control))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .get(format!("{}/console/", s.control))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for path in ["/login", "/shop", "/evil-sw.js"] {
        let r = s
            .http
            .get(format!("{}{path}", s.control))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} on the control listener");
    }
    // App pages keep their client-facing endpoints on the app origin.
    let r = s
        .http
        .post(format!("{}/v1/apps/evil/auth/signup", s.url))
        .json(&serde_json::json!({ "email": "b@evil.test", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(s.get("/v1/health").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_service_worker_on_a_shared_origin() {
    let s = two_tenants();
    let sw = [("service-worker", "script")];
    // On the shared origin a worker script is refused; the page itself is
    // served, without the header that would widen a worker's scope.
    let r = get(&s, "127.0.0.1", "/evil-sw.js", &sw).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("host of its own"));
    let r = get(&s, "127.0.0.1", "/evil-sw.js", &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("service-worker-allowed").is_none());
    // An app on a host of its own may use service workers there.
    let r = get(&s, "shop.example.com", "/sw.js", &sw).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["service-worker-allowed"], "/");
}
