//! Deletion: `nimbus delete APP` removes everything the app owns, in every
//! store — its keys stop working at once, and a later app of the same name
//! (another tenant, perhaps) starts empty and reaches nothing of the old
//! one's.

use crate::common::{Server, app_dir, s3_key, s3_url};
use crate::s3auth::{ok, probe, refused};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const SHOP: &str = r#"
[app]
name = "shop"

[auth]

[kv.carts]

[collections.orders]

[functions.api]
component = "@WASM@/chaos.wasm"

[functions.data]
component = "@WASM@/data.wasm"
kv = ["carts"]
collections = ["orders"]

[[triggers.http]]
route = "/shop/{*what}"
function = "api"
"#;

/// Object body files under the data dir (the harness's shared dir).
fn body_files(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let root = data_dir.join("objects");
    for fan in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if fan.file_name() == "tmp" || !fan.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(fan.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// A control API request with `token`: (status, JSON body or null).
async fn call(
    s: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = s
        .http
        .request(method, format!("{}{path}", s.control))
        .bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The app's rows in every table (`Store::app_footprint`), straight from
/// the server's database.
async fn footprint(s: &Server, app: &str) -> std::collections::BTreeMap<String, i64> {
    let store = nimbus_store::Store::open_for_test(&s.data_dir)
        .await
        .unwrap();
    store.app_footprint(app).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_app_leaves_nothing_for_the_next_app_of_its_name() {
    let s = Server::in_process(&["--s3-listen", "127.0.0.1:0"]);
    let admin = s.token();
    let dir = app_dir(SHOP);
    s.deploy(dir.path());
    let url = s3_url(&s);
    use reqwest::Method;

    // Data in every store.
    let r = s
        .http
        .put(format!("{}/v1/apps/shop/kv/carts/c1", s.control))
        .bearer_auth(&admin)
        .body("three apples")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "kv put: {}", r.status());
    let (st, v) = call(
        &s,
        &admin,
        Method::PUT,
        "/v1/apps/shop/docs/orders/o1",
        Some(json!({ "card": "4111-1111", "total": 42 })),
    )
    .await;
    assert!(st < 300, "doc put: {st} {v}");
    s.cli_ok(&["config", "set", "shop", "mode", "live"]);
    s.cli_ok(&["secrets", "set", "shop", "payment_token", "tok-very-secret"]);
    let (st, v) = call(
        &s,
        &admin,
        Method::POST,
        "/v1/apps/shop/users",
        Some(json!({ "email": "ann@example.com", "password": "correct horse battery" })),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (st, login) = call(
        &s,
        "",
        Method::POST,
        "/v1/apps/shop/auth/login",
        Some(json!({ "email": "ann@example.com", "password": "correct horse battery" })),
    )
    .await;
    assert_eq!(st, 200, "{login}");
    let user_token = login["access_token"].as_str().unwrap().to_string();
    let out = s.cli_ok(&[
        "keys", "create", "shop-ci", "--app", "shop", "--scope", "data",
    ]);
    let api_key = out.lines().next().unwrap().trim().to_string();
    let (st, _) = call(&s, &api_key, Method::GET, "/v1/apps/shop/kv/carts/c1", None).await;
    assert_eq!(st, 200, "the app's API key reads its KV");
    let key = s3_key(&s, "shop");
    ok(probe(&url, &key, "mb", &["shop-data"]), "create bucket");
    ok(
        probe(
            &url,
            &key,
            "put",
            &["shop-data", "invoice.pdf", "old tenant's invoice"],
        ),
        "put object",
    );
    let upload = ok(
        probe(&url, &key, "mpu", &["shop-data", "big.bin"]),
        "multipart upload",
    );
    assert!(upload["upload"].as_str().is_some(), "{upload}");
    // A guest's KV operation (an op span) and a failed invocation whose
    // input is kept for replay (with a log line).
    let r = s
        .http
        .post(format!(
            "{}/v1/apps/shop/functions/data/invoke/incr/carts/hits",
            s.control
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let traced = crate::common::invocation_id(&r);
    let r = s
        .http
        .post(format!("{}/shop/parse", s.url))
        .body("card number 4111-1111, not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let failed = crate::common::invocation_id(&r);
    s.api_wait("/v1/apps/shop/invocations", 20, |v| {
        v.as_array().unwrap().len() >= 2
    })
    .await;
    let kept = s
        .api(&format!("/v1/apps/shop/invocations/{failed}/input"))
        .await;
    assert_eq!(kept["input"]["method"], "POST", "{kept}");
    s.wait_for_log("shop", &[], "cannot parse").await;
    let trace_id = s.api(&format!("/v1/invocations/{traced}")).await["trace_id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = nimbus_store::Store::open_for_test(&s.data_dir)
        .await
        .unwrap();
    assert!(
        !store.trace_ops(&trace_id).await.unwrap().is_empty(),
        "the guest's KV operation has a span"
    );
    let before = footprint(&s, "shop").await;
    for table in [
        "apps",
        "revisions",
        "kv",
        "docs",
        "config",
        "users",
        "refresh_tokens",
        "signing_keys",
        "api_keys",
        "s3_keys",
        "buckets",
        "objects",
        "uploads",
        "upload_parts",
        "invocations",
        "logs",
        "failed_inputs",
        "op_spans",
    ] {
        assert!(before[table] > 0, "no {table} rows to delete: {before:?}");
    }
    assert!(
        body_files(&s.data_dir).len() >= 2,
        "an object and a part on disk"
    );

    s.cli_ok(&["delete", "shop"]);

    // The old credentials are refused at once.
    refused(
        probe(&url, &key, "list-buckets", &[]),
        403,
        "InvalidAccessKeyId",
        "the deleted app's S3 key",
    );
    refused(
        probe(&url, &key, "get", &["shop-data", "invoice.pdf"]),
        403,
        "InvalidAccessKeyId",
        "the deleted app's S3 key reading",
    );
    refused(
        probe(&url, &key, "put", &["shop-data", "planted", "x"]),
        403,
        "InvalidAccessKeyId",
        "the deleted app's S3 key writing",
    );
    let (st, _) = call(&s, &api_key, Method::GET, "/v1/apps/shop/kv/carts/c1", None).await;
    assert_eq!(st, 401, "the deleted app's API key");

    // Nothing of it is left in any table (usage totals are kept for
    // billing), nor on disk.
    let after = footprint(&s, "shop").await;
    let left: Vec<_> = after.iter().filter(|(_, n)| **n > 0).collect();
    assert!(
        left.is_empty(),
        "rows of the deleted app are left: {left:?}"
    );
    assert!(
        store.trace_ops(&trace_id).await.unwrap().is_empty(),
        "op spans of the deleted app are left"
    );
    let files = body_files(&s.data_dir);
    assert!(
        files.is_empty(),
        "object bodies are left on disk: {files:?}"
    );

    // Another tenant deploys an app of the same name: it starts empty.
    s.deploy(dir.path());
    let (st, v) = call(&s, &admin, Method::GET, "/v1/apps/shop/kv/carts/c1", None).await;
    assert_eq!(st, 404, "old KV value: {v}");
    let (st, v) = call(&s, &admin, Method::GET, "/v1/apps/shop/kv/carts", None).await;
    assert!(st == 200 && !v.to_string().contains("c1"), "{st} {v}");
    let (st, v) = call(
        &s,
        &admin,
        Method::GET,
        "/v1/apps/shop/docs/orders/o1",
        None,
    )
    .await;
    assert_eq!(st, 404, "old document: {v}");
    let (_, v) = call(&s, &admin, Method::GET, "/v1/apps/shop/config", None).await;
    assert!(
        !v.to_string().contains("mode") && !v.to_string().contains("payment_token"),
        "old configuration: {v}"
    );
    let (_, v) = call(&s, &admin, Method::GET, "/v1/apps/shop/users", None).await;
    assert_eq!(
        v["users"].as_array().map(Vec::len),
        Some(0),
        "old users: {v}"
    );
    let (st, _) = call(
        &s,
        "",
        Method::POST,
        "/v1/apps/shop/auth/login",
        Some(json!({ "email": "ann@example.com", "password": "correct horse battery" })),
    )
    .await;
    assert_eq!(st, 401, "the old user logs in to the new app");
    let (st, _) = call(&s, &user_token, Method::GET, "/v1/apps/shop/auth/me", None).await;
    assert_eq!(st, 401, "the old user's token is accepted by the new app");
    let (st, _) = call(&s, &api_key, Method::GET, "/v1/apps/shop/kv/carts/c1", None).await;
    assert_eq!(st, 401, "the old API key reaches the new app");
    let v = s.api("/v1/apps/shop/invocations").await;
    assert_eq!(v.as_array().map(Vec::len), Some(0), "old records: {v}");
    let v = s.api("/v1/apps/shop/logs").await;
    assert_eq!(v.as_array().map(Vec::len), Some(0), "old logs: {v}");
    for path in [
        format!("/v1/apps/shop/invocations/{failed}/input"),
        format!("/v1/apps/shop/invocations/{failed}"),
        format!("/v1/invocations/{failed}"),
        format!("/v1/traces/{trace_id}"),
    ] {
        let (st, v) = call(&s, &admin, Method::GET, &path, None).await;
        assert_eq!(st, 404, "{path}: {v}");
    }

    // Its new S3 key sees no bucket; the bucket name is free, and a bucket
    // made under it holds nothing of the old one's.
    let new_key = s3_key(&s, "shop");
    let v = ok(probe(&url, &new_key, "list-buckets", &[]), "list buckets");
    assert_eq!(v["buckets"], json!([]), "{v}");
    refused(
        probe(&url, &new_key, "get", &["shop-data", "invoice.pdf"]),
        404,
        "NoSuchBucket",
        "the old bucket",
    );
    ok(
        probe(&url, &new_key, "mb", &["shop-data"]),
        "the name is free",
    );
    refused(
        probe(&url, &new_key, "get", &["shop-data", "invoice.pdf"]),
        404,
        "NoSuchKey",
        "the old object in a new bucket of the same name",
    );
    let v = ok(probe(&url, &new_key, "list", &["shop-data"]), "list");
    assert_eq!(v["keys"], json!([]), "{v}");
    // The old key still cannot reach the new tenant's bucket.
    refused(
        probe(&url, &key, "list", &["shop-data"]),
        403,
        "InvalidAccessKeyId",
        "the old S3 key on the new app's bucket",
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
}
