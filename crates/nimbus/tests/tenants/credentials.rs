//! Credentials at rest: what the platform stores (events, records, logs,
//! replay inputs) holds no caller credential, and a session that ended
//! takes its access tokens with it.

use crate::common::{Relay, Server, app_dir};
use serde_json::{Value, json};
use sqlx::Row;
use std::time::Duration;

/// Every stored text the platform keeps about requests, as (table.column,
/// value): event messages, invocation records, logs, replay inputs.
async fn stored_texts(s: &Server) -> Vec<(String, String)> {
    let store = nimbus_store::Store::open_for_test(&s.data_dir)
        .await
        .unwrap();
    let mut out = Vec::new();
    let reads: [(&str, &[&str], &[&str]); 4] = [
        ("messages", &["path", "headers", "last_error"], &["body"]),
        ("invocations", &["path", "error"], &[]),
        ("logs", &["text"], &[]),
        ("failed_inputs", &["path", "headers"], &["body"]),
    ];
    for (table, texts, blobs) in reads {
        let cols: Vec<&str> = texts.iter().chain(blobs.iter()).copied().collect();
        let rows = sqlx::query(&format!("SELECT {} FROM {table}", cols.join(", ")))
            .fetch_all(store.pool())
            .await
            .unwrap();
        for r in rows {
            for c in texts.iter() {
                if let Ok(Some(v)) = r.try_get::<Option<String>, _>(*c) {
                    out.push((format!("{table}.{c}"), v));
                }
            }
            for c in blobs.iter() {
                let v: Vec<u8> = r.try_get(*c).unwrap();
                out.push((
                    format!("{table}.{c}"),
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            }
        }
    }
    out
}

/// Where `needle` is stored, if anywhere.
async fn stored_where(s: &Server, needle: &str) -> Vec<String> {
    stored_texts(s)
        .await
        .into_iter()
        .filter(|(_, v)| v.contains(needle))
        .map(|(place, v)| format!("{place}: {v}"))
        .collect()
}

const VAULT: &str = r#"
[app]
name = "vault"

[auth]
reset_hook = "mailer"

[functions.echo]
component = "@WASM@/echo.wasm"

[functions.chaos]
component = "@WASM@/chaos.wasm"

[functions.mailer]
component = "@WASM@/chaos.wasm"
env = { ACTION = "dump" }

[policies.members]
auth = "jwt"

[[triggers.http]]
route = "/inbox"
function = "echo"

[[triggers.http]]
route = "/chaos/*"
function = "chaos"

[[triggers.http]]
route = "/me"
function = "echo"
policy = "members"
"#;

fn vault() -> Server {
    let s = Server::in_process(&[]);
    s.deploy(app_dir(VAULT).path());
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_request_is_stored_without_its_credentials() {
    let s = vault();
    let r = s
        .http
        .post(format!("{}/inbox", s.url))
        .header("prefer", "respond-async")
        .header("authorization", "Bearer secret-bearer-7f3a")
        .header("cookie", "sid=secret-cookie-7f3a")
        .header("x-api-key", "secret-key-7f3a")
        .header("x-order", "42")
        .body("the order")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.api_wait(&format!("/v1/apps/vault/invocations/{id}"), 20, |v| {
        v["state"] == "succeeded"
    })
    .await;
    for secret in [
        "secret-bearer-7f3a",
        "secret-cookie-7f3a",
        "secret-key-7f3a",
    ] {
        let found = stored_where(&s, secret).await;
        assert!(found.is_empty(), "{secret} is stored: {found:#?}");
    }
    // The rest of the request was kept and delivered.
    let stored = stored_where(&s, "x-order").await;
    assert!(!stored.is_empty(), "the request's other headers were kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_keep_no_credential_in_a_query_string() {
    let s = vault();
    let r = s
        .get("/chaos/panic?x=1&access_token=secret-query-91c2")
        .await;
    assert_eq!(r.status(), 500);
    s.api_wait("/v1/apps/vault/invocations?function=chaos", 20, |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    // The failed input is written with the record: wait for both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found = stored_where(&s, "secret-query-91c2").await;
    assert!(found.is_empty(), "the query's token is stored: {found:#?}");
    let kept = stored_where(&s, "access_token=[redacted]").await;
    assert!(
        kept.iter().any(|k| k.starts_with("invocations.path")),
        "the record keeps the path, redacted: {kept:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_reset_hook_keeps_no_token() {
    let s = vault();
    let r = s
        .http
        .post(format!("{}/v1/apps/vault/auth/signup", s.url))
        .json(&json!({ "email": "ann@vault.test", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = s
        .http
        .post(format!("{}/v1/apps/vault/auth/password-reset", s.url))
        .json(&json!({ "email": "ann@vault.test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The hook fails every attempt (it prints its input and answers 500).
    let invs = s
        .api_wait("/v1/apps/vault/invocations?function=mailer", 30, |v| {
            v.as_array().is_some_and(|a| a.len() >= 3)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for inv in invs.as_array().unwrap() {
        let id = inv["id"].as_str().unwrap();
        let r = s
            .http
            .get(format!(
                "{}/v1/apps/vault/invocations/{id}/input",
                s.control
            ))
            .bearer_auth(s.token().trim())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "no replay input is kept of a reset hook");
    }
    let logs = s.cli_ok(&["logs", "vault"]);
    assert!(
        logs.contains("chaos: got") && logs.contains("[redacted]"),
        "{logs}"
    );
    assert!(!logs.contains("nimbus_reset_"), "{logs}");
    let found = stored_where(&s, "nimbus_reset_").await;
    assert!(found.is_empty(), "a reset token is stored: {found:#?}");
}

async fn signup(s: &Server, email: &str) -> Value {
    let r = s
        .http
        .post(format!("{}/v1/apps/vault/auth/signup", s.url))
        .json(&json!({ "email": email, "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

/// The status of `/me` (a JWT route) and of `/auth/me` with this session's
/// access token.
async fn with_token(s: &Server, session: &Value) -> (u16, u16) {
    let token = session["access_token"].as_str().unwrap();
    let route = s
        .http
        .get(format!("{}/me", s.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let me = s
        .http
        .get(format!("{}/v1/apps/vault/auth/me", s.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (route, me)
}

async fn post(s: &Server, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut rb = s.http.post(format!("{}{path}", s.url)).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_session_takes_its_access_tokens_with_it() {
    let s = vault();
    // Logout everywhere.
    let a = signup(&s, "a@vault.test").await;
    assert_eq!(with_token(&s, &a).await, (200, 200));
    let (st, _) = post(
        &s,
        "/v1/apps/vault/auth/logout",
        None,
        json!({ "refresh_token": a["refresh_token"], "everywhere": true }),
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(
        with_token(&s, &a).await,
        (401, 401),
        "after logout everywhere"
    );
    let (st, again) = post(
        &s,
        "/v1/apps/vault/auth/login",
        None,
        json!({ "email": "a@vault.test", "password": "correct horse battery" }),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        with_token(&s, &again).await,
        (200, 200),
        "a new session works"
    );

    // A password change: the old token dies, the session it returns lives.
    let (st, changed) = post(
        &s,
        "/v1/apps/vault/auth/password",
        again["access_token"].as_str(),
        json!({ "current_password": "correct horse battery", "new_password": "battery staple horse" }),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        with_token(&s, &again).await,
        (401, 401),
        "after a password change"
    );
    assert_eq!(with_token(&s, &changed).await, (200, 200));

    // A role change by an admin: the token with the old roles dies; a
    // refresh gives one with the new roles.
    let id = changed["user"]["id"].as_str().unwrap();
    let r = s
        .http
        .put(format!("{}/v1/apps/vault/users/{id}/roles", s.control))
        .bearer_auth(s.token().trim())
        .json(&json!({ "roles": [] }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        with_token(&s, &changed).await,
        (401, 401),
        "after a role change"
    );
    let (st, refreshed) = post(
        &s,
        "/v1/apps/vault/auth/refresh",
        None,
        json!({ "refresh_token": changed["refresh_token"] }),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(with_token(&s, &refreshed).await, (200, 200));

    // The account's deletion.
    let r = s
        .http
        .delete(format!("{}/v1/apps/vault/auth/me", s.url))
        .bearer_auth(refreshed["access_token"].as_str().unwrap())
        .json(&json!({ "password": "battery staple horse" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        with_token(&s, &refreshed).await.0,
        401,
        "after the account's deletion"
    );

    // Another user's session is untouched by all of it.
    let b = signup(&s, "b@vault.test").await;
    assert_eq!(with_token(&s, &b).await, (200, 200));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_kills_outstanding_reset_tokens() {
    let s = Server::in_process(&["--allow-egress", "127.0.0.0/8"]);
    let relay = Relay::start().await;
    let manifest = format!(
        "{VAULT}\n[functions.relay]\ncomponent = \"@WASM@/consumer.wasm\"\nenv = {{ RELAY_URL = \"{}\" }}\nallowed_outbound_hosts = [\"127.0.0.1:*\"]\n",
        relay.url
    )
    .replace("reset_hook = \"mailer\"", "reset_hook = \"relay\"");
    s.deploy(app_dir(&manifest).path());
    let a = signup(&s, "c@vault.test").await;
    let (st, _) = post(
        &s,
        "/v1/apps/vault/auth/password-reset",
        None,
        json!({ "email": "c@vault.test" }),
    )
    .await;
    assert_eq!(st, 202);
    let reports = relay
        .wait_until(20, "the reset token", |r| !r.is_empty())
        .await;
    let event: Value = serde_json::from_str(reports[0]["body"].as_str().unwrap()).unwrap();
    let reset = event["token"].as_str().unwrap().to_string();
    let (st, _) = post(
        &s,
        "/v1/apps/vault/auth/password",
        a["access_token"].as_str(),
        json!({ "current_password": "correct horse battery", "new_password": "battery staple horse" }),
    )
    .await;
    assert_eq!(st, 200);
    // The token mailed before the change no longer sets a password.
    let (st, v) = post(
        &s,
        "/v1/apps/vault/auth/password-reset/confirm",
        None,
        json!({ "token": reset, "new_password": "an attacker's choice" }),
    )
    .await;
    assert_eq!(st, 401, "{v}");
    let (st, _) = post(
        &s,
        "/v1/apps/vault/auth/login",
        None,
        json!({ "email": "c@vault.test", "password": "battery staple horse" }),
    )
    .await;
    assert_eq!(st, 200);
}
