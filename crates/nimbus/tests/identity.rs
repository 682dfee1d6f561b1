//! Identity and policy end to end: user pools and tokens, API keys with
//! scopes and app isolation, gateway policies (JWT, API keys, rate limits,
//! CIDR lists, body size, CORS), and client access rules on data — against
//! a real server, with the `echo` guest reporting what reached it.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Relay, Server, app_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// The game app: a user pool, a password-reset hook, and one route per policy.
fn game_manifest(url: &str, relay: &str) -> String {
    format!(
        r#"
[app]
name = "game"

[auth]
reset_hook = "mailer"
login_attempts_per_account = 20

[functions.echo]
component = "@WASM@/echo.wasm"

[functions.mailer]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "{relay}" }}
allowed_outbound_hosts = ["127.0.0.1:*"]

[policies.members]
auth = "jwt"

[policies.players]
auth = "jwt"
roles = ["player"]

[policies.partner]
auth = "jwt"
jwks_url = "{url}/v1/apps/other/auth/jwks.json"
issuer = "nimbus:other"
audience = "other"

[policies.wrong_audience]
auth = "jwt"
jwks_url = "{url}/v1/apps/other/auth/jwks.json"
audience = "game"

[policies.keyed]
auth = "api_key"
rate_limit = {{ requests = 4, per = "1m", by = "key" }}

[policies.limited]
rate_limit = {{ requests = 3, per = "1m" }}

[policies.blocked]
deny = ["127.0.0.0/8", "::1/128"]

[policies.intranet]
allow = ["10.0.0.0/8"]

[policies.small]
max_body_kb = 1

[policies.web]
cors = {{ origins = ["https://game.example"], credentials = true, max_age = "10m" }}
max_body_kb = 1

[collections.games]
access = "owner"
owner_field = "player"

[collections.news]
access = "public-read"

[kv.prefs]
access = "owner"

[kv.shared]
access = "authenticated"

[kv.internal]

[queues.jobs]

[[triggers.http]]
route = "/public"
function = "echo"

[[triggers.http]]
route = "/me"
function = "echo"
policy = "members"

[[triggers.http]]
route = "/vip"
function = "echo"
policy = "players"

[[triggers.http]]
route = "/partner"
function = "echo"
policy = "partner"

[[triggers.http]]
route = "/wrong-audience"
function = "echo"
policy = "wrong_audience"

[[triggers.http]]
route = "/keyed"
function = "echo"
policy = "keyed"

[[triggers.http]]
route = "/limited"
function = "echo"
policy = "limited"

[[triggers.http]]
route = "/blocked"
function = "echo"
policy = "blocked"

[[triggers.http]]
route = "/intranet"
function = "echo"
policy = "intranet"

[[triggers.http]]
route = "/small"
function = "echo"
policy = "small"

[[triggers.http]]
route = "/web"
function = "echo"
policy = "web"
"#
    )
}

/// A second app with its own pool (short-lived tokens) and resources.
const OTHER: &str = r#"
[app]
name = "other"

[auth]
access_ttl = "1s"

[functions.echo]
component = "@WASM@/echo.wasm"

[kv.shared]
access = "authenticated"

[collections.news]
access = "public-read"

[queues.jobs]

[[triggers.http]]
route = "/other"
function = "echo"
"#;

async fn setup() -> (Server, Relay, Vec<tempfile::TempDir>) {
    let s = Server::in_process(&[]);
    let relay = Relay::start().await;
    let other = app_dir(OTHER);
    s.deploy(other.path());
    let game = app_dir(&game_manifest(&s.url, &relay.url));
    s.deploy(game.path());
    (s, relay, vec![game, other])
}

/// A request with an optional bearer token and JSON body.
async fn call(
    s: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    // The control API on its listener; app routes on the apps'.
    let base = if path.starts_with("/v1/") {
        &s.control
    } else {
        &s.url
    };
    let mut rb = s.http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, headers)
}

async fn signup(s: &Server, app: &str, email: &str, password: &str) -> Value {
    let (st, v, _) = call(
        s,
        Method::POST,
        &format!("/v1/apps/{app}/auth/signup"),
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

async fn login(s: &Server, app: &str, email: &str, password: &str) -> (StatusCode, Value) {
    let (st, v, _) = call(
        s,
        Method::POST,
        &format!("/v1/apps/{app}/auth/login"),
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await;
    (st, v)
}

fn tok(v: &Value) -> String {
    v["access_token"].as_str().unwrap().to_string()
}

/// Replaces a token's claims, keeping its header and signature.
fn tamper(token: &str, claims: Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test(flavor = "multi_thread")]
async fn users_tokens_and_jwt_routes() {
    let (s, relay, _dirs) = setup().await;

    // Sign-up and login.
    let ann = signup(&s, "game", "Ann@Example.com", "correct horse").await;
    let ann_id = ann["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(ann["user"]["email"], "ann@example.com");
    assert_eq!(ann["token_type"], "Bearer");
    let (st, _) = login(&s, "game", "ann@example.com", "wrong password").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, sess) = login(&s, "game", "ann@example.com", "correct horse").await;
    assert_eq!(st, StatusCode::OK);
    let token = tok(&sess);
    let (st, me, _) = call(&s, Method::GET, "/v1/apps/game/auth/me", Some(&token), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["id"], ann_id.as_str());

    // The verified identity reaches the function; forged headers do not,
    // and the token itself is not passed on.
    let forged = s
        .http
        .get(format!("{}/me", s.url))
        .bearer_auth(&token)
        .header("nimbus-auth-subject", "admin")
        .header("nimbus-auth-claims", "{\"roles\":[\"admin\"]}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::OK);
    let echoed: Value = forged.json().await.unwrap();
    assert_eq!(echoed["auth"]["subject"], ann_id.as_str(), "{echoed}");
    assert_eq!(echoed["auth"]["kind"], "jwt");
    let claims: Value = serde_json::from_str(echoed["auth"]["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims["email"], "ann@example.com");
    assert_eq!(echoed["credentials"], false);
    let public = s
        .http
        .get(format!("{}/public", s.url))
        .header("nimbus-auth-subject", "admin")
        .send()
        .await
        .unwrap();
    let echoed: Value = public.json().await.unwrap();
    assert_eq!(
        echoed["auth"],
        json!({}),
        "clients cannot inject identity: {echoed}"
    );

    // No token, a tampered token, alg=none, another app's token: 401.
    let (st, _, h) = call(&s, Method::GET, "/me", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(h.contains_key("www-authenticate"));
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let evil = json!({"sub": "someone-else", "aud": "game", "iss": "nimbus:game", "exp": exp, "roles": ["player"]});
    let (st, v, _) = call(
        &s,
        Method::GET,
        "/me",
        Some(&tamper(&token, evil.clone())),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(evil.to_string())
    );
    let (st, _, _) = call(&s, Method::GET, "/me", Some(&none), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let bob = signup(&s, "other", "bob@example.com", "bobs password").await;
    let (st, v, _) = call(&s, Method::GET, "/me", Some(&tok(&bob)), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "another app's token: {v}");

    // Roles: 403 until an admin grants one; the next token carries it.
    let (st, _, _) = call(&s, Method::GET, "/vip", Some(&token), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.cli_ok(&["users", "roles", "game", &ann_id, "player"]);
    let listed = s.cli_ok(&["users", "list", "game"]);
    assert!(
        listed.contains("ann@example.com") && listed.contains("player"),
        "{listed}"
    );
    let (_, sess) = login(&s, "game", "ann@example.com", "correct horse").await;
    let token = tok(&sess);
    let (st, _, _) = call(&s, Method::GET, "/vip", Some(&token), None).await;
    assert_eq!(st, StatusCode::OK);

    // Refresh rotates; a replayed refresh token signs every session out.
    let r1 = sess["refresh_token"].as_str().unwrap().to_string();
    let (st, sess2, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/refresh",
        None,
        Some(json!({ "refresh_token": r1 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let r2 = sess2["refresh_token"].as_str().unwrap().to_string();
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/refresh",
        None,
        Some(json!({ "refresh_token": r1 })),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a spent refresh token");
    // Moments after a refresh, its spent token is refused without signing
    // the user out (two tabs); a later replay revokes every session (the
    // store's unit test covers that).
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/refresh",
        None,
        Some(json!({ "refresh_token": r2 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // An expired or broken token sent along does not block login or refresh.
    let r = s
        .http
        .post(format!("{}/v1/apps/game/auth/login", s.url))
        .bearer_auth(tamper(&token, json!({"sub": "x"})))
        .json(&json!({ "email": "ann@example.com", "password": "correct horse" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Logout revokes.
    let (_, sess3) = login(&s, "game", "ann@example.com", "correct horse").await;
    let r3 = sess3["refresh_token"].as_str().unwrap();
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/logout",
        None,
        Some(json!({ "refresh_token": r3 })),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/refresh",
        None,
        Some(json!({ "refresh_token": r3 })),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Key rotation: the old token still verifies; new ones use the new key.
    let old_kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let out = s.cli_ok(&["users", "rotate-keys", "game"]);
    assert!(out.contains("now signs with key"), "{out}");
    let (st, _, _) = call(&s, Method::GET, "/vip", Some(&token), None).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "tokens of the retired key verify until they expire"
    );
    let (_, sess4) = login(&s, "game", "ann@example.com", "correct horse").await;
    let new_kid = jsonwebtoken::decode_header(&tok(&sess4))
        .unwrap()
        .kid
        .unwrap();
    assert_ne!(old_kid, new_kid);
    let (_, jwks, _) = call(&s, Method::GET, "/v1/apps/game/auth/jwks.json", None, None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));

    // An external issuer (the other app's pool, through its JWKS URL).
    let bob = signup(&s, "other", "bob2@example.com", "bobs password").await;
    let (st, v, _) = call(&s, Method::GET, "/partner", Some(&tok(&bob)), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["auth"]["subject"], bob["user"]["id"]);
    let (st, v, _) = call(&s, Method::GET, "/wrong-audience", Some(&tok(&bob)), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(v.as_str().unwrap().contains("audience"), "{v}");
    let (st, _, _) = call(&s, Method::GET, "/partner", Some(&token), None).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "game's token is not the partner's"
    );

    // Password reset through the hook function.
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/password-reset",
        None,
        Some(json!({ "email": "ann@example.com" })),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/password-reset",
        None,
        Some(json!({ "email": "nobody@example.com" })),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::ACCEPTED,
        "the same answer for unknown accounts"
    );
    let reports = relay
        .wait_until(20, "the reset event", |r| !r.is_empty())
        .await;
    let event: Value = serde_json::from_str(reports[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["type"], "password_reset");
    assert_eq!(event["email"], "ann@example.com");
    let reset = event["token"].as_str().unwrap();
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/password-reset/confirm",
        None,
        Some(json!({ "token": reset, "new_password": "battery staple" })),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        login(&s, "game", "ann@example.com", "correct horse")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (st, sess) = login(&s, "game", "ann@example.com", "battery staple").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(relay.count(), 1, "no event for the unknown account");

    // Change password, then delete the account.
    let (st, sess, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/auth/password",
        Some(&tok(&sess)),
        Some(json!({ "current_password": "battery staple", "new_password": "tr0ub4dor&3" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = call(
        &s,
        Method::DELETE,
        "/v1/apps/game/auth/me",
        Some(&tok(&sess)),
        Some(json!({ "password": "tr0ub4dor&3" })),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        login(&s, "game", "ann@example.com", "tr0ub4dor&3").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Login attempts are limited per account (the default: 5 a minute).
    signup(&s, "other", "eve@example.com", "eves password").await;
    for _ in 0..5 {
        assert_eq!(
            login(&s, "other", "eve@example.com", "guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = s
        .http
        .post(format!("{}/v1/apps/other/auth/login", s.url))
        .json(&json!({ "email": "eve@example.com", "password": "eves password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // Expired tokens (the other app's live 1 s; 2 s of leeway on top).
    let payload = tok(&bob).split('.').nth(1).unwrap().to_string();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let expired_at = Duration::from_secs(claims["exp"].as_u64().unwrap() + 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(expired_at.saturating_sub(now) + Duration::from_millis(100)).await;
    let (st, v, _) = call(&s, Method::GET, "/partner", Some(&tok(&bob)), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(v.as_str().unwrap().contains("expired"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_scopes_and_app_isolation() {
    let (s, _relay, dirs) = setup().await;
    let created = s.cli_ok(&[
        "keys",
        "create",
        "game-admin",
        "--app",
        "game",
        "--scope",
        "admin",
    ]);
    let ka = created.lines().next().unwrap().trim().to_string();
    let reader = s.cli_ok(&[
        "keys",
        "create",
        "game-reader",
        "--app",
        "game",
        "--scope",
        "read-logs",
    ]);
    let kr = reader.lines().next().unwrap().trim().to_string();
    let listed = s.cli_ok(&["keys", "list"]);
    assert!(
        listed.contains("admin") && listed.contains("game-reader"),
        "{listed}"
    );

    // game's admin key: 403 on every resource of app `other`.
    let other_paths: [(Method, &str, Option<Value>); 10] = [
        (Method::GET, "/v1/apps/other", None),
        (Method::GET, "/v1/apps/other/functions", None),
        (Method::POST, "/v1/apps/other/functions/echo/invoke/", None),
        (Method::GET, "/v1/apps/other/kv/shared/k", None),
        (
            Method::PUT,
            "/v1/apps/other/docs/news/n1",
            Some(json!({"a": 1})),
        ),
        (
            Method::POST,
            "/v1/apps/other/queues/jobs/messages",
            Some(json!({"a": 1})),
        ),
        (Method::GET, "/v1/apps/other/users", None),
        (Method::POST, "/v1/apps/other/keys/s3", None),
        (
            Method::POST,
            "/v1/apps/other/revisions",
            Some(json!({"manifest": "", "components": {}})),
        ),
        (Method::GET, "/v1/apps/other/logs", None),
    ];
    for (m, path, body) in other_paths {
        let (st, v, _) = call(&s, m.clone(), path, Some(&ka), body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {path}: {v}");
    }
    // ... and works on its own app.
    let (st, v, _) = call(&s, Method::GET, "/v1/apps/game/functions", Some(&ka), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v, _) = call(&s, Method::POST, "/v1/apps/game/keys/s3", Some(&ka), None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, apps, _) = call(&s, Method::GET, "/v1/apps", Some(&ka), None).await;
    let names: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["game"], "an app key sees its own app only");
    // It cannot create keys for the other app or platform-wide ones.
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/keys",
        Some(&ka),
        Some(json!({"name": "sneaky", "app": "other", "scopes": ["admin"]})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/keys",
        Some(&ka),
        Some(json!({"name": "sneaky", "scopes": ["admin"]})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The game pool's users are invisible to the other app, and vice versa.
    let (st, _, _) = call(&s, Method::GET, "/v1/apps/game/users", Some(&ka), None).await;
    assert_eq!(st, StatusCode::OK);

    // Scopes: a read-logs key reads but cannot deploy, write data or invoke.
    let (st, _, _) = call(
        &s,
        Method::GET,
        "/v1/apps/game/invocations",
        Some(&kr),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v, _) = call(&s, Method::DELETE, "/v1/apps/game", Some(&kr), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(v["error"].as_str().unwrap().contains("deploy scope"), "{v}");
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/game/kv/internal/x",
        Some(&kr),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let deploy = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["deploy", dirs[0].path().to_str().unwrap(), "--data-dir"])
        .arg(&s.data_dir)
        .env("NIMBUS_TOKEN", &kr)
        .output()
        .unwrap();
    assert!(!deploy.status.success());
    assert!(
        String::from_utf8_lossy(&deploy.stderr).contains("scope"),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    // An app deploy key deploys its app through the CLI.
    let deployer = s.cli_ok(&["keys", "create", "ci", "--app", "game", "--scope", "deploy"]);
    let kd = deployer.lines().next().unwrap().trim().to_string();
    let deploy = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["deploy", dirs[0].path().to_str().unwrap(), "--data-dir"])
        .arg(&s.data_dir)
        .env("NIMBUS_TOKEN", &kd)
        .output()
        .unwrap();
    assert!(
        deploy.status.success(),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );

    // Revoked and unknown keys: 401.
    s.cli_ok(&["keys", "revoke", "game-reader"]);
    let (st, _, _) = call(
        &s,
        Method::GET,
        "/v1/apps/game/invocations",
        Some(&kr),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = call(&s, Method::GET, "/v1/apps", Some("nimbus_nope"), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = call(&s, Method::GET, "/v1/apps", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Client access rules, with user tokens.
    let u1 = signup(&s, "game", "u1@example.com", "password one").await;
    let u2 = signup(&s, "game", "u2@example.com", "password two").await;
    let (t1, t2) = (tok(&u1), tok(&u2));
    let id1 = u1["user"]["id"].as_str().unwrap();
    let id2 = u2["user"]["id"].as_str().unwrap();
    // owner: the writer becomes the owner; others can neither read nor write.
    let (st, d, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/game/docs/games/g1",
        Some(&t1),
        Some(json!({"moves": 1})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["body"]["player"], id1);
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/game/docs/games/g1",
        Some(&t2),
        Some(json!({"moves": 9})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "another user's write is refused");
    let (st, _, _) = call(
        &s,
        Method::PATCH,
        "/v1/apps/game/docs/games/g1",
        Some(&t2),
        Some(json!({"moves": 9})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(
        &s,
        Method::GET,
        "/v1/apps/game/docs/games/g1",
        Some(&t2),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(
        &s,
        Method::DELETE,
        "/v1/apps/game/docs/games/g1",
        Some(&t2),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/game/docs/games/g2",
        Some(&t2),
        Some(json!({"player": id1})),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a user cannot write a document owned by someone else"
    );
    let (st, _, _) = call(
        &s,
        Method::PATCH,
        "/v1/apps/game/docs/games/g1",
        Some(&t1),
        Some(json!({"player": id2})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "nor give their document away");
    call(
        &s,
        Method::PUT,
        "/v1/apps/game/docs/games/g3",
        Some(&t2),
        Some(json!({"moves": 3})),
    )
    .await;
    let (st, q, _) = call(
        &s,
        Method::POST,
        "/v1/apps/game/docs/games/_query",
        Some(&t2),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> = q["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["g3"], "a query sees only the user's documents");
    let (st, _, _) = call(
        &s,
        Method::PATCH,
        "/v1/apps/game/docs/games/g1",
        Some(&t1),
        Some(json!({"moves": 2})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // public-read: anyone reads, clients cannot write.
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/game/docs/news/n1",
        Some(&s.token()),
        Some(json!({"title": "hi"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = call(&s, Method::GET, "/v1/apps/game/docs/news/n1", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/game/docs/news/n2",
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/game/docs/news/n2",
        Some(&t1),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // KV owner rule: keys under the user's id only.
    let (st, _, _) = call(
        &s,
        Method::PUT,
        &format!("/v1/apps/game/kv/prefs/{id1}/theme"),
        Some(&t1),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = call(
        &s,
        Method::GET,
        &format!("/v1/apps/game/kv/prefs/{id1}/theme"),
        Some(&t2),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // An operation on another user's key is refused before its body is
    // read: a malformed body changes nothing.
    for op in [json!({ "increment": 1 }), json!({ "bogus": 1 })] {
        let (st, _, _) = call(
            &s,
            Method::POST,
            &format!("/v1/apps/game/kv/prefs/{id1}/theme"),
            Some(&t2),
            Some(op),
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let (st, page, _) = call(&s, Method::GET, "/v1/apps/game/kv/prefs", Some(&t2), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(page["keys"].as_array().unwrap().len(), 0, "{page}");
    // authenticated: any user; none: no client at all.
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/game/kv/shared/k",
        Some(&t2),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = call(&s, Method::GET, "/v1/apps/game/kv/shared/k", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = call(
        &s,
        Method::GET,
        "/v1/apps/game/kv/internal/k",
        Some(&t1),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A game user's token means nothing to the other app's data.
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/apps/other/kv/shared/k",
        Some(&t1),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_policies_before_instantiation() {
    let (s, _relay, _dirs) = setup().await;
    let invocations = || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.api("/v1/apps/game/invocations?function=echo&limit=1000")
            .await
            .as_array()
            .unwrap()
            .len()
    };
    let before = invocations().await;

    // Rejected requests cost no instance: none of these is recorded.
    for path in ["/me", "/vip", "/keyed", "/blocked", "/intranet"] {
        let (st, _, _) = call(&s, Method::GET, path, None, None).await;
        assert!(
            st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
            "{path}: {st}"
        );
    }
    let big = "x".repeat(2048);
    let r = s
        .http
        .post(format!("{}/small", s.url))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        invocations().await,
        before,
        "policies run before any instance"
    );

    // Body size: a small body passes.
    let r = s
        .http
        .post(format!("{}/small", s.url))
        .body("x".repeat(500))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap().len(), 500);

    // CIDR deny and allow lists (this client is 127.0.0.1).
    let (st, v, _) = call(&s, Method::GET, "/blocked", None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _, _) = call(&s, Method::GET, "/intranet", None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(&s, Method::GET, "/public", None, None).await;
    assert_eq!(st, StatusCode::OK);

    // Rate limit per IP: 3 a minute, then 429 with Retry-After.
    let mut codes = Vec::new();
    let mut retry = None;
    for _ in 0..5 {
        let (st, _, h) = call(&s, Method::GET, "/limited", None, None).await;
        codes.push(st.as_u16());
        if st == StatusCode::TOO_MANY_REQUESTS {
            retry = h
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    let retry = retry.unwrap();
    assert!((1..=20).contains(&retry), "one request every 20 s: {retry}");

    // API keys: the route needs one with the invoke scope on this app, and
    // each key has its own bucket (4 a minute).
    let other_key = s.cli_ok(&[
        "keys",
        "create",
        "other-invoke",
        "--app",
        "other",
        "--scope",
        "invoke",
    ]);
    let other_key = other_key.lines().next().unwrap().trim().to_string();
    let (st, _, _) = call(&s, Method::GET, "/keyed", Some(&other_key), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let k1 = s.cli_ok(&["keys", "create", "k1", "--app", "game", "--scope", "invoke"]);
    let k1 = k1.lines().next().unwrap().trim().to_string();
    let k2 = s.cli_ok(&["keys", "create", "k2", "--app", "game", "--scope", "invoke"]);
    let k2 = k2.lines().next().unwrap().trim().to_string();
    for i in 0..4 {
        let r = s
            .http
            .get(format!("{}/keyed", s.url))
            .header("x-api-key", &k1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["auth"]["subject"], "k1");
        assert_eq!(v["auth"]["kind"], "api_key");
        assert_eq!(
            v["credentials"], false,
            "the key is not passed to the guest"
        );
    }
    let (st, _, _) = call(&s, Method::GET, "/keyed", Some(&k1), None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let (st, _, _) = call(&s, Method::GET, "/keyed", Some(&k2), None).await;
    assert_eq!(st, StatusCode::OK, "another key has its own bucket");

    // CORS: preflights are answered by the gateway for allowed origins.
    let pre = s
        .http
        .request(Method::OPTIONS, format!("{}/web", s.url))
        .header("origin", "https://game.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::OK);
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "https://game.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h.get("nimbus-invocation-id").is_none(), "no function ran");
    let pre = s
        .http
        .request(Method::OPTIONS, format!("{}/web", s.url))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(pre.headers().get("access-control-allow-origin").is_none());
    let get = s
        .http
        .get(format!("{}/web", s.url))
        .header("origin", "https://game.example")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(
        get.headers()["access-control-allow-origin"],
        "https://game.example"
    );
    assert!(get.headers().contains_key("nimbus-invocation-id"));
    // Refusals carry CORS headers too, so the browser app can read them.
    let refused = s
        .http
        .post(format!("{}/web", s.url))
        .header("origin", "https://game.example")
        .body("x".repeat(2048))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "https://game.example"
    );
}
