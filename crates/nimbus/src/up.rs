//! `nimbus up`: the platform's log lines, then a node ([`nimbus_server::Node`])
//! until SIGINT or SIGTERM.

use anyhow::Result;
use nimbus_server::{Config, Node};
use nimbus_store::Store;
use std::path::Path;

pub async fn run(args: Config) -> Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr);
    match args.log_format.as_str() {
        "json" => logs.json().init(),
        "text" => logs.init(),
        other => anyhow::bail!("--log-format {other:?} is unknown: use text or json"),
    }
    let node = Node::start(args).await?;
    let (url, control_url) = (&node.url, &node.control_url);
    let data_dir = node.data_dir.display();
    let (database, restored) = (&node.database, node.restored);
    tracing::info!(%url, %control_url, %data_dir, %database, apps = restored, "Nimbus is up");
    println!(
        "Nimbus listening on {url} , console and control API on {control_url} (data dir {data_dir}, {database}, {restored} app(s) restored){}",
        node.s3_url
            .as_ref()
            .map(|u| format!("; S3 endpoint on {u}"))
            .unwrap_or_default()
    );
    node.run_until(shutdown_signal()).await
}

/// `nimbus migrate`: applies the migrations a database lacks and says which.
pub async fn migrate(database: Option<&str>, data_dir: &Path) -> Result<()> {
    let (store, name) = match database {
        Some(url) => (
            Store::connect_postgres(url, 2).await?,
            nimbus_store::redact_url(url),
        ),
        None => (
            Store::connect_embedded(data_dir).await?,
            data_dir.join("nimbus.db").display().to_string(),
        ),
    };
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("{name}: the schema is up to date");
    } else {
        for m in &applied {
            println!("{name}: applied {m}");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
