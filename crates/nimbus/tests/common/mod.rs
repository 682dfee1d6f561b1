//! Test harness: builds the example guests once, starts real `nimbus up`
//! processes on ephemeral ports (or the same node in process, for tests
//! that need no process boundary: [`Server::in_process`]), writes app
//! manifests, runs the real CLI.
#![allow(dead_code)]

pub mod ws;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The `nimbus-invocation-id` every response carries.
pub fn invocation_id(r: &reqwest::Response) -> String {
    r.headers()["nimbus-invocation-id"]
        .to_str()
        .expect("invocation ids are ASCII")
        .to_string()
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Directory holding the example guests built for wasm32-wasip2.
pub fn guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let examples = repo().join("examples");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(examples.join("Cargo.toml"))
            .status()
            .expect("running cargo to build the example guests");
        assert!(status.success(), "building example guests failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)");
        examples.join("target/wasm32-wasip2/release").canonicalize().unwrap()
    })
}

/// Absolute path of one example guest.
pub fn wasm(name: &str) -> PathBuf {
    guests().join(format!("{name}.wasm"))
}

/// Compile cache shared by every test server, so each guest compiles once.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("nimbus-test-cache")
}

/// The PostgreSQL database of the server of `data_dir`, if it has one
/// (`nimbus_store::test_database_url`: the suite runs on PostgreSQL, or a
/// cluster test named one).
pub fn test_database(data_dir: &Path) -> Option<String> {
    let dir = data_dir.to_path_buf();
    block_on(async move { nimbus_store::test_database_url(&dir).await })
        .expect("creating a test database")
}

/// A new, empty database on the PostgreSQL server of `admin` (a URL whose
/// user may create databases); its URL.
pub fn new_database(admin: &str) -> String {
    let admin = admin.to_string();
    block_on(async move { nimbus_store::create_test_database(&admin).await })
        .expect("creating a test database")
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own:
/// callers may be inside a runtime already.
fn block_on<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

/// How [`Server::start_with`] starts a server.
#[derive(Default)]
pub struct Launch {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// On the embedded SQLite database even when the suite runs on PostgreSQL.
    pub embedded: bool,
    /// Under `strace`, writing the trace of its file syncs and socket and
    /// file reads and writes to this file.
    pub strace: Option<PathBuf>,
}

/// A node started in the test process ([`Server::in_process`]): on a
/// thread and a runtime of its own, as `nimbus up` runs it.
struct InProcess {
    /// `true`: stop gracefully ([`nimbus_server::Node::stop`]); `false`:
    /// drop everything at once, as a kill would.
    stop: Option<std::sync::mpsc::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn end(&mut self, graceful: bool) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(graceful);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running `nimbus up`.
pub struct Server {
    child: Option<Child>,
    node: Option<InProcess>,
    /// The app listener (gateway: app routes and the client-facing API).
    pub url: String,
    /// The control listener (console and the whole control API).
    pub control: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
    args: Vec<String>,
}

impl Server {
    /// Starts a server on a fresh data dir with extra `nimbus up` arguments.
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(tmp.path(), args);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing data dir.
    ///
    /// Test servers let guests reach loopback (`--allow-egress
    /// 127.0.0.0/8`, unless `args` give `--allow-egress` themselves): their
    /// guests call services of the test process and the server itself,
    /// which the egress guard refuses by default. The guard's own tests use
    /// [`Server::start_guarded`], which adds nothing.
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Server {
        if args.contains(&"--allow-egress") {
            return Server::launch(data_dir, args);
        }
        let mut all = vec!["--allow-egress", "127.0.0.0/8"];
        all.extend_from_slice(args);
        Server::launch(data_dir, &all)
    }

    /// Starts a server on a fresh data dir with exactly these extra
    /// arguments: no loopback egress unless they allow it.
    pub fn start_guarded(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::launch(tmp.path(), args);
        s._tmp = Some(tmp);
        s
    }

    fn launch(data_dir: &Path, args: &[&str]) -> Server {
        Server::launch_with(data_dir, args, Launch::default())
    }

    /// Starts a server on `data_dir` as `how` says (an environment, the
    /// embedded database whatever the suite's, a syscall trace).
    pub fn start_with(data_dir: &Path, args: &[&str], how: Launch) -> Server {
        let mut all = vec!["--allow-egress", "127.0.0.0/8"];
        all.extend_from_slice(args);
        Server::launch_with(data_dir, &all, how)
    }

    fn launch_with(data_dir: &Path, args: &[&str], how: Launch) -> Server {
        guests();
        let mut cmd = match &how.strace {
            Some(out) => {
                let mut c = Command::new("strace");
                c.args(["-f", "-ttt", "-T", "-yy", "-s", "96", "-o"])
                    .arg(out)
                    .args([
                        "-e",
                        "trace=fsync,fdatasync,read,recvfrom,readv,write,writev,sendto,sendmsg",
                    ])
                    .arg(env!("CARGO_BIN_EXE_nimbus"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_nimbus")),
        };
        cmd.arg("up");
        cmd.envs(how.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(url) = test_database(data_dir).filter(|_| !how.embedded) {
            cmd.args(["--database", &url]);
        }
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--cache-dir")
            .arg(shared_cache())
            .args(["--max-in-flight", "100"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nimbus up");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut urls = line
            .split_whitespace()
            .filter(|w| w.starts_with("http://"))
            .map(|w| w.trim_end_matches([',', ';', ')']).to_string());
        let (Some(url), Some(control)) = (urls.next(), urls.next()) else {
            panic!("nimbus up did not print its app and control URLs: {line:?}");
        };
        Server {
            child: Some(child),
            node: None,
            control,
            url,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            http: reqwest::Client::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Starts a node on a fresh data dir in this process, with the
    /// arguments [`Server::start`] gives `nimbus up`: for tests that need
    /// no process of their own (no pid, memory or kill -9).
    pub fn in_process(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::in_process_in(tmp.path(), args);
        s._tmp = Some(tmp);
        s
    }

    /// [`Server::in_process`] on an existing data dir.
    pub fn in_process_in(data_dir: &Path, args: &[&str]) -> Server {
        guests();
        let mut all: Vec<String> = Vec::new();
        if !args.contains(&"--allow-egress") {
            all.extend(["--allow-egress".into(), "127.0.0.0/8".into()]);
        }
        if let Some(url) = test_database(data_dir) {
            all.extend(["--database".into(), url]);
        }
        all.extend(
            ["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"].map(String::from),
        );
        all.extend(["--data-dir".into(), data_dir.display().to_string()]);
        all.extend(["--cache-dir".into(), shared_cache().display().to_string()]);
        all.extend(["--max-in-flight".into(), "100".into()]);
        all.extend(args.iter().map(|a| a.to_string()));
        let config = nimbus_server::Config::from_args(&all).expect("nimbus up arguments");
        let (started_tx, started) = std::sync::mpsc::channel();
        let (stop, stop_rx) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let node = match runtime.block_on(nimbus_server::Node::start(config)) {
                Ok(node) => node,
                Err(e) => {
                    let _ = started_tx.send(Err(format!("{e:#}")));
                    return;
                }
            };
            let _ = started_tx.send(Ok((node.url.clone(), node.control_url.clone())));
            // A dropped sender (the test panicked) is a kill.
            let graceful = runtime
                .block_on(async { tokio::task::spawn_blocking(move || stop_rx.recv()).await })
                .ok()
                .and_then(Result::ok)
                .unwrap_or(false);
            if graceful {
                let _ = runtime.block_on(node.stop());
            } else {
                drop(node);
            }
            runtime.shutdown_background();
        });
        let (url, control) = match started.recv() {
            Ok(Ok(urls)) => urls,
            Ok(Err(e)) => panic!("the node did not start: {e}"),
            Err(_) => panic!("the node's thread ended before it started"),
        };
        Server {
            child: None,
            node: Some(InProcess {
                stop: Some(stop),
                thread: Some(thread),
            }),
            url,
            control,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            http: reqwest::Client::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The process id of the server (of `strace` when it is traced).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's resident memory now, in bytes (VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        self.proc_status_kb("VmRSS:") << 10
    }

    /// The server's peak resident memory since the last
    /// [`Server::reset_peak_rss`], in bytes (VmHWM).
    pub fn peak_rss_bytes(&self) -> u64 {
        self.proc_status_kb("VmHWM:") << 10
    }

    /// Starts measuring the peak resident memory afresh.
    pub fn reset_peak_rss(&self) {
        let pid = self.child.as_ref().expect("running").id();
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    }

    fn proc_status_kb(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    /// Stops the server gracefully (SIGTERM, or [`nimbus_server::Node::stop`]
    /// in process) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.end(true);
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            for _ in 0..200 {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the CLI against this server; returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(&[], args)
    }

    /// Runs the CLI with extra environment variables.
    pub fn cli_env(&self, env: &[(&str, &std::ffi::OsStr)], args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("NIMBUS_SERVER")
            .env_remove("NIMBUS_TOKEN")
            .envs(env.iter().copied())
            .output()
            .expect("running the nimbus CLI")
    }

    /// Runs the CLI; returns whether it succeeded and its stdout + stderr.
    fn cli_text(&self, args: &[&str]) -> (bool, String) {
        let out = self.cli(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs the CLI and asserts it succeeded; returns stdout + stderr.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.cli_text(args);
        assert!(ok, "nimbus {args:?} failed:\n{text}");
        text
    }

    /// Runs the CLI and asserts it failed; returns stdout + stderr.
    pub fn cli_err(&self, args: &[&str]) -> String {
        let (ok, text) = self.cli_text(args);
        assert!(!ok, "nimbus {args:?} should have failed:\n{text}");
        text
    }

    /// Deploys the app in `dir` and asserts success.
    pub fn deploy(&self, dir: &Path) -> String {
        self.cli_ok(&["deploy", dir.to_str().unwrap()])
    }

    /// The admin token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token")).unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// POSTs `body` to `path` on the app listener: status and body text.
    pub async fn post_text(&self, path: &str, body: &str) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// GET on the control API with the admin token, as JSON.
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let r = self
            .http
            .get(format!("{}{path}", self.control))
            .bearer_auth(self.token())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Polls the logs of `app` until `needle` shows up (records are written in the background).
    pub async fn wait_for_log(&self, app: &str, extra: &[&str], needle: &str) -> String {
        let mut args = vec!["logs", app];
        args.extend_from_slice(extra);
        for _ in 0..100 {
            let out = self.cli_ok(&args);
            if out.contains(needle) {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{needle:?} never appeared in `nimbus logs {app}`:\n{}",
            self.cli_ok(&args)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.end(false);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes an app directory with this manifest; `@WASM@` stands for the
/// directory of the built example guests.
pub fn app_dir(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = manifest.replace("@WASM@", guests().to_str().unwrap());
    std::fs::write(dir.path().join("nimbus.toml"), text).unwrap();
    dir
}

/// An HTTP endpoint in the test process that records what guests POST to
/// it (the `consumer` example's `RELAY_URL` reports): the outside world a
/// function has side effects on.
pub struct Relay {
    pub url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Relay {
    pub async fn start() -> Relay {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = seen.clone();
        let app = axum::Router::new().route(
            "/r",
            axum::routing::post(move |body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    store.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/r", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Relay { url, seen }
    }

    /// Every report so far, in arrival order.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until `pred` holds for the reports, or panics after `secs`.
    pub async fn wait_until(
        &self,
        secs: u64,
        what: &str,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let seen = self.seen();
            if pred(&seen) {
                return seen;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; reports so far: {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Server {
    /// POST on the control API with the admin token.
    pub async fn api_post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut rb = self
            .http
            .post(format!("{}{path}", self.control))
            .bearer_auth(self.token())
            .body(body);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.unwrap()
    }

    /// Polls `GET path` until `pred` holds for its JSON, or panics after `secs`.
    pub async fn api_wait(
        &self,
        path: &str,
        secs: u64,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.api(path).await;
            if pred(&v) {
                return v;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out polling {path}; last answer: {v:#}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Python venv with boto3 and aws-cli (scripts/test creates it).
pub fn pyenv() -> PathBuf {
    let p = repo().join("target/pyenv/bin");
    assert!(
        p.join("python").exists(),
        "boto3/aws-cli venv missing at {}: run ./scripts/test (it creates it)",
        p.display()
    );
    p
}

/// The S3 endpoint of a server started with `--s3-listen`.
pub fn s3_url(s: &Server) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.data_dir.join("server.json")).unwrap())
            .unwrap();
    info["s3_url"]
        .as_str()
        .expect("the S3 endpoint is on")
        .to_string()
}

/// A new S3 key of `app`: (access key id, secret).
pub fn s3_key(s: &Server, app: &str) -> (String, String) {
    let out = s.cli_ok(&["keys", "create", "--app", app, "--s3"]);
    let field = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no {prefix:?} in {out}"))
            .to_string()
    };
    (field("access key id"), field("secret access key"))
}

/// Runs the Python `code` with `c`, a boto3 S3 client of the server's S3
/// endpoint signing with `key` (path-style addressing); its printed
/// output, trimmed. Panics with Python's error if it fails.
pub fn boto3(s: &Server, key: (&str, &str), code: &str) -> String {
    let out = Command::new(pyenv().join("python"))
        .arg("-c")
        .arg(format!(
            "import sys, boto3\nfrom botocore.config import Config\nc = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name='us-east-1', config=Config(signature_version='s3v4', s3={{'addressing_style': 'path'}}))\n{code}"
        ))
        .args([&s3_url(s), key.0, key.1])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
