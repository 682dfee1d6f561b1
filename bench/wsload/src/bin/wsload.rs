//! `bench/realtime.sh`'s load client: opens many WebSocket connections to
//! one URL and keeps them idle, reads the server's RSS before and after
//! (`--pid`), then makes the server broadcast again and again and times
//! each broadcast from the send of the message that triggers it to its
//! arrival at the last of the connections.
//!
//! A broadcast is triggered by one more connection sending
//! `{--say}b{N}`; every connection expects a text message ending in
//! `b{N}` (Nimbus's chat answers `say X` with `ROOM NAME: X` to the room;
//! the ceiling server sends back what it got).
//!
//!   wsload --url ws://127.0.0.1:8080/rooms/bench?name=x --connections 10000 \
//!          --broadcasts 50 --say "say " --pid 1234

use anyhow::{Context, bail};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// The WebSocket URL every connection opens
    #[arg(long)]
    url: String,
    /// Idle connections to hold
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connections being opened at once
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
    /// Broadcasts to time
    #[arg(long, default_value_t = 50)]
    broadcasts: usize,
    /// What precedes `b{N}` in the message that triggers a broadcast
    #[arg(long, default_value = "")]
    say: String,
    /// The server's pid, to read its RSS
    #[arg(long)]
    pid: Option<u32>,
    /// How long to let the server settle before reading its RSS
    #[arg(long, default_value_t = 3000)]
    settle_ms: u64,
    /// A name for the output lines
    #[arg(long, default_value = "server")]
    label: String,
    /// Connections opened (at --open-concurrency) and closed again before
    /// the RSS baseline is read, so that what opening them warms (a
    /// server's pools of instances and buffers) is in the baseline, not
    /// counted per connection
    #[arg(long, default_value_t = 1000)]
    warmup: usize,
}

/// Opens `n` connections to `url`, `concurrency` at a time, and closes
/// them.
async fn warm_up(url: &str, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (gate, url) = (gate.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
            ws.close(None).await?;
            while let Some(Ok(_)) = ws.next().await {}
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// Per broadcast: how many connections got it, and the last arrival (ns
/// after `base`).
struct Arrivals {
    base: Instant,
    count: Vec<AtomicU64>,
    last_ns: Vec<AtomicU64>,
}

impl Arrivals {
    fn arrived(&self, text: &str) {
        let Some(n) = text
            .rsplit(' ')
            .next()
            .and_then(|t| t.strip_prefix('b'))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return;
        };
        if n < self.count.len() {
            let at = self.base.elapsed().as_nanos() as u64;
            self.last_ns[n].fetch_max(at, Ordering::SeqCst);
            self.count[n].fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let arrivals = Arc::new(Arrivals {
        base: Instant::now(),
        count: (0..args.broadcasts).map(|_| AtomicU64::new(0)).collect(),
        last_ns: (0..args.broadcasts).map(|_| AtomicU64::new(0)).collect(),
    });

    // The trigger connection first: its server side is warm before the
    // RSS baseline is read.
    let (trigger, _) = tokio_tungstenite::connect_async(&args.url)
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let (mut say, mut heard) = trigger.split();
    tokio::spawn(async move { while let Some(Ok(_)) = heard.next().await {} });
    warm_up(&args.url, args.warmup, args.open_concurrency).await?;
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let before = args.pid.map(rss_kib).transpose()?;

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.open_concurrency.max(1)));
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut openers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (gate, url, arrivals) = (gate.clone(), args.url.clone(), arrivals.clone());
        let (opened, failed) = (opened.clone(), failed.clone());
        openers.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let ws = match tokio_tungstenite::connect_async(&url).await {
                Ok((ws, _)) => ws,
                Err(e) => {
                    if failed.fetch_add(1, Ordering::SeqCst) == 0 {
                        eprintln!("a connection failed: {e}");
                    }
                    return;
                }
            };
            drop(permit);
            opened.fetch_add(1, Ordering::SeqCst);
            let (_keep, mut rx) = ws.split();
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Text(t) = m {
                    arrivals.arrived(&t);
                }
            }
        }));
    }
    while opened.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst) < args.connections as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = opened.load(Ordering::SeqCst);
    println!(
        "{}: {n} connections opened in {:.1} s ({} failed)",
        args.label,
        started.elapsed().as_secs_f64(),
        failed.load(Ordering::SeqCst)
    );
    if n == 0 {
        bail!("no connection opened");
    }
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    if let (Some(pid), Some(before)) = (args.pid, before) {
        let after = rss_kib(pid)?;
        println!(
            "{}: RSS {before} KiB with one connection (after {} opened and closed), {after} KiB with {} idle: {:.1} KiB per connection",
            args.label,
            args.warmup,
            n + 1,
            (after.saturating_sub(before)) as f64 / n as f64
        );
        println!(
            "RESULT {} rss_before_kib={before} rss_after_kib={after} per_connection_kib={:.2}",
            args.label,
            (after.saturating_sub(before)) as f64 / n as f64
        );
    }

    let mut latencies = Vec::with_capacity(args.broadcasts);
    for i in 0..args.broadcasts {
        let sent = arrivals.base.elapsed().as_nanos() as u64;
        say.send(Message::text(format!("{}b{i}", args.say))).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while arrivals.count[i].load(Ordering::SeqCst) < n {
            if Instant::now() > deadline {
                bail!(
                    "broadcast {i} reached {} of {n} connections in 30 s",
                    arrivals.count[i].load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let last = arrivals.last_ns[i].load(Ordering::SeqCst);
        latencies.push((last.saturating_sub(sent)) as f64 / 1e6);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    println!(
        "{}: broadcast to {n} connections, {} times, send to last arrival: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        args.label, args.broadcasts
    );
    println!(
        "RESULT {} connections={n} broadcast_p50_ms={p50:.2} broadcast_p99_ms={p99:.2} broadcast_max_ms={max:.2}",
        args.label
    );
    for o in openers {
        o.abort();
    }
    Ok(())
}
