//! `nimbus replay`: run a failed invocation again — on the server against a
//! revision, or on this machine against a locally built component, with
//! the same limits, environment and manifest configuration — and show both
//! outcomes and their logs side by side.

use crate::Target;
use crate::client::Api;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use nimbus_api::{
    InvocationRow, KeptInput, KeptInvocation, LogLine, OpSpanRow, ReplayRequest, Replayed, Run,
    Trace,
};
use nimbus_core::{AppSpec, FunctionSpec, InvocationRecord, Outcome};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn print_side(title: &str, run: &Run) {
    println!(
        "{title}: HTTP {} {}{}",
        run.status,
        run.outcome.map_or("?", Outcome::as_str),
        run.error
            .as_deref()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default()
    );
    if let Some(body) = run.body.as_deref().filter(|b| !b.is_empty()) {
        for line in body.lines().take(20) {
            println!("  body   | {line}");
        }
    }
    for l in &run.logs {
        for line in l.text.lines() {
            println!("  {:<6} | {line}", l.stream);
        }
    }
}

pub async fn replay(
    target: &Target,
    id: &str,
    app: Option<String>,
    revision: Option<i64>,
    local: Option<&Path>,
) -> Result<()> {
    let api = Api::new(target)?;
    let app = match app {
        Some(a) => a,
        None => {
            api.get::<InvocationRow>(&format!("/v1/invocations/{id}"))
                .await?
                .app
        }
    };
    let Some(wasm) = local else {
        let v: Replayed = api
            .send(
                api.req(
                    reqwest::Method::POST,
                    &format!("/v1/apps/{app}/invocations/{id}/replay"),
                )
                .json(&ReplayRequest { revision }),
            )
            .await?
            .json()
            .await?;
        let revision = |r: &Run| r.revision.map_or("?".into(), |n| n.to_string());
        print_side(
            &format!("original (revision {})", revision(&v.original)),
            &v.original,
        );
        print_side(
            &format!(
                "replay   (revision {}, invocation {})",
                revision(&v.replay),
                v.replay.invocation_id.as_deref().unwrap_or("")
            ),
            &v.replay,
        );
        if !v.input_complete {
            eprintln!(
                "-- the kept body was cut at the server's limit (--replay-body-kb): the replay saw less than the original"
            );
        }
        return Ok(());
    };
    if revision.is_some() {
        bail!("--revision and --local exclude each other: a local replay runs the given component");
    }
    let kept: KeptInvocation = api
        .get(&format!("/v1/apps/{app}/invocations/{id}/input"))
        .await?;
    let original = kept
        .original
        .ok_or_else(|| anyhow!("the original invocation's record is gone (pruned)"))?;
    let mut spec = kept.function.ok_or_else(|| {
        anyhow!(
            "function {:?} is not in the revision that served the invocation",
            original.function
        )
    })?;
    let logs: Vec<LogLine> = api
        .get(&format!("/v1/apps/{app}/logs?invocation={id}"))
        .await?;
    print_side(
        &format!("original (revision {}, on the server)", original.revision),
        &Run {
            invocation_id: Some(original.id.clone()),
            revision: Some(original.revision),
            status: original.status,
            outcome: Some(original.outcome),
            error: original.error.clone(),
            body: None,
            logs,
        },
    );
    let local = run_local(&app, &original.function, &mut spec, wasm, &kept.input).await?;
    print_side(&format!("replay   (local {})", wasm.display()), &local);
    Ok(())
}

/// Runs the kept input through `wasm` in a runtime in this process.
async fn run_local(
    app: &str,
    function: &str,
    spec: &mut FunctionSpec,
    wasm: &Path,
    input: &KeptInput,
) -> Result<Run> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let hash = hex::encode(Sha256::digest(&bytes));
    let dir = tempfile::tempdir()?;
    let components = nimbus_store::ComponentStore::open(dir.path())?;
    let size = bytes.len() as u64;
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
    components
        .put_stream(&hash, size, stream)
        .await
        .map_err(|e| anyhow!("storing {}: {e}", wasm.display()))?;
    spec.component = hash;
    let records: Arc<Mutex<Vec<InvocationRecord>>> = Arc::default();
    let sink = records.clone();
    // The guest's data calls reach an empty embedded store of this replay:
    // the function links as it does on the node, and its data is not copied.
    let store = nimbus_store::Store::open_embedded(&dir.path().join("data"))
        .await
        .context("opening the replay's store")?;
    let max_value_bytes = 1 << 20;
    let mut capabilities = nimbus_data::guest_capabilities(&store, max_value_bytes);
    capabilities.push(Arc::new(nimbus_objects::Blobs::new(
        store.clone(),
        nimbus_store::BlobFiles::open(dir.path())?,
        max_value_bytes,
    )));
    // No events engine runs here: a replayed send fails as `unavailable`
    // (the interface links, so the function instantiates as on the node).
    capabilities.push(Arc::new(nimbus_events::Producer::new()));
    // Nor any WebSocket connection: a replayed send fails as `unavailable`.
    capabilities.push(Arc::new(nimbus_realtime::Sockets::new()));
    let runtime = nimbus_runtime::Runtime::new(
        nimbus_runtime::RuntimeConfig {
            cache_dir: dir.path().join("cache"),
            max_in_flight: 4,
            ..Default::default()
        },
        components,
        Arc::new(move |r| sink.lock().expect("not poisoned").push(r)),
        capabilities,
    )?;
    let app_spec = AppSpec {
        name: app.to_string(),
        functions: [(function.to_string(), spec.clone())].into(),
        ..Default::default()
    };
    let active = nimbus_runtime::ActiveApp::new(app_spec, 0);
    let f = active
        .functions
        .get(function)
        .cloned()
        .ok_or_else(|| anyhow!("function {function:?} missing"))?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(&input.body_base64)
        .context("the kept body")?;
    let kept = nimbus_core::StoredInput {
        method: input.method.clone(),
        path: input.path.clone(),
        headers: input.headers.clone(),
        body,
        complete: input.complete,
    };
    let req = nimbus_runtime::replay_request(&kept).map_err(|e| anyhow!(e))?;
    let meta = nimbus_runtime::InvokeRequest {
        trigger: "replay",
        ..Default::default()
    };
    let resp = runtime.invoke(&f, req, meta).await;
    let status = resp.status().as_u16();
    let body = match resp.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => format!("(the response body failed: {e})"),
    };
    let record = records
        .lock()
        .expect("not poisoned")
        .pop()
        .ok_or_else(|| anyhow!("the local invocation left no record"))?;
    let logs = [("stdout", record.stdout), ("stderr", record.stderr)]
        .into_iter()
        .filter(|(_, text)| !text.is_empty())
        .map(|(stream, text)| LogLine {
            stream: stream.into(),
            text,
        })
        .collect();
    Ok(Run {
        invocation_id: None,
        revision: None,
        status,
        outcome: Some(record.outcome),
        error: record.error,
        body: Some(body),
        logs,
    })
}

/// `nimbus trace ID`: a trace's invocations as a tree, with timings.
pub async fn trace(target: &Target, id: &str) -> Result<()> {
    let api = Api::new(target)?;
    let v: Trace = api.get(&format!("/v1/traces/{id}")).await?;
    // A guest's operations hang under its invocation's span.
    let span_of: HashMap<&str, &str> = v
        .spans
        .iter()
        .map(|s| (s.id.as_str(), s.span_id.as_str()))
        .collect();
    let mut spans: Vec<Span> = v.spans.iter().map(Span::Invocation).collect();
    spans.extend(v.operations.iter().map(|o| Span::Operation {
        parent: span_of.get(o.invocation_id.as_str()).copied(),
        op: o,
    }));
    spans.sort_by_key(|s| s.started_at_us());
    let start = spans.iter().map(Span::started_at_us).min().unwrap_or(0);
    let ids: HashSet<&str> = spans.iter().map(Span::id).collect();
    println!("trace {}", v.trace_id);
    fn print(spans: &[Span], parent: Option<&str>, ids: &HashSet<&str>, start: i64, depth: usize) {
        for s in spans.iter().filter(|s| match parent {
            Some(parent) => s.parent() == Some(parent),
            // Roots: no parent, or a parent outside the recorded spans.
            None => s.parent().is_none_or(|p| !ids.contains(p)),
        }) {
            let offset = (s.started_at_us() - start) as f64 / 1000.0;
            match s {
                Span::Operation { op, .. } => println!(
                    "{:indent$}{} {} {} {} +{offset:.1}ms {:.3}ms",
                    "",
                    op.service,
                    op.op,
                    op.target,
                    if op.ok { "ok" } else { "failed" },
                    op.duration_us as f64 / 1000.0,
                    indent = depth * 2
                ),
                Span::Invocation(r) => println!(
                    "{:indent$}{}/{} {} {} {} -> {} {} +{offset:.1}ms {:.3}ms",
                    "",
                    r.app,
                    r.function,
                    r.trigger,
                    r.method,
                    r.path,
                    r.status,
                    r.outcome.as_str(),
                    r.duration_us as f64 / 1000.0,
                    indent = depth * 2
                ),
            }
            print(spans, Some(s.id()), ids, start, depth + 1);
        }
    }
    print(&spans, None, &ids, start, 1);
    Ok(())
}

/// A span of a trace as `nimbus trace` draws it: an invocation, or a
/// guest's operation under its invocation's span.
enum Span<'a> {
    Invocation(&'a InvocationRow),
    Operation {
        op: &'a OpSpanRow,
        parent: Option<&'a str>,
    },
}

impl Span<'_> {
    fn id(&self) -> &str {
        match self {
            Span::Invocation(r) => &r.span_id,
            Span::Operation { op, .. } => &op.span_id,
        }
    }

    fn parent(&self) -> Option<&str> {
        match self {
            Span::Invocation(r) => r.parent_span_id.as_deref(),
            Span::Operation { parent, .. } => *parent,
        }
    }

    fn started_at_us(&self) -> i64 {
        match self {
            Span::Invocation(r) => r.started_at_us,
            Span::Operation { op, .. } => op.started_at_us,
        }
    }
}
