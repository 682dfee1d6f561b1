//! `nimbus replay`: run a failed invocation again — on the server against a
//! revision, or on this machine against a locally built component, with
//! the same limits, environment and manifest configuration — and show both
//! outcomes and their logs side by side.

use crate::Target;
use crate::client::Api;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use nimbus_core::{AppSpec, FunctionSpec, InvocationRecord};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn print_side(title: &str, v: &Value) {
    println!(
        "{title}: HTTP {} {}{}",
        v["status"],
        v["outcome"].as_str().unwrap_or("?"),
        v["error"]
            .as_str()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default()
    );
    if let Some(body) = v["body"].as_str().filter(|b| !b.is_empty()) {
        for line in body.lines().take(20) {
            println!("  body   | {line}");
        }
    }
    for l in v["logs"].as_array().into_iter().flatten() {
        let stream = l["stream"].as_str().unwrap_or("");
        for line in l["text"].as_str().unwrap_or("").lines() {
            println!("  {stream:<6} | {line}");
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
        None => api.get_json(&format!("/v1/invocations/{id}")).await?["app"]
            .as_str()
            .ok_or_else(|| anyhow!("the server did not say which app invocation {id} is of"))?
            .to_string(),
    };
    let Some(wasm) = local else {
        let v: Value = api
            .send(
                api.req(
                    reqwest::Method::POST,
                    &format!("/v1/apps/{app}/invocations/{id}/replay"),
                )
                .json(&json!({ "revision": revision })),
            )
            .await?
            .json()
            .await?;
        print_side(
            &format!("original (revision {})", v["original"]["revision"]),
            &v["original"],
        );
        print_side(
            &format!(
                "replay   (revision {}, invocation {})",
                v["replay"]["revision"],
                v["replay"]["invocation_id"].as_str().unwrap_or("")
            ),
            &v["replay"],
        );
        return Ok(());
    };
    if revision.is_some() {
        bail!("--revision and --local exclude each other: a local replay runs the given component");
    }
    let kept = api
        .get_json(&format!("/v1/apps/{app}/invocations/{id}/input"))
        .await?;
    let original = &kept["original"];
    let function_name = original["function"]
        .as_str()
        .ok_or_else(|| anyhow!("the original invocation's record is gone (pruned)"))?
        .to_string();
    let mut spec: FunctionSpec = serde_json::from_value(kept["function"].clone())
        .context("the original revision's function spec")?;
    let logs = api
        .get_json(&format!("/v1/apps/{app}/logs?invocation={id}"))
        .await?;
    let original_view = json!({
        "status": original["status"],
        "outcome": original["outcome"],
        "error": original["error"],
        "logs": logs,
    });
    print_side(
        &format!(
            "original (revision {}, on the server)",
            original["revision"]
        ),
        &original_view,
    );
    let local = run_local(&app, &function_name, &mut spec, wasm, &kept["input"]).await?;
    print_side(&format!("replay   (local {})", wasm.display()), &local);
    Ok(())
}

/// Runs the kept input through `wasm` in a runtime in this process.
async fn run_local(
    app: &str,
    function: &str,
    spec: &mut FunctionSpec,
    wasm: &Path,
    input: &Value,
) -> Result<Value> {
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
        .decode(input["body_base64"].as_str().unwrap_or(""))
        .context("the kept body")?;
    let kept = nimbus_core::StoredInput {
        method: input["method"].as_str().unwrap_or("GET").to_string(),
        path: input["path"].as_str().unwrap_or("/").to_string(),
        headers: serde_json::from_value(input["headers"].clone()).context("the kept headers")?,
        body,
        complete: input["complete"].as_bool().unwrap_or(false),
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
    let mut logs = Vec::new();
    for (stream, text) in [("stdout", &record.stdout), ("stderr", &record.stderr)] {
        if !text.is_empty() {
            logs.push(json!({ "stream": stream, "text": text }));
        }
    }
    Ok(json!({
        "status": status,
        "outcome": record.outcome,
        "error": record.error,
        "body": body,
        "logs": logs,
    }))
}

/// `nimbus trace ID`: a trace's invocations as a tree, with timings.
pub async fn trace(target: &Target, id: &str) -> Result<()> {
    let api = Api::new(target)?;
    let v = api.get_json(&format!("/v1/traces/{id}")).await?;
    let mut spans = v["spans"].as_array().cloned().unwrap_or_default();
    // A guest's operations hang under its invocation's span.
    let span_of: std::collections::HashMap<String, String> = spans
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?.into(), s["span_id"].as_str()?.into())))
        .collect();
    for op in v["operations"].as_array().cloned().unwrap_or_default() {
        let mut op = op;
        let parent = op["invocation_id"]
            .as_str()
            .and_then(|i| span_of.get(i))
            .cloned();
        op["parent_span_id"] = parent.into();
        op["kind"] = "operation".into();
        spans.push(op);
    }
    spans.sort_by_key(|s| s["started_at_us"].as_i64().unwrap_or(0));
    let start = spans
        .iter()
        .filter_map(|s| s["started_at_us"].as_i64())
        .min()
        .unwrap_or(0);
    let ids: std::collections::HashSet<&str> =
        spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
    println!("trace {}", v["trace_id"].as_str().unwrap_or(""));
    fn print(
        spans: &[Value],
        parent: Option<&str>,
        ids: &std::collections::HashSet<&str>,
        start: i64,
        depth: usize,
    ) {
        for s in spans.iter().filter(|s| {
            let p = s["parent_span_id"].as_str();
            match parent {
                Some(parent) => p == Some(parent),
                // Roots: no parent, or a parent outside the recorded spans.
                None => p.is_none_or(|p| !ids.contains(p)),
            }
        }) {
            let offset = (s["started_at_us"].as_i64().unwrap_or(0) - start) as f64 / 1000.0;
            let duration = s["duration_us"].as_i64().unwrap_or(0) as f64 / 1000.0;
            if s["kind"] == "operation" {
                println!(
                    "{:indent$}{} {} {} {} +{offset:.1}ms {duration:.3}ms",
                    "",
                    s["service"].as_str().unwrap_or(""),
                    s["op"].as_str().unwrap_or(""),
                    s["target"].as_str().unwrap_or(""),
                    if s["ok"] == true { "ok" } else { "failed" },
                    indent = depth * 2
                );
            } else {
                println!(
                    "{:indent$}{}/{} {} {} {} -> {} {} +{offset:.1}ms {duration:.3}ms",
                    "",
                    s["app"].as_str().unwrap_or(""),
                    s["function"].as_str().unwrap_or(""),
                    s["trigger"].as_str().unwrap_or(""),
                    s["method"].as_str().unwrap_or(""),
                    s["path"].as_str().unwrap_or(""),
                    s["status"],
                    s["outcome"].as_str().unwrap_or(""),
                    indent = depth * 2
                );
            }
            print(spans, s["span_id"].as_str(), ids, start, depth + 1);
        }
    }
    print(&spans, None, &ids, start, 1);
    Ok(())
}
