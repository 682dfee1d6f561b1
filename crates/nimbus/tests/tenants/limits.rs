//! Noisy tenants: what one app can make the host spend is bounded — S3
//! listings end whatever the keys, a multipart upload cannot complete
//! past the object limit, guests' batch reads, queries and blob reads are
//! capped, deploys cannot ask for unbounded time, storage stops at the
//! app's quotas.

use crate::common::{Server, app_dir, s3_key, s3_url};
use crate::s3auth::{ok, probe, refused};
use serde_json::Value;

fn app(name: &str) -> tempfile::TempDir {
    app_dir(&format!(
        "[app]\nname = \"{name}\"\n[functions.hello]\ncomponent = \"@WASM@/hello.wasm\"\n"
    ))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Invokes `app`'s function `f` with `method` at `path` through the
/// control API.
async fn invoke(
    s: &Server,
    method: &str,
    (app, f): (&str, &str),
    path: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let r = s
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}/v1/apps/{app}/functions/{f}/invoke{path}", s.control),
        )
        .bearer_auth(s.token())
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The hog app's guest.
const HOG_API: (&str, &str) = ("hog", "api");

/// A key with U+10FFFF after its common prefix used to make the listing
/// query the same page forever (the next page started at `prefix +
/// U+10FFFF`, which the key sorts after). Every listing ends, with each key
/// or common prefix exactly once, in pages and in one, in V2 and V1.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_ends_whatever_the_keys() {
    let s = Server::start(&["--s3-listen", "127.0.0.1:0"]);
    s.deploy(app("lister").path());
    let url = s3_url(&s);
    let k = s3_key(&s, "lister");
    ok(probe(&url, &k, "mb", &["keys"]), "create");
    let keys = [
        "a/\u{10FFFF}x",
        "a/\u{10FFFF}",
        "a/b",
        "b/\u{10FFFF}/c",
        "b/d",
        "c",
        "\u{10FFFF}",
        "\u{10FFFF}/z",
    ];
    for key in keys {
        ok(probe(&url, &k, "put", &["keys", key, "x"]), key);
    }
    for check in ["list-all", "list-v1-all"] {
        for page in ["1", "2", "1000"] {
            let v = ok(probe(&url, &k, check, &["keys", "", "/", page]), check);
            assert_eq!(
                strings(&v["keys"]),
                ["c", "\u{10FFFF}"],
                "{check} {page}: {v}"
            );
            assert_eq!(
                strings(&v["prefixes"]),
                ["a/", "b/", "\u{10FFFF}/"],
                "{check} {page}: {v}"
            );
            let v = ok(probe(&url, &k, check, &["keys", "a/", "/", page]), check);
            assert_eq!(
                strings(&v["keys"]),
                ["a/b", "a/\u{10FFFF}", "a/\u{10FFFF}x"],
                "{check} {page}: {v}"
            );
            let v = ok(
                probe(&url, &k, check, &["keys", "", "\u{10FFFF}", page]),
                check,
            );
            assert_eq!(
                strings(&v["prefixes"]),
                ["a/\u{10FFFF}", "b/\u{10FFFF}", "\u{10FFFF}"],
                "{check} {page}: {v}"
            );
            assert_eq!(
                strings(&v["keys"]),
                ["a/b", "b/d", "c"],
                "{check} {page}: {v}"
            );
        }
    }
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    let v = ok(probe(&url, &k, "list-all", &["keys", "", "", "3"]), "all");
    assert_eq!(strings(&v["keys"]), sorted);
}

/// Parts under the object limit each, over it together: completing the
/// upload is refused (it used to assemble an object of any size).
#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_upload_cannot_complete_past_the_object_limit() {
    let s = Server::start(&["--s3-listen", "127.0.0.1:0", "--max-object-mb", "1"]);
    s.deploy(app("uploader").path());
    let url = s3_url(&s);
    let k = s3_key(&s, "uploader");
    ok(probe(&url, &k, "mb", &["uploads"]), "create");
    let v = refused(
        probe(&url, &k, "mpu-complete", &["uploads", "big", "3", "400000"]),
        400,
        "EntityTooLarge",
        "1.2 MB in three parts",
    );
    assert!(
        v["message"].as_str().unwrap().contains("--max-object-mb"),
        "{v}"
    );
    ok(
        probe(
            &url,
            &k,
            "mpu-complete",
            &["uploads", "fits", "2", "400000"],
        ),
        "0.8 MB in two parts",
    );
    let v = ok(probe(&url, &k, "list", &["uploads"]), "list");
    assert_eq!(strings(&v["keys"]), ["fits"]);
}

const HOG: &str = r#"
[app]
name = "hog"

[kv.big]

[collections.docs]
access = "authenticated"

[functions.api]
component = "@WASM@/data.wasm"
memory_mb = 24
kv = ["big"]
collections = ["docs"]
"#;

/// A guest limited to 24 MiB asks the host for 1,000 copies of a 1 MiB
/// value in one batch read, and queries 1,000 documents of 1 MiB (through
/// its interface and the REST API): the host used to gather all of it
/// (over 1 GB) before the guest trapped. Now the batch read is refused
/// with a clear error past 16 MiB, a query page ends at 4 MiB and says so,
/// and the server's peak memory grows by less than 64 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn guests_and_clients_cannot_make_the_host_hold_unbounded_memory() {
    let s = Server::start(&[]);
    s.deploy(app_dir(HOG).path());
    let mb = vec![b'x'; 1 << 20];
    assert_eq!(invoke(&s, "PUT", HOG_API, "/kv/big/k", mb).await.0, 204);
    let doc = format!(r#"{{"pad": "{}"}}"#, "y".repeat((1 << 20) - 16));
    for i in 0..12 {
        let (st, body) = invoke(
            &s,
            "PUT",
            HOG_API,
            &format!("/docs/docs/d{i}"),
            doc.clone().into(),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }
    // Warm up each path once with a small ask, then measure.
    assert_eq!(
        invoke(&s, "GET", HOG_API, "/getmany/big/k?n=2", vec![])
            .await
            .0,
        200
    );
    let before = s.rss_bytes();
    s.reset_peak_rss();

    let (st, body) = invoke(&s, "GET", HOG_API, "/getmany/big/k?n=1000", vec![]).await;
    assert_eq!(st, 500, "{body}");
    assert!(
        body.contains("get-many would return more than 16 MiB"),
        "{body}"
    );
    let (st, body) = invoke(&s, "GET", HOG_API, "/getmany/big/k?n=1001", vec![]).await;
    assert!(body.contains("at most 1000 keys"), "{st} {body}");
    let (st, body) = invoke(
        &s,
        "POST",
        HOG_API,
        "/query/docs",
        br#"{"limit": 1000}"#.to_vec(),
    )
    .await;
    assert_eq!(st, 200, "{}", &body[..body.len().min(300)]);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["ended_early"], true);
    assert!(page["cursor"].is_string());
    let n = page["documents"].as_array().unwrap().len();
    assert!((1..=4).contains(&n), "{n} documents of 1 MiB in a page");

    let r = s
        .http
        .post(format!("{}/v1/apps/hog/docs/docs/_query", s.control))
        .bearer_auth(s.token())
        .body(r#"{"limit": 1000}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["ended_early"], true);
    let n = page["documents"].as_array().unwrap().len();
    assert!(
        (1..=4).contains(&n),
        "{n} documents of 1 MiB in a REST page"
    );

    let grown = s.peak_rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "the server's peak RSS grew by {} MiB",
        grown >> 20
    );
}

/// A guest makes the host hold resources (here `wasi:http` header sets,
/// each with a 64-byte header) that live outside its `memory_mb`: four
/// requests at once asking for 500,000 each used to make the host hold
/// them all (wasmtime's tables allow a million entries per instance). An
/// instance now holds at most 10,000 resources: past that, its request is
/// stopped with a clear error, and the server's memory barely moves.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_cannot_make_the_host_hold_unbounded_resources() {
    let s = Server::start(&[]);
    s.deploy(
        app_dir(
            "[app]\nname = \"hoarder\"\n[functions.api]\ncomponent = \"@WASM@/chaos.wasm\"\nmemory_mb = 16\ntimeout_ms = 30000\n",
        )
        .path(),
    );
    let api = ("hoarder", "api");
    assert_eq!(
        invoke(&s, "GET", api, "/hoard?n=1000", vec![]).await,
        (200, "held 1000".into())
    );
    let before = s.rss_bytes();
    s.reset_peak_rss();
    let hoards = (0..4).map(|_| invoke(&s, "GET", api, "/hoard?n=500000", vec![]));
    let mut answers = Vec::new();
    for (st, body) in futures::future::join_all(hoards).await {
        assert_eq!(st, 500, "{body}");
        assert!(body.contains("holds 10000 host resources"), "{body}");
        answers.push(body);
    }
    let grown = s.peak_rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "the server's peak RSS grew by {} MiB; the answers: {answers:?}",
        grown >> 20
    );
    // The function still serves.
    assert_eq!(
        invoke(&s, "GET", api, "/hoard?n=10", vec![]).await,
        (200, "held 10".into())
    );
}

/// A deploy asking for a timeout beyond the server's cap is refused with
/// a clear error (one of 18446744073709551615 ms used to be served).
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_timeout_is_refused_at_deploy() {
    let s = Server::start(&["--max-timeout-ms", "60000"]);
    let dir = app_dir(
        "[app]\nname = \"slow\"\n[functions.hello]\ncomponent = \"@WASM@/hello.wasm\"\ntimeout_ms = 18446744073709551615\n",
    );
    let err = s.cli_err(&["deploy", dir.path().to_str().unwrap()]);
    assert!(
        err.contains("timeout_ms = 18446744073709551615")
            && err.contains("60000 ms")
            && err.contains("--max-timeout-ms"),
        "{err}"
    );
    let dir = app_dir(
        "[app]\nname = \"slow\"\n[functions.hello]\ncomponent = \"@WASM@/hello.wasm\"\ntimeout_ms = 60000\n",
    );
    s.deploy(dir.path());
}

/// One app with many functions, each under its own limit, holds as many
/// sleeping invocations as it can: it gets its per-app share and 429s
/// past it, and another app's requests are still admitted at once (with
/// one platform pool and per-function limits only, the first app used to
/// take every slot).
#[tokio::test(flavor = "multi_thread")]
async fn one_app_at_its_in_flight_cap_leaves_another_admitted() {
    let s = Server::start(&["--max-app-in-flight", "6", "--admission-timeout-ms", "200"]);
    let mut noisy = String::from("[app]\nname = \"noisy\"\n");
    for i in 0..4 {
        noisy.push_str(&format!(
            "[functions.f{i}]\ncomponent = \"@WASM@/chaos.wasm\"\nmax_concurrency = 100\n"
        ));
    }
    s.deploy(app_dir(&noisy).path());
    s.deploy(app("quiet").path());
    let mut sleepers = Vec::new();
    for i in 0..24 {
        let (http, url, token) = (s.http.clone(), s.control.clone(), s.token());
        sleepers.push(tokio::spawn(async move {
            let r = http
                .post(format!(
                    "{url}/v1/apps/noisy/functions/f{}/invoke/sleep?ms=3000",
                    i % 4
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    for _ in 0..5 {
        let (st, body) = invoke(&s, "POST", ("quiet", "hello"), "", vec![]).await;
        assert_eq!(st, 200, "the quiet app is admitted: {body}");
    }
    let mut ok = 0;
    for t in sleepers {
        let (st, body) = t.await.unwrap();
        match st {
            200 => ok += 1,
            429 => assert!(
                body.contains("app \"noisy\" is at its in-flight limit (6 per app"),
                "{body}"
            ),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ok, 6, "exactly the app's share ran");
}

/// A client-facing call takes one of its app's CPU turns while it is
/// answered, but never while its client is slow: clients of one app that
/// send their request bodies a byte at a time leave every other app's
/// guests running (had they held turns while sending, a few of them would
/// have held every turn of the node).
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_of_one_app_hold_no_cpu_turn() {
    use tokio::io::AsyncWriteExt;
    let s = Server::start(&[]);
    s.deploy(app("slow").path());
    s.deploy(app("quiet").path());
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for i in 0..8 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT /v1/apps/slow/docs/c/d{i} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        slow.push(c);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..5 {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            invoke(&s, "GET", ("quiet", "hello"), "", vec![]),
        )
        .await
        .expect("another app's guest runs while the slow clients send");
        assert_eq!(answer.0, 200, "{}", answer.1);
    }
    // The slow clients are still being waited for, and are answered when
    // they finish: a clear refusal (no such collection), not a hang.
    let mut c = slow.pop().unwrap();
    c.write_all(b"}").await.unwrap();
    c.write_all(&[b' '; 998]).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::AsyncReadExt::take(c, 64), &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
}

fn quota_app(name: &str) -> String {
    format!(
        r#"
[app]
name = "{name}"

[kv.s]

[collections.c]

[functions.api]
component = "@WASM@/data.wasm"
kv = ["s"]
collections = ["c"]
buckets = ["{name}-files"]
"#
    )
}

/// An app at a storage quota gets a clear refusal on each path it can
/// write by (guest KV, documents and blobs, the REST API, S3 PutObject
/// and UploadPart); nothing is written, deleting makes room again, and
/// another app's quota is its own. There were no quotas at all.
#[tokio::test(flavor = "multi_thread")]
async fn writes_past_an_apps_storage_quota_are_refused() {
    let s = Server::start(&[
        "--s3-listen",
        "127.0.0.1:0",
        "--quota-kv-mb",
        "1",
        "--quota-docs-mb",
        "1",
        "--quota-objects-mb",
        "1",
    ]);
    for name in ["full", "roomy"] {
        s.deploy(app_dir(&quota_app(name)).path());
    }
    let full = ("full", "api");
    let kib = |n: usize| vec![b'v'; n << 10];

    // KV through the guest and through REST.
    assert_eq!(invoke(&s, "PUT", full, "/kv/s/a", kib(600)).await.0, 204);
    let (st, body) = invoke(&s, "PUT", full, "/kv/s/b", kib(600)).await;
    assert_eq!(st, 500, "{body}");
    assert!(body.contains("key-value storage quota"), "{body}");
    assert!(body.contains("--quota-kv-mb"), "{body}");
    assert_eq!(invoke(&s, "GET", full, "/kv/s/b", vec![]).await.0, 404);
    let rest = |key: &str, body: Vec<u8>| {
        s.http
            .put(format!("{}/v1/apps/full/kv/s/{key}", s.control))
            .bearer_auth(s.token())
            .body(body)
            .send()
    };
    let r = rest("c", kib(600)).await.unwrap();
    assert_eq!(r.status(), 507);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("key-value storage quota"),
        "{v}"
    );
    // Another app is not affected.
    let roomy = ("roomy", "api");
    assert_eq!(invoke(&s, "PUT", roomy, "/kv/s/b", kib(600)).await.0, 204);
    // Deleting makes room.
    assert_eq!(invoke(&s, "DELETE", full, "/kv/s/a", vec![]).await.0, 204);
    assert_eq!(rest("c", kib(600)).await.unwrap().status(), 204);

    // Documents.
    let doc = format!(r#"{{"pad": "{}"}}"#, "d".repeat(600 << 10));
    let (st, body) = invoke(&s, "PUT", full, "/docs/c/d1", doc.clone().into()).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = invoke(&s, "PUT", full, "/docs/c/d2", doc.clone().into()).await;
    assert_eq!(st, 500, "{body}");
    assert!(body.contains("document storage quota"), "{body}");
    assert_eq!(invoke(&s, "GET", full, "/docs/c/d2", vec![]).await.0, 404);

    // Objects: S3 PutObject and UploadPart, and the guest's blob put.
    let url = s3_url(&s);
    let k = s3_key(&s, "full");
    ok(probe(&url, &k, "mb", &["full-files"]), "create");
    ok(
        probe(
            &url,
            &k,
            "mpu-complete",
            &["full-files", "big", "2", "400000"],
        ),
        "800 kB in two parts",
    );
    let v = refused(
        probe(
            &url,
            &k,
            "mpu-complete",
            &["full-files", "more", "2", "400000"],
        ),
        403,
        "QuotaExceeded",
        "800 kB more",
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("--quota-objects-mb"),
        "{v}"
    );
    let (st, body) = invoke(&s, "PUT", full, "/blob/full-files/g", kib(300)).await;
    assert_eq!(st, 500, "{body}");
    assert!(body.contains("object storage quota"), "{body}");
    let v = ok(probe(&url, &k, "list", &["full-files"]), "list");
    assert_eq!(strings(&v["keys"]), ["big"], "nothing else was written");
    let (st, body) = invoke(&s, "PUT", full, "/blob/full-files/g", kib(100)).await;
    assert_eq!(st, 200, "what fits is written: {body}");
}
