//! The ceiling `bench/realtime.sh` compares Nimbus with: a plain
//! tokio-tungstenite server that holds WebSocket connections and, when any
//! client sends a text message, sends it to every connection (a tokio
//! broadcast channel). No functions, no policy, no registry: what a
//! hand-written Rust server costs per connection and per broadcast.
//!
//!   wsceiling [--listen 127.0.0.1:0]      prints "listening on ws://ADDR"

use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
struct Args {
    /// Where to listen
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    let (all, _) = broadcast::channel::<Message>(1024);
    loop {
        let (tcp, _) = listener.accept().await?;
        let all = all.clone();
        tokio::spawn(async move {
            // The same buffers Nimbus gives a connection.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
            else {
                return;
            };
            let (mut tx, mut rx) = ws.split();
            let mut heard = all.subscribe();
            loop {
                tokio::select! {
                    m = rx.next() => match m {
                        Some(Ok(Message::Text(t))) => { let _ = all.send(Message::Text(t)); }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                    m = heard.recv() => match m {
                        Ok(m) => if tx.send(m).await.is_err() { return },
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    },
                }
            }
        });
    }
}
