//! S3 keys and signatures: keys are listed (never their secrets) and
//! revocable, and only fresh signatures are accepted — no SigV2-signed
//! request (its date is never checked: a captured one replays forever), no
//! SigV4 request dated outside a 15-minute skew, no presigned URL past its
//! expiry or valid longer than 7 days.
//!
//! Requests are made by the real botocore (`tests/s3/probe.py`, in the
//! venv at target/pyenv that scripts/test creates).

use crate::common::{Server, app_dir, pyenv, s3_key, s3_url};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// One probe (`tests/s3/probe.py CHECK ARGS`) with `key`: what the
/// endpoint answered (`status`, `code`, `message`, and the check's fields).
pub(crate) fn probe(url: &str, key: &(String, String), check: &str, args: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/probe.py");
    let out = Command::new(pyenv().join("python"))
        .arg(&script)
        .args([url, &key.0, &key.1, check])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe {check} {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Asserts a probe succeeded; returns its answer.
pub(crate) fn ok(v: Value, what: &str) -> Value {
    assert_eq!(v["status"], 200, "{what}: {v}");
    v
}

/// Asserts a probe was refused with `status` and `code`; returns its answer.
pub(crate) fn refused(v: Value, status: u16, code: &str, what: &str) -> Value {
    assert_eq!(
        (v["status"].as_u64(), v["code"].as_str()),
        (Some(u64::from(status)), Some(code)),
        "{what}: {v}"
    );
    v
}

fn app(name: &str) -> tempfile::TempDir {
    app_dir(&format!(
        "[app]\nname = \"{name}\"\n[functions.hello]\ncomponent = \"@WASM@/hello.wasm\"\n"
    ))
}

fn start() -> (Server, String, (String, String)) {
    let s = Server::in_process(&["--s3-listen", "127.0.0.1:0"]);
    s.deploy(app("vault").path());
    let key = s3_key(&s, "vault");
    let url = s3_url(&s);
    ok(probe(&url, &key, "mb", &["vault-data"]), "create bucket");
    ok(
        probe(&url, &key, "put", &["vault-data", "secret.txt", "the gold"]),
        "put",
    );
    (s, url, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigv2_is_refused_but_for_presigned_urls_of_a_week() {
    let (_s, url, key) = start();
    let v = refused(
        probe(&url, &key, "sigv2-get", &["vault-data", "secret.txt"]),
        403,
        "AccessDenied",
        "a SigV2 (header) request",
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Signature Version 4"),
        "the refusal says what to use: {v}"
    );
    // A SigV2 presigned URL (aws-cli v1's `s3 presign` makes them) has an
    // expiry, checked by s3s; it is held to a week, as SigV4 ones.
    let v = ok(
        probe(
            &url,
            &key,
            "sigv2-presigned-get",
            &["vault-data", "secret.txt", "600"],
        ),
        "a SigV2 presigned URL valid for 10 minutes",
    );
    assert_eq!(v["body"], "the gold");
    refused(
        probe(
            &url,
            &key,
            "sigv2-presigned-get",
            &["vault-data", "secret.txt", "315360000"],
        ),
        400,
        "AuthorizationQueryParametersError",
        "a SigV2 presigned URL valid for 10 years",
    );
    // A browser-form upload signed with SigV2 is refused, one with SigV4
    // stored.
    let v = refused(
        probe(&url, &key, "post", &["vault-data", "form.txt", "v2", "s3"]),
        403,
        "AccessDenied",
        "a SigV2 form upload",
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Signature Version 4"),
        "{v}"
    );
    ok(
        probe(
            &url,
            &key,
            "post",
            &["vault-data", "form.txt", "v4", "s3v4"],
        ),
        "a SigV4 form upload",
    );
    let v = ok(probe(&url, &key, "get", &["vault-data", "form.txt"]), "get");
    assert_eq!(v["body"], "v4");
    // The same request signed with SigV4 is served.
    let v = ok(
        probe(&url, &key, "get", &["vault-data", "secret.txt"]),
        "get",
    );
    assert_eq!(v["body"], "the gold");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigv4_request_outside_the_clock_skew_is_refused() {
    let (_s, url, key) = start();
    refused(
        probe(
            &url,
            &key,
            "skewed-get",
            &["vault-data", "secret.txt", "1200"],
        ),
        403,
        "RequestTimeTooSkewed",
        "a request signed 20 minutes ago",
    );
    refused(
        probe(
            &url,
            &key,
            "skewed-get",
            &["vault-data", "secret.txt", "-1200"],
        ),
        403,
        "RequestTimeTooSkewed",
        "a request dated 20 minutes ahead",
    );
    let v = ok(
        probe(
            &url,
            &key,
            "skewed-get",
            &["vault-data", "secret.txt", "300"],
        ),
        "a request signed 5 minutes ago (within the skew)",
    );
    assert_eq!(v["body"], "the gold");
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_expire_and_last_at_most_a_week() {
    let (_s, url, key) = start();
    let get = |expires: &str, age: &str| {
        probe(
            &url,
            &key,
            "presigned-get",
            &["vault-data", "secret.txt", expires, age],
        )
    };
    let v = ok(get("600", "0"), "a fresh presigned GET");
    assert_eq!(v["body"], "the gold");
    ok(
        get("604800", "0"),
        "a presigned GET valid for exactly 7 days",
    );
    let v = refused(
        get("315360000", "0"),
        400,
        "AuthorizationQueryParametersError",
        "a presigned GET valid for 10 years",
    );
    assert!(v["message"].as_str().unwrap().contains("604800"), "{v}");
    refused(
        get("604801", "0"),
        400,
        "AuthorizationQueryParametersError",
        "a presigned GET valid for a second over 7 days",
    );
    refused(
        get("0", "0"),
        400,
        "AuthorizationQueryParametersError",
        "a presigned GET valid for 0 seconds",
    );
    let v = refused(
        get("60", "120"),
        403,
        "AccessDenied",
        "a presigned GET that expired a minute ago",
    );
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");

    // PUT: an expired URL writes nothing; a fresh one writes.
    let put = |expires: &str, age: &str, body: &str| {
        probe(
            &url,
            &key,
            "presigned-put",
            &["vault-data", "secret.txt", expires, age, body],
        )
    };
    refused(
        put("60", "120", "overwritten"),
        403,
        "AccessDenied",
        "an expired presigned PUT",
    );
    refused(
        put("315360000", "0", "overwritten"),
        400,
        "AuthorizationQueryParametersError",
        "a presigned PUT valid for 10 years",
    );
    let v = ok(
        probe(&url, &key, "get", &["vault-data", "secret.txt"]),
        "get",
    );
    assert_eq!(v["body"], "the gold", "refused PUTs wrote nothing");
    ok(put("600", "0", "new gold"), "a fresh presigned PUT");
    let v = ok(
        probe(&url, &key, "get", &["vault-data", "secret.txt"]),
        "get",
    );
    assert_eq!(v["body"], "new gold");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_keys_are_listed_without_secrets_and_revocable() {
    let (s, url, key) = start();
    let other = s3_key(&s, "vault");

    // `nimbus keys list` shows both keys with their app, never a secret.
    let out = s.cli_ok(&["keys", "list"]);
    for k in [&key, &other] {
        let line = out
            .lines()
            .find(|l| l.contains(&k.0))
            .unwrap_or_else(|| panic!("S3 key {} not listed:\n{out}", k.0));
        assert!(line.contains("vault"), "the key's app is shown: {line}");
        assert!(!out.contains(&k.1), "a secret is listed:\n{out}");
    }
    let listed = s.api("/v1/keys").await;
    let s3_keys = listed["s3_keys"].as_array().expect("s3_keys listed");
    assert_eq!(s3_keys.len(), 2, "{listed:#}");
    for k in s3_keys {
        assert_eq!(k["app"], "vault", "{k}");
        assert!(k["created_at_us"].as_i64().unwrap() > 0, "{k}");
        assert!(
            k.get("secret").is_none() && k.get("secret_key").is_none(),
            "{k}"
        );
    }
    assert!(!listed.to_string().contains(&key.1), "{listed}");

    // Revoked, the key's next request is refused; the other key still works.
    let out = s.cli_ok(&["keys", "revoke", "--s3", &key.0]);
    assert!(out.contains(&key.0), "{out}");
    refused(
        probe(&url, &key, "get", &["vault-data", "secret.txt"]),
        403,
        "InvalidAccessKeyId",
        "a revoked S3 key",
    );
    refused(
        probe(&url, &key, "put", &["vault-data", "x", "y"]),
        403,
        "InvalidAccessKeyId",
        "a revoked S3 key writing",
    );
    let v = ok(
        probe(&url, &other, "get", &["vault-data", "secret.txt"]),
        "the other key",
    );
    assert_eq!(v["body"], "the gold");
    let out = s.cli_ok(&["keys", "list"]);
    assert!(!out.contains(&key.0), "a revoked S3 key is gone:\n{out}");
    let err = s.cli_err(&["keys", "revoke", "--s3", &key.0]);
    assert!(err.contains("no S3 key"), "{err}");

    // A key limited to another app neither sees nor revokes vault's keys.
    s.deploy(app("rival").path());
    let rival = s.cli_ok(&[
        "keys",
        "create",
        "rival-admin",
        "--app",
        "rival",
        "--scope",
        "admin",
    ]);
    let rival = rival.lines().next().unwrap().trim().to_string();
    let r = s
        .http
        .get(format!("{}/v1/keys", s.control))
        .bearer_auth(&rival)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert!(
        !seen.to_string().contains(&other.0),
        "another app's key lists vault's S3 keys: {seen}"
    );
    let r = s
        .http
        .delete(format!("{}/v1/keys/s3/{}", s.control, other.0))
        .bearer_auth(&rival)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "another app's key revokes vault's S3 key");
    ok(
        probe(&url, &other, "get", &["vault-data", "secret.txt"]),
        "vault's key after rival's attempt",
    );
}

/// Sends `head` and `body` on a raw connection and returns the response's
/// first bytes, or `None` if nothing came within 10 seconds (the server is
/// still reading what it was promised).
async fn answer_before_body(url: &str, head: String, body: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    let _ = c.write_all(body).await;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(std::time::Duration::from_secs(10), c.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// A browser-form upload (POST object) is read into memory whole before
/// `s3s` checks who sent it, so an unsigned form promising gigabytes must
/// be refused from its headers, before its body is read: otherwise anyone
/// could fill a node's memory with forms no bucket accepts.
#[tokio::test(flavor = "multi_thread")]
async fn a_form_upload_is_refused_from_its_headers_when_too_large() {
    let (_s, url, _key) = start();
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let form = "--xyz\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nbig\r\n\
        --xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n";
    let mut body = form.as_bytes().to_vec();
    body.extend(std::iter::repeat_n(b'x', 1 << 20));
    let head = |length: &str| {
        format!(
            "POST /vault-data HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary=xyz\r\n{length}\r\n"
        )
    };
    let answer = answer_before_body(&url, head("Content-Length: 6000000000\r\n"), &body)
        .await
        .expect("a 6 GB form upload must be answered before its body is read");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("EntityTooLarge"), "{answer}");
    // Without a length, it is refused too (411), not read to its end.
    let answer = answer_before_body(&url, head("Transfer-Encoding: chunked\r\n"), b"100000\r\n")
        .await
        .expect("a form upload of no length must be answered at once");
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
}
