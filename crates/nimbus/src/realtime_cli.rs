//! `nimbus connections`: an app's open WebSocket connections (on every
//! node of the cluster), sending to one, closing one, and publishing to a
//! channel.

use crate::Target;
use crate::client::{Api, format_time};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nimbus_api::ConnectionInfo;
use std::path::PathBuf;

/// A message: text unless `--binary`.
#[derive(Args)]
pub struct Payload {
    /// The message
    #[arg(conflicts_with = "file", required_unless_present = "file")]
    message: Option<String>,
    /// Read the message from a file
    #[arg(long)]
    file: Option<PathBuf>,
    /// Send it as a binary message [default: text, which must be UTF-8]
    #[arg(long)]
    binary: bool,
}

impl Payload {
    fn request(&self, api: &Api, path: &str) -> Result<reqwest::RequestBuilder> {
        let body = match (&self.message, &self.file) {
            (Some(m), _) => m.clone().into_bytes(),
            (None, Some(f)) => {
                std::fs::read(f).with_context(|| format!("reading {}", f.display()))?
            }
            (None, None) => Vec::new(),
        };
        let content_type = if self.binary {
            "application/octet-stream"
        } else {
            "text/plain; charset=utf-8"
        };
        Ok(api
            .req(reqwest::Method::POST, path)
            .header("content-type", content_type)
            .body(body))
    }
}

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// List an app's open connections, on every node
    Ls {
        /// App name
        app: String,
        /// At most this many
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print the JSON the API answers
        #[arg(long)]
        json: bool,
    },
    /// Send a message to one connection
    Send {
        /// App name
        app: String,
        /// Connection id (`nimbus-connection-id`)
        id: String,
        #[command(flatten)]
        payload: Payload,
    },
    /// Close one connection (its disconnect function runs)
    Close {
        /// App name
        app: String,
        /// Connection id
        id: String,
        /// Close code: 1000, or 3000-4999
        #[arg(long, default_value_t = 1000)]
        code: u16,
        /// Close reason, at most 123 bytes
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Publish a message to a channel: every subscribed connection of the app gets it
    Publish {
        /// App name
        app: String,
        /// Channel name
        channel: String,
        #[command(flatten)]
        payload: Payload,
    },
}

/// `s` as one path segment: every byte but the unreserved ones and `:@`
/// percent-encoded.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~:@".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn connections(target: &Target, cmd: ConnectionsCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        ConnectionsCommand::Ls { app, limit, json } => {
            let list: Vec<ConnectionInfo> = api
                .get(&format!(
                    "/v1/apps/{}/connections?limit={limit}",
                    segment(&app)
                ))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "{:<32} {:<16} {:<24} {:>6} {:>6} {:<20} PATH",
                "ID", "NODE", "OPENED", "IN", "OUT", "ROUTE"
            );
            let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
            for c in &list {
                println!(
                    "{:<32} {:<16} {:<24} {:>6} {:>6} {:<20} {}",
                    c.id,
                    c.node,
                    format_time(c.opened_at_ms as i64 * 1000),
                    count(c.messages_in),
                    count(c.messages_out),
                    c.route,
                    c.path,
                );
                if let Some(channels) = c.channels.as_ref().filter(|c| !c.is_empty()) {
                    println!("    channels: {}", channels.join(", "));
                }
            }
            if list.is_empty() {
                println!("(no open connections)");
            }
        }
        ConnectionsCommand::Send { app, id, payload } => {
            let path = format!(
                "/v1/apps/{}/connections/{}/messages",
                segment(&app),
                segment(&id)
            );
            let rb = payload.request(&api, &path)?;
            api.send(rb).await?;
            println!("queued for {id}");
        }
        ConnectionsCommand::Close {
            app,
            id,
            code,
            reason,
        } => {
            let rb = api
                .req(
                    reqwest::Method::DELETE,
                    &format!("/v1/apps/{}/connections/{}", segment(&app), segment(&id)),
                )
                .query(&[("code", code.to_string()), ("reason", reason)]);
            api.send(rb).await?;
            println!("closing {id} ({code})");
        }
        ConnectionsCommand::Publish {
            app,
            channel,
            payload,
        } => {
            let path = format!(
                "/v1/apps/{}/channels/{}/messages",
                segment(&app),
                segment(&channel)
            );
            let rb = payload.request(&api, &path)?;
            api.send(rb).await?;
            println!("published to {channel}");
        }
    }
    Ok(())
}
