//! Client commands: each is a few calls to the control API.

use crate::Target;
use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use nimbus_api::DeployEvent;
use nimbus_core::Manifest;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(target: &Target) -> Result<Api> {
        let base = match &target.server {
            Some(s) => s.clone(),
            None => std::fs::read_to_string(target.data_dir.join("server.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<nimbus_api::ServerInfo>(&s).ok())
                .map(|i| i.control_url.unwrap_or(i.url))
                .unwrap_or_else(|| "http://127.0.0.1:8081".into()),
        };
        let token = match &target.token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(target.data_dir.join("admin-token"))
                .map(|t| t.trim().to_string())
                .map_err(|_| {
                    anyhow!(
                        "no admin token: pass --token or set NIMBUS_TOKEN (a local server keeps it in {}/admin-token; point --data-dir at the server's data dir)",
                        target.data_dir.display()
                    )
                })?,
        };
        let http = reqwest::Client::builder().build()?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    pub(crate) fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub(crate) async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await.with_context(|| {
            format!(
                "cannot reach the Nimbus server at {} (is `nimbus up` running? use --server)",
                self.base
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<nimbus_api::ErrorBody>(&text)
            .map(|e| e.error)
            .unwrap_or(text);
        bail!("{msg} (HTTP {status})")
    }

    pub(crate) async fn get_json(&self, path: &str) -> Result<Value> {
        self.get(path).await
    }

    /// `GET path`, read as `T` (a body of `nimbus_api`): a body that does
    /// not have its shape is an error saying so, not empty fields.
    pub(crate) async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.read(self.req(reqwest::Method::GET, path)).await
    }

    /// Sends `rb` and reads the answer as `T` (a body of `nimbus_api`),
    /// as [`Api::get`] does.
    pub(crate) async fn read<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<T> {
        let resp = self.send(rb).await?;
        let path = resp.url().path().to_string();
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the server's answer to {path} is not what this nimbus expects (a server of another version?)"
            )
        })
    }
}

pub(crate) fn format_time(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), size))
}

pub async fn deploy(target: &Target, path: &Path, build: bool) -> Result<()> {
    let manifest_path: PathBuf = if path.is_dir() {
        path.join("nimbus.toml")
    } else {
        path.to_path_buf()
    };
    let dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "cannot read {} (deploy takes an app directory containing nimbus.toml)",
            manifest_path.display()
        )
    })?;
    let manifest =
        Manifest::parse(&text).map_err(|e| anyhow!("{}: {e}", manifest_path.display()))?;
    let api = Api::new(target)?;

    if build {
        let mut done: Vec<&str> = Vec::new();
        for f in manifest.functions.values() {
            let Some(cmd) = f.get_ref().build.as_deref() else {
                continue;
            };
            if done.contains(&cmd) {
                continue;
            }
            done.push(cmd);
            let spinner = ProgressBar::new_spinner().with_message(format!("building: {cmd}"));
            spinner.enable_steady_tick(Duration::from_millis(100));
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(&dir)
                .output()
                .await?;
            spinner.finish_and_clear();
            if !out.status.success() {
                std::io::stderr().write_all(&out.stderr)?;
                bail!(
                    "build command `{cmd}` failed ({}) in {}",
                    out.status,
                    dir.display()
                );
            }
            eprintln!("built: {cmd}");
        }
    }

    let mut hashes = BTreeMap::new();
    let mut uploads = Vec::new();
    for (name, f) in &manifest.functions {
        let wasm = dir.join(&f.get_ref().component);
        let (hash, size) = sha256_file(&wasm).with_context(|| {
            format!("function {name:?}: cannot read component {} (build it first, or fix `component` in nimbus.toml)", wasm.display())
        })?;
        let exists = api
            .req(reqwest::Method::HEAD, &format!("/v1/components/{hash}"))
            .send()
            .await;
        let status = exists
            .with_context(|| format!("cannot reach the Nimbus server at {}", api.base))?
            .status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            bail!(
                "the API key cannot deploy: it needs the deploy scope (HTTP {status}); see `nimbus keys create --help`"
            );
        }
        let exists = status.is_success();
        if !exists
            && !uploads
                .iter()
                .any(|(h, _, _): &(String, PathBuf, u64)| *h == hash)
        {
            uploads.push((hash.clone(), wasm, size));
        }
        hashes.insert(name.clone(), hash);
    }

    if !uploads.is_empty() {
        let total: u64 = uploads.iter().map(|u| u.2).sum();
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes} {msg}")
                .expect("template"),
        );
        for (hash, wasm, _) in &uploads {
            bar.set_message(
                wasm.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            let file = tokio::fs::File::open(wasm).await?;
            let b = bar.clone();
            let stream = tokio_util::io::ReaderStream::new(file).inspect(move |c| {
                if let Ok(c) = c {
                    b.inc(c.len() as u64);
                }
            });
            api.send(
                api.req(reqwest::Method::PUT, &format!("/v1/components/{hash}"))
                    .body(reqwest::Body::wrap_stream(stream)),
            )
            .await
            .with_context(|| format!("uploading {}", wasm.display()))?;
        }
        bar.finish_and_clear();
        eprintln!("uploaded {} component(s), {} bytes", uploads.len(), total);
    }

    let app = manifest.name().to_string();
    let body = nimbus_api::DeployRequest {
        manifest: text,
        components: hashes,
    };
    let resp = api
        .send(
            api.req(reqwest::Method::POST, &format!("/v1/apps/{app}/revisions"))
                .json(&body),
        )
        .await?;
    let bar = ProgressBar::new(manifest.functions.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} compiling {bar:30} {pos}/{len} functions ready, {elapsed}",
        )
        .expect("template"),
    );
    // A JavaScript or Python component takes seconds to compile: keep
    // showing that the deploy is alive (drawn only on a terminal).
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut revision = None;
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let ev: DeployEvent = serde_json::from_slice(&line)
                .context("the server's deploy progress is not what this nimbus expects")?;
            match ev {
                DeployEvent::Function {
                    name,
                    index,
                    status,
                    ..
                } => {
                    bar.set_position(index as u64);
                    bar.suspend(|| eprintln!("  {name}: {status}"));
                }
                DeployEvent::Activated { revision: r } => revision = Some(r),
                DeployEvent::Error { message } => {
                    bar.abandon();
                    bail!("deploy of {app} failed, the previous revision keeps serving: {message}");
                }
                DeployEvent::Started { .. } => {}
            }
        }
    }
    bar.finish_and_clear();
    let revision = revision.ok_or_else(|| {
        anyhow!("the server ended the deploy without activating it; see the server log")
    })?;
    println!("deployed {app} revision {revision} at {}", api.base);
    for r in manifest.triggers.http.iter() {
        let r = r.get_ref();
        let methods = if r.methods.is_empty() {
            "ANY".to_string()
        } else {
            r.methods.join(",")
        };
        println!("  {methods:<8} {}{}  -> {}", api.base, r.route, r.function);
    }
    Ok(())
}

pub async fn invoke(
    target: &Target,
    function: &str,
    data: Option<String>,
    data_file: Option<PathBuf>,
    method: Option<String>,
    path: &str,
    headers: &[String],
) -> Result<()> {
    let (app, func) = function
        .split_once('/')
        .ok_or_else(|| anyhow!("name the function as APP/FUNCTION, e.g. demo/echo"))?;
    let api = Api::new(target)?;
    let body: Option<Vec<u8>> = match (data, data_file) {
        (Some(d), _) => Some(d.into_bytes()),
        (None, Some(f)) => {
            Some(std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?)
        }
        _ => None,
    };
    let method = match method {
        Some(m) => reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| anyhow!("{m:?} is not an HTTP method"))?,
        None if body.is_some() => reqwest::Method::POST,
        None => reqwest::Method::GET,
    };
    // The control API passes the rest of its path on: /invoke -> "/", /invoke/x -> "/x".
    let path = match path.trim_start_matches('/') {
        "" => String::new(),
        rest => format!("/{rest}"),
    };
    let mut rb = api.req(
        method,
        &format!("/v1/apps/{app}/functions/{func}/invoke{path}"),
    );
    for h in headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| anyhow!("header {h:?} must look like \"Name: value\""))?;
        rb = rb.header(k.trim(), v.trim());
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let start = Instant::now();
    let resp = rb
        .send()
        .await
        .with_context(|| format!("cannot reach the Nimbus server at {}", api.base))?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED
        || (status == reqwest::StatusCode::NOT_FOUND
            && resp.headers().get("nimbus-invocation-id").is_none())
    {
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<nimbus_api::ErrorBody>(&text)
            .map(|e| e.error)
            .unwrap_or(text);
        bail!("{msg} (HTTP {status})");
    }
    let id = resp
        .headers()
        .get("nimbus-invocation-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let mut out = std::io::stdout();
    writeln!(out, "HTTP {status}")?;
    for (k, v) in resp.headers() {
        writeln!(out, "{k}: {}", String::from_utf8_lossy(v.as_bytes()))?;
    }
    writeln!(out)?;
    let mut stream = resp.bytes_stream();
    let mut ends_with_newline = true;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(last) = chunk.last() {
            ends_with_newline = *last == b'\n';
        }
        out.write_all(&chunk)?;
        out.flush()?;
    }
    if !ends_with_newline {
        writeln!(out)?;
    }
    eprintln!(
        "-- {} in {:.1} ms (invocation {id})",
        status.as_u16(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    if !status.is_success() {
        std::process::exit(2);
    }
    Ok(())
}

pub async fn apps(target: &Target) -> Result<()> {
    let api = Api::new(target)?;
    let apps: Vec<nimbus_api::AppSummary> = api.get("/v1/apps").await?;
    if apps.is_empty() {
        println!("no apps deployed: try `nimbus deploy examples/demo`");
        return Ok(());
    }
    println!(
        "{:<24} {:>8} {:>9} {:>6}  {:<20} UPDATED",
        "APP", "REVISION", "FUNCTIONS", "ROUTES", "HOST"
    );
    for a in apps {
        println!(
            "{:<24} {:>8} {:>9} {:>6}  {:<20} {}",
            a.name,
            a.active_revision
                .map(|n| n.to_string())
                .unwrap_or("-".into()),
            a.functions,
            a.routes,
            a.host.as_deref().unwrap_or("*"),
            format_time(a.updated_at_us)
        );
    }
    Ok(())
}

pub async fn functions(target: &Target, app: &str) -> Result<()> {
    let api = Api::new(target)?;
    let v: nimbus_api::Functions = api.get(&format!("/v1/apps/{app}/functions")).await?;
    println!("app {app}, revision {}", v.revision);
    for f in v.functions {
        let l = &f.limits;
        println!(
            "{}  memory {} MiB, timeout {} ms (first byte {} ms), concurrency {}, component {}",
            f.name,
            l.memory_mb,
            l.timeout_ms,
            l.first_byte_timeout_ms,
            l.max_concurrency,
            &f.component[..12.min(f.component.len())]
        );
        for r in &f.routes {
            let methods = if r.methods.is_empty() {
                "ANY".to_string()
            } else {
                r.methods.join(",")
            };
            println!("    {methods:<8} {}", r.path);
        }
        if !f.allowed_outbound_hosts.is_empty() {
            println!(
                "    outbound: {}",
                serde_json::to_string(&f.allowed_outbound_hosts)?
            );
        }
    }
    Ok(())
}

pub async fn revisions(target: &Target, app: &str) -> Result<()> {
    let api = Api::new(target)?;
    let revisions: Vec<nimbus_api::RevisionSummary> =
        api.get(&format!("/v1/apps/{app}/revisions")).await?;
    println!(
        "{:>8}  {:<6}  {:<24}  FUNCTIONS",
        "REVISION", "ACTIVE", "CREATED"
    );
    for r in revisions {
        println!(
            "{:>8}  {:<6}  {:<24}  {}",
            r.number,
            if r.active { "*" } else { "" },
            format_time(r.created_at_us),
            r.functions.join(", ")
        );
    }
    Ok(())
}

pub async fn rollback(target: &Target, app: &str, to: Option<i64>) -> Result<()> {
    let api = Api::new(target)?;
    let body = nimbus_api::RollbackRequest { revision: to };
    let v: nimbus_api::Activated = api
        .send(
            api.req(reqwest::Method::POST, &format!("/v1/apps/{app}/rollback"))
                .json(&body),
        )
        .await?
        .json()
        .await
        .context("the server's answer to a rollback is not what this nimbus expects")?;
    println!("{app}: revision {} is active", v.active_revision);
    Ok(())
}

pub async fn delete(target: &Target, app: &str) -> Result<()> {
    let api = Api::new(target)?;
    api.send(api.req(reqwest::Method::DELETE, &format!("/v1/apps/{app}")))
        .await?;
    println!("deleted {app}");
    Ok(())
}

/// Which log lines `nimbus logs` prints.
pub struct LogFilter {
    /// Only this function.
    pub function: Option<String>,
    /// Only this invocation.
    pub invocation: Option<String>,
    /// Only entries newer than this.
    pub since: Option<Duration>,
    /// Only lines containing this (case-insensitive).
    pub grep: Option<String>,
}

pub async fn logs(
    target: &Target,
    app: &str,
    filter: LogFilter,
    follow: bool,
    json: bool,
) -> Result<()> {
    let LogFilter {
        function,
        invocation,
        since,
        grep,
    } = filter;
    let needle = grep.as_ref().map(|g| g.to_lowercase());
    let api = Api::new(target)?;
    let since_us = since
        .map(|d| SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH))
        .map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as i64)
        .unwrap_or(0);
    let mut after = 0i64;
    loop {
        let mut q = format!("/v1/apps/{app}/logs?after={after}&since_us={since_us}&limit=1000");
        if let Some(f) = &function {
            q.push_str(&format!("&function={f}"));
        }
        if let Some(i) = &invocation {
            q.push_str(&format!("&invocation={i}"));
        }
        if let Some(g) = &grep {
            q.push_str(&format!("&grep={}", crate::data_cli::enc(g)));
        }
        let entries: Vec<nimbus_core::LogEntry> = api.get(&q).await?;
        for e in &entries {
            after = after.max(e.seq);
            let prefix = format!(
                "{} {}/{} {} {}",
                format_time(e.at_us),
                app,
                e.function,
                e.invocation_id,
                e.stream
            );
            for line in e.text.lines() {
                if needle
                    .as_ref()
                    .is_some_and(|n| !line.to_lowercase().contains(n))
                {
                    continue;
                }
                if json {
                    let v = serde_json::json!({
                        "time": format_time(e.at_us),
                        "app": app,
                        "function": e.function,
                        "invocation_id": e.invocation_id,
                        "stream": e.stream,
                        "line": line,
                    });
                    println!("{v}");
                } else {
                    println!("{prefix} | {line}");
                }
            }
        }
        if entries.len() == 1000 {
            continue;
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn invocations(
    target: &Target,
    app: &str,
    function: Option<String>,
    limit: i64,
) -> Result<()> {
    let api = Api::new(target)?;
    let mut q = format!("/v1/apps/{app}/invocations?limit={limit}");
    if let Some(f) = &function {
        q.push_str(&format!("&function={f}"));
    }
    let records: Vec<nimbus_api::InvocationRow> = api.get(&q).await?;
    // Events not finished yet have no record: show them first, with their state.
    let mut pending = Vec::new();
    for state in ["running", "failed", "queued"] {
        let mut q = format!("/v1/apps/{app}/events?state={state}&limit={limit}");
        if let Some(f) = &function {
            q.push_str(&format!("&function={f}"));
        }
        pending.extend(api.get::<Vec<nimbus_api::MessageRow>>(&q).await?);
    }
    if !pending.is_empty() {
        println!("EVENTS NOT FINISHED (`nimbus invocations {app} --id ID` for one)");
        for e in &pending {
            crate::events_cli::print_event(e);
        }
        println!();
    }
    println!(
        "{:<36}  {:<24}  {:<12} {:<8} {:>6} {:>10}  {:<12} PATH",
        "INVOCATION", "STARTED", "FUNCTION", "TRIGGER", "STATUS", "DURATION", "OUTCOME"
    );
    for i in records {
        println!(
            "{:<36}  {:<24}  {:<12} {:<8} {:>6} {:>8.2}ms  {:<12} {} {}",
            i.id,
            format_time(i.started_at_us),
            i.function,
            i.trigger,
            i.status,
            i.duration_us as f64 / 1000.0,
            i.outcome.as_str(),
            i.method,
            i.path
        );
        if let Some(e) = &i.event_id {
            println!("    event {e}, attempt {}", i.attempt);
        }
        if let Some(e) = &i.error {
            println!("    {e}");
        }
    }
    Ok(())
}

/// `nimbus usage`: a table of usage and cost per function, day or app.
pub async fn usage(
    target: &Target,
    app: Option<&str>,
    since: &str,
    by: &str,
    json: bool,
) -> Result<()> {
    let api = Api::new(target)?;
    let base = match app {
        Some(a) => format!("/v1/apps/{a}/usage"),
        None => "/v1/usage".to_string(),
    };
    let v: nimbus_api::Usage = api.get(&format!("{base}?since={since}&by={by}")).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let currency = &v.prices.currency;
    println!(
        "{:<28} {:>11} {:>7} {:>12} {:>11} {:>10} {:>10} {:>6} {:>9} {:>12}",
        by.to_uppercase(),
        "INVOCATIONS",
        "ERRORS",
        "GB-SECONDS",
        "DURATION",
        "IN",
        "OUT",
        "COLD",
        "DATA OPS",
        format!("COST {currency}")
    );
    for r in v.rows.iter().chain(std::iter::once(&v.total)) {
        let o = &r.operations;
        println!(
            "{:<28} {:>11} {:>7} {:>12.6} {:>11} {:>10} {:>10} {:>6} {:>9} {:>12.6}",
            r.key,
            r.invocations,
            r.errors,
            r.gb_seconds,
            format!("{:.3}s", r.duration_us as f64 / 1e6),
            r.bytes_in,
            r.bytes_out,
            r.cold_starts,
            o.kv + o.docs + o.objects + o.events + o.realtime,
            r.cost,
        );
    }
    let sockets: Vec<&nimbus_api::UsageLine> = v
        .rows
        .iter()
        .chain(std::iter::once(&v.total))
        .filter(|r| r.websockets != nimbus_api::WebSocketUsage::default())
        .collect();
    if !sockets.is_empty() {
        println!();
        println!(
            "{:<28} {:>18} {:>12} {:>12}",
            "WEBSOCKETS", "CONNECTION-MINUTES", "MESSAGES IN", "MESSAGES OUT"
        );
        for r in sockets {
            let w = &r.websockets;
            println!(
                "{:<28} {:>18.3} {:>12} {:>12}",
                r.key, w.connection_minutes, w.messages_in, w.messages_out
            );
        }
    }
    if !v.storage.is_empty() {
        println!();
        println!(
            "{:<28} {:>12} {:>12} {:>12} {:>14} {:>12}",
            if by == "day" { "DAY" } else { "APP" },
            "GB-HOURS",
            "KV BYTES",
            "DOC BYTES",
            "OBJECT BYTES",
            format!("COST {currency}")
        );
        for r in &v.storage {
            let b = &r.stored_bytes;
            println!(
                "{:<28} {:>12.6} {:>12} {:>12} {:>14} {:>12.6}",
                r.key, r.gb_hours, b.kv, b.docs, b.objects, r.cost,
            );
        }
    }
    println!(
        "\ntotal cost {:.6} {currency} (compute, requests, data operations and storage)",
        v.total.cost
    );
    let p = &v.prices;
    eprintln!(
        "-- GB-seconds: memory limit x duration; DATA OPS: KV, document, object and event operations ({} is clients' REST and S3 calls); stored bytes at the last sample. Cost: {} per GB-second + {} per million invocations + {} per million operations + {} per GB-month (the server's price sheet, an estimate)",
        nimbus_store::CLIENT_OPS,
        p.per_gb_second,
        p.per_million_requests,
        p.per_million_operations,
        p.per_gb_month
    );
    Ok(())
}
