//! In-process cost of one invocation with a fresh instance, without the
//! network: admission, store and instance creation, the guest's handler,
//! reading the response body, dropping the instance, building the record.
//!
//!     cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml
//!     cargo bench -p nimbus-runtime --bench invoke
//!
//! Prints microseconds per invocation (median of 7 rounds) for sequential
//! calls on one task, and throughput with 32 concurrent callers.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use nimbus_core::{FunctionSpec, Limits};
use nimbus_runtime::{Function, InvokeRequest, Runtime, RuntimeConfig};
use nimbus_store::ComponentStore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

fn request()
-> http::Request<http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>> {
    http::Request::get("/hello")
        .header("host", "bench")
        .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
        .unwrap()
}

async fn one(rt: &Arc<Runtime>, f: &Arc<Function>) {
    let resp = rt
        .invoke(
            f,
            request(),
            InvokeRequest {
                trigger: "http",
                ..Default::default()
            },
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
}

fn main() {
    // As `nimbus` does: no library backtraces for errors wasmtime discards.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    let wasm_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/target/wasm32-wasip2/release/hello.wasm"
    );
    let wasm = std::fs::read(wasm_path)
        .expect("build the example guests first (see the header of this file)");
    let hash = hex::encode(Sha256::digest(&wasm));
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let components = ComponentStore::open(dir.path()).unwrap();
        let stream = futures::stream::iter([Ok::<_, String>(Bytes::from(wasm))]);
        components
            .put_stream(&hash, u64::MAX, stream)
            .await
            .unwrap();
        let config = RuntimeConfig {
            cache_dir: dir.path().join("cache"),
            ..Default::default()
        };
        let runtime = Runtime::new(config, components, Arc::new(|_record| {}), Vec::new()).unwrap();
        runtime.load(&hash).await.unwrap();
        let spec = FunctionSpec {
            component: hash.clone(),
            limits: Limits {
                max_concurrency: 1000,
                ..Limits::default()
            },
            env: Default::default(),
            allowed_outbound_hosts: vec![],
            ..Default::default()
        };
        let f = Arc::new(Function::new("bench", "hello", 1, &spec));
        for _ in 0..2000 {
            one(&runtime, &f).await;
        }

        const N: u32 = 20_000;
        let mut rounds = Vec::new();
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..N {
                one(&runtime, &f).await;
            }
            rounds.push(start.elapsed().as_secs_f64() * 1e6 / N as f64);
        }
        rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "sequential: {:.1} µs per invocation (median of 7 x {N}; min {:.1}, max {:.1})",
            rounds[3], rounds[0], rounds[6]
        );

        let start = Instant::now();
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (runtime, f) = (runtime.clone(), f.clone());
                tokio::spawn(async move {
                    for _ in 0..N / 32 {
                        one(&runtime, &f).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let per_sec = (N / 32 * 32) as f64 / start.elapsed().as_secs_f64();
        println!("32 concurrent callers: {per_sec:.0} invocations/s");
    });
}
