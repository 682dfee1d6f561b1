//! Object storage end to end: a real `nimbus up` with its S3 endpoint,
//! driven by the real boto3 and aws-cli (installed by scripts/test into
//! target/pyenv).

mod common;

use common::{Server, app_dir, boto3, pyenv, s3_key, s3_url};
use std::path::PathBuf;
use std::process::Command;

fn app(name: &str) -> tempfile::TempDir {
    app_dir(&format!(
        "[app]\nname = \"{name}\"\n[functions.hello]\ncomponent = \"@WASM@/hello.wasm\"\n"
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_and_aws_cli_against_the_s3_endpoint() {
    let s = Server::in_process(&[
        "--s3-listen",
        "127.0.0.1:0",
        "--s3-domain",
        "s3.nimbus.test",
    ]);
    s.deploy(app("photos").path());
    s.deploy(app("other").path());
    let (k1, s1) = s3_key(&s, "photos");
    let (k2, s2) = s3_key(&s, "other");
    let url = s3_url(&s);
    let work = tempfile::tempdir().unwrap();
    let bin = pyenv();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/boto3_suite.py");
    let out = Command::new(bin.join("python"))
        .arg(&script)
        .args([&url, &k1, &s1, &k2, &s2])
        .arg(work.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("all ok"),
        "boto3 suite failed:\n{text}"
    );

    // aws-cli: mb, cp, ls, sync, presign.
    let cfg = work.path().join("aws-config");
    std::fs::write(
        &cfg,
        "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
    )
    .unwrap();
    let aws = |args: &[&str]| {
        let out = Command::new(bin.join("aws"))
            .arg("--endpoint-url")
            .arg(&url)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &k1)
            .env("AWS_SECRET_ACCESS_KEY", &s1)
            .env("AWS_CONFIG_FILE", &cfg)
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "aws {args:?} failed:\n{text}");
        text
    };
    aws(&["s3", "mb", "s3://cli-bucket"]);
    let src = work.path().join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "a").unwrap();
    std::fs::write(src.join("sub/b.txt"), "b").unwrap();
    aws(&[
        "s3",
        "cp",
        src.join("a.txt").to_str().unwrap(),
        "s3://cli-bucket/one/a.txt",
    ]);
    aws(&["s3", "sync", src.to_str().unwrap(), "s3://cli-bucket/tree"]);
    let ls = aws(&["s3", "ls", "s3://cli-bucket/tree/", "--recursive"]);
    assert!(
        ls.contains("tree/a.txt") && ls.contains("tree/sub/b.txt"),
        "{ls}"
    );
    let back = work.path().join("back");
    aws(&["s3", "sync", "s3://cli-bucket/tree", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(back.join("sub/b.txt")).unwrap(),
        "b"
    );
    let presigned = aws(&[
        "s3",
        "presign",
        "s3://cli-bucket/one/a.txt",
        "--expires-in",
        "60",
    ]);
    let body = reqwest::get(presigned.trim()).await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.text().await.unwrap(), "a");
    let buckets = aws(&["s3", "ls"]);
    assert!(
        buckets.contains("cli-bucket") && buckets.contains("photos"),
        "{buckets}"
    );

    // aws-cli s3api: versioning, the versions' listing, a public object.
    let a_txt = src.join("a.txt");
    aws(&["s3api", "create-bucket", "--bucket", "cli-versions"]);
    aws(&[
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        "cli-versions",
        "--versioning-configuration",
        "Status=Enabled",
    ]);
    for _ in 0..2 {
        aws(&[
            "s3api",
            "put-object",
            "--bucket",
            "cli-versions",
            "--key",
            "v",
            "--acl",
            "public-read",
            "--body",
            a_txt.to_str().unwrap(),
        ]);
    }
    let listed: serde_json::Value = serde_json::from_str(&aws(&[
        "s3api",
        "list-object-versions",
        "--bucket",
        "cli-versions",
    ]))
    .unwrap();
    assert_eq!(
        listed["Versions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let public = reqwest::get(format!("{url}/cli-versions/v")).await.unwrap();
    assert_eq!(
        public.status(),
        200,
        "a public-read object, fetched unsigned"
    );
    assert_eq!(public.text().await.unwrap(), "a");

    // s3cmd and rclone (Debian's), and curl for a public object.
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/tools.sh");
    let out = Command::new("bash")
        .arg(&tools)
        .args([&url, &k1, &s1])
        .arg(work.path().join("tools"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("s3cmd ok") && text.contains("rclone ok"),
        "s3cmd/rclone run failed:\n{text}"
    );
}

/// Files under a directory, recursively.
fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { files_under(&p) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A copy refused for its ACL, the bucket's Public Access Block or its
/// tags leaves no body behind: every refusal comes before the copy is
/// written (a refused copy of a large object, repeated, would otherwise
/// fill the disk with files no row points at, outside every quota).
#[tokio::test(flavor = "multi_thread")]
async fn refused_copies_leave_no_file_behind() {
    let data = tempfile::tempdir().unwrap();
    let s = Server::start_in(data.path(), &["--s3-listen", "127.0.0.1:0"]);
    s.deploy(app("photos").path());
    let (k, secret) = s3_key(&s, "photos");
    let run = |code: &str| {
        let prelude = r#"
from botocore.exceptions import ClientError
def refused(f):
    try:
        f()
    except ClientError as e:
        print(e.response["Error"]["Code"])
        return
    print("ACCEPTED")
"#;
        boto3(&s, (&k, &secret), &format!("{prelude}{code}"))
    };
    run(
        r#"c.create_bucket(Bucket="photos"); c.put_object(Bucket="photos", Key="big", Body=b"x" * (1 << 20))"#,
    );
    let before = files_under(&data.path().join("objects"));
    let refusals = run(r#"
src = {"Bucket": "photos", "Key": "big"}
refused(lambda: c.copy_object(Bucket="photos", Key="c1", CopySource=src, ACL="authenticated-read"))
refused(lambda: c.copy_object(Bucket="photos", Key="c2", CopySource=src, TaggingDirective="REPLACE", Tagging="aws:x=1"))
refused(lambda: c.copy_object(Bucket="photos", Key="c3", CopySource=src, GrantRead='id="rival"'))
c.put_public_access_block(Bucket="photos", PublicAccessBlockConfiguration={"BlockPublicAcls": True})
refused(lambda: c.copy_object(Bucket="photos", Key="c4", CopySource=src, ACL="public-read"))
"#);
    assert_eq!(
        files_under(&data.path().join("objects")),
        before,
        "a refused copy left its body on disk ({refusals})"
    );
    assert_eq!(
        refusals.lines().collect::<Vec<_>>(),
        ["AccessDenied", "InvalidTag", "AccessDenied", "AccessDenied"],
        "{refusals}"
    );
    // A completion refused for its checksum headers leaves no joined
    // object behind either (the upload stays, so it could be repeated).
    let upload = run(r#"
up = c.create_multipart_upload(Bucket="photos", Key="mp", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
r = c.upload_part(Bucket="photos", Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"y" * 1000,
                  ChecksumAlgorithm="CRC32")
print(up["UploadId"]); print(r["ETag"]); print(r["ChecksumCRC32"])
"#);
    let [id, etag, crc] = upload.lines().collect::<Vec<_>>()[..] else {
        panic!("{upload}")
    };
    let before = files_under(&data.path().join("objects"));
    let refusal = run(&format!(
        r#"
def two(request, **kw):
    request.headers["x-amz-checksum-crc32"] = "AAAAAA=="
    request.headers["x-amz-checksum-sha1"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
c.meta.events.register("before-sign.s3.CompleteMultipartUpload", two)
for _ in range(3):
    refused(lambda: c.complete_multipart_upload(Bucket="photos", Key="mp", UploadId="{id}",
        MultipartUpload={{"Parts": [{{"PartNumber": 1, "ETag": {etag:?}, "ChecksumCRC32": "{crc}"}}]}}))
"#
    ));
    assert_eq!(
        files_under(&data.path().join("objects")),
        before,
        "a refused completion left its joined body on disk ({refusal})"
    );
    assert_eq!(refusal.lines().collect::<Vec<_>>(), ["InvalidRequest"; 3]);
}

/// kill -9 during a large upload: after restart the object is absent or
/// complete, never partial, and no partial file is left behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_an_upload_never_leaves_a_partial_object() {
    let data = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(data.path(), &["--s3-listen", "127.0.0.1:0"]);
    s.deploy(app("photos").path());
    let (k, secret) = s3_key(&s, "photos");
    let url = s3_url(&s);
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("upload.py");
    std::fs::write(
        &script,
        r#"
import sys, boto3
from botocore.config import Config
url, k, s = sys.argv[1:4]
c = boto3.client("s3", endpoint_url=url, aws_access_key_id=k, aws_secret_access_key=s, region_name="us-east-1",
                 config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
c.create_bucket(Bucket="photos")
path = sys.argv[4]
with open(path, "wb") as f:
    f.truncate(300 << 20)
try:
    with open(path, "rb") as f:
        c.put_object(Bucket="photos", Key="huge.bin", Body=f)
except Exception as e:
    print("interrupted", type(e).__name__, flush=True)
"#,
    )
    .unwrap();
    let mut child = Command::new(pyenv().join("python"))
        .arg(&script)
        .args([&url, &k, &secret])
        .arg(work.path().join("huge.bin"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the upload is under way (the temp file grows), then crash.
    let tmp = data.path().join("objects/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let growing = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .any(|e| e.metadata().map(|m| m.len() > (20 << 20)).unwrap_or(false));
        if growing {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.kill();
    let _ = child.wait();

    let s = Server::start_in(data.path(), &["--s3-listen", "127.0.0.1:0"]);
    let url = s3_url(&s);
    let out = Command::new(pyenv().join("python"))
        .arg("-c")
        .arg(
            r#"
import sys, boto3
from botocore.config import Config
from botocore.exceptions import ClientError
url, k, s = sys.argv[1:4]
c = boto3.client("s3", endpoint_url=url, aws_access_key_id=k, aws_secret_access_key=s, region_name="us-east-1",
                 config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
try:
    h = c.head_object(Bucket="photos", Key="huge.bin")
    print("complete" if h["ContentLength"] == 300 << 20 else "PARTIAL")
except ClientError as e:
    print("absent", e.response["Error"]["Code"])
"#,
        )
        .args([&url, &k, &secret])
        .output()
        .unwrap();
    // Absent means S3's not-found (HEAD answers a bare 404), not any error:
    // a lost row or an unreadable body would answer something else.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(text.trim(), "absent 404" | "complete"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(data.path().join("objects/tmp"))
            .unwrap()
            .count(),
        0,
        "the cut-short upload's temp file is gone"
    );
}

/// A storage trigger runs a function on objects created and deleted under
/// a prefix/suffix, through the event system.
#[tokio::test(flavor = "multi_thread")]
async fn storage_events_run_functions() {
    let relay = common::Relay::start().await;
    let s = Server::in_process(&["--s3-listen", "127.0.0.1:0"]);
    let manifest = format!(
        r#"
[app]
name = "pics"

[functions.thumb]
component = "@WASM@/consumer.wasm"
env = {{ RELAY_URL = "{}" }}
allowed_outbound_hosts = ["127.0.0.1:*"]

[[triggers.storage]]
bucket = "pics-bucket"
prefix = "img/"
suffix = ".jpg"
function = "thumb"
"#,
        relay.url
    );
    s.deploy(app_dir(&manifest).path());
    let (k, secret) = s3_key(&s, "pics");
    let url = s3_url(&s);
    let out = Command::new(pyenv().join("python"))
        .arg("-c")
        .arg(
            r#"
import sys, boto3
from botocore.config import Config
url, k, s = sys.argv[1:4]
c = boto3.client("s3", endpoint_url=url, aws_access_key_id=k, aws_secret_access_key=s, region_name="us-east-1",
                 config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
c.create_bucket(Bucket="pics-bucket")
for key in ["img/a.jpg", "img/b.txt", "other/c.jpg", "img/ü.jpg"]:
    c.put_object(Bucket="pics-bucket", Key=key, Body=b"12345")
c.delete_object(Bucket="pics-bucket", Key="img/a.jpg")
print("done")
"#,
        )
        .args([&url, &k, &secret])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = relay
        .wait_until(20, "three storage events", |r| r.len() >= 3)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let seen = if relay.count() > seen.len() {
        relay.seen()
    } else {
        seen
    };
    let mut got: Vec<(String, String)> = seen
        .iter()
        .map(|r| {
            let body: serde_json::Value =
                serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            (
                r["type"].as_str().unwrap().to_string(),
                body["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "dev.nimbus.storage.object.created".to_string(),
                "img/a.jpg".to_string()
            ),
            (
                "dev.nimbus.storage.object.created".to_string(),
                "img/ü.jpg".to_string()
            ),
            (
                "dev.nimbus.storage.object.deleted".to_string(),
                "img/a.jpg".to_string()
            ),
        ]
    );
    assert!(
        seen.iter()
            .all(|r| r["source"] == "/apps/pics/buckets/pics-bucket")
    );
}

/// Functions read and write objects through nimbus:data/blobs, limited to
/// the buckets their manifest grants (and their app owns).
#[tokio::test(flavor = "multi_thread")]
async fn guests_use_granted_buckets() {
    let s = Server::in_process(&["--s3-listen", "127.0.0.1:0"]);
    let manifest = r#"
[app]
name = "files"

[functions.api]
component = "@WASM@/data.wasm"
buckets = ["files-main"]

[functions.nogrant]
component = "@WASM@/data.wasm"
"#;
    s.deploy(app_dir(manifest).path());
    s.deploy(app("stranger").path());
    let (k, secret) = s3_key(&s, "files");
    let (k2, secret2) = s3_key(&s, "stranger");
    let py = |code: &str, k: &str, sec: &str| boto3(&s, (k, sec), code);
    py(
        "c.create_bucket(Bucket='files-main'); c.put_object(Bucket='files-main', Key='from-s3.txt', Body=b'hi from s3')",
        &k,
        &secret,
    );
    py("c.create_bucket(Bucket='stranger-bucket')", &k2, &secret2);
    assert_eq!(
        call(&s, "api", "GET", "/blob/files-main/from-s3.txt", "").await,
        (200, "hi from s3".into())
    );
    assert_eq!(
        call(&s, "api", "PUT", "/blob/files-main/from-guest.txt", "hello")
            .await
            .0,
        200
    );
    assert_eq!(
        py(
            "print(c.get_object(Bucket='files-main', Key='from-guest.txt')['Body'].read().decode())",
            &k,
            &secret
        ),
        "hello"
    );
    assert_eq!(
        call(&s, "api", "GET", "/blobs/files-main?prefix=from-", "").await,
        (200, "from-guest.txt\nfrom-s3.txt".into())
    );
    assert_eq!(
        call(&s, "api", "DELETE", "/blob/files-main/from-guest.txt", "")
            .await
            .1,
        "true"
    );
    let (st, body) = call(&s, "nogrant", "GET", "/blob/files-main/from-s3.txt", "").await;
    assert_eq!(st, 404);
    assert!(body.contains("not granted"), "{body}");
    let (st, body) = call(&s, "api", "GET", "/blob/stranger-bucket/x", "").await;
    assert_eq!(st, 404);
    assert!(
        body.contains("not granted") || body.contains("no bucket"),
        "{body}"
    );
    // Metered: the guest's five bucket calls (the refused one included), and
    // the S3 requests signed with the app's key (create, put, get).
    let usage = s
        .api_wait("/v1/apps/files/usage?since=1h", 20, |v| {
            let rows = v["rows"].as_array().unwrap();
            let ops = |k: &str| {
                rows.iter()
                    .find(|r| r["key"] == k)
                    .map_or(0, |r| r["operations"]["objects"].as_i64().unwrap())
            };
            ops("files/api") == 5 && ops("files/nogrant") == 1 && ops("files/(api)") >= 3
        })
        .await;
    assert!(
        usage["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["operations"]["kv"] == 0),
        "{usage:#}"
    );
}

async fn call(s: &Server, f: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = s
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}/v1/apps/files/functions/{f}/invoke{path}", s.control),
        )
        .bearer_auth(s.token())
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
