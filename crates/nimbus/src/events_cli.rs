//! Event commands: `nimbus queue`, `nimbus topic`, `nimbus dlq`, and event
//! status (`nimbus invocations --id/--state`).

use crate::Target;
use crate::client::{Api, format_time};
use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;

fn split<'a>(what: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    s.split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| anyhow!("name the {what} as APP/NAME, e.g. demo/orders"))
}

/// A message's payload and attributes.
#[derive(Args)]
pub struct MessageArgs {
    /// Payload
    #[arg(conflicts_with = "file")]
    body: Option<String>,
    /// Read the payload from a file
    #[arg(long)]
    file: Option<PathBuf>,
    /// Media type of the payload
    #[arg(long)]
    content_type: Option<String>,
    /// CloudEvents type
    #[arg(long = "type")]
    ce_type: Option<String>,
    /// FIFO group: messages of one group are delivered one at a time, in order
    #[arg(long)]
    group: Option<String>,
    /// A second send with this key within the queue's dedup window is dropped
    #[arg(long)]
    idempotency_key: Option<String>,
}

impl MessageArgs {
    fn request(&self, api: &Api, path: &str) -> Result<reqwest::RequestBuilder> {
        let body = match (&self.body, &self.file) {
            (Some(b), _) => b.clone().into_bytes(),
            (None, Some(f)) => {
                std::fs::read(f).with_context(|| format!("reading {}", f.display()))?
            }
            (None, None) => Vec::new(),
        };
        let mut rb = api.req(reqwest::Method::POST, path).body(body);
        if let Some(v) = &self.content_type {
            rb = rb.header("content-type", v);
        }
        if let Some(v) = &self.ce_type {
            rb = rb.header("ce-type", v);
        }
        if let Some(v) = &self.group {
            rb = rb.header("nimbus-message-group", v);
        }
        if let Some(v) = &self.idempotency_key {
            rb = rb.header("idempotency-key", v);
        }
        Ok(rb)
    }
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Send a message to a queue (APP/QUEUE)
    Send {
        /// APP/QUEUE
        queue: String,
        #[command(flatten)]
        message: MessageArgs,
    },
    /// Show an app's queues and channels with their depth
    Ls {
        /// App name
        app: String,
    },
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Publish a message to a topic (APP/TOPIC): every subscriber gets a copy
    Publish {
        /// APP/TOPIC
        topic: String,
        #[command(flatten)]
        message: MessageArgs,
    },
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List a function's dead-lettered events (APP/FUNCTION)
    List {
        /// APP/FUNCTION
        function: String,
        /// How many
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one dead-lettered event with its payload and attempts
    Show {
        /// APP/FUNCTION
        function: String,
        /// Event id
        id: String,
    },
    /// Put dead-lettered events back in their queue for a fresh round of attempts
    Redrive {
        /// APP/FUNCTION
        function: String,
        /// Only these events [default: all]
        ids: Vec<String>,
    },
    /// Delete dead-lettered events for good
    Purge {
        /// APP/FUNCTION
        function: String,
        /// Only these events [default: all]
        ids: Vec<String>,
    },
}

pub async fn queue(target: &Target, cmd: QueueCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        QueueCommand::Send { queue, message } => {
            let (app, q) = split("queue", &queue)?;
            let rb = message.request(&api, &format!("/v1/apps/{app}/queues/{q}/messages"))?;
            let v: Value = api.send(rb).await?.json().await?;
            let id = v["id"].as_str().unwrap_or("");
            if v["duplicate"].as_bool() == Some(true) {
                println!(
                    "{id} (duplicate: the idempotency key was seen recently; nothing new stored)"
                );
            } else {
                println!("{id}");
            }
        }
        QueueCommand::Ls { app } => {
            let v = api.get_json(&format!("/v1/apps/{app}/queues")).await?;
            println!(
                "{:<32} {:<16} {:>8} {:>8} {:>8} {:>8}",
                "CHANNEL", "FUNCTION", "QUEUED", "RUNNING", "RETRYING", "DEAD"
            );
            for c in v["channels"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<32} {:<16} {:>8} {:>8} {:>8} {:>8}",
                    c["channel"].as_str().unwrap_or(""),
                    c["function"].as_str().unwrap_or("-"),
                    c["queued"],
                    c["running"],
                    c["failed"],
                    c["dead"]
                );
            }
        }
    }
    Ok(())
}

pub async fn topic(target: &Target, cmd: TopicCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        TopicCommand::Publish { topic, message } => {
            let (app, t) = split("topic", &topic)?;
            let rb = message.request(&api, &format!("/v1/apps/{app}/topics/{t}/messages"))?;
            let v: Value = api.send(rb).await?.json().await?;
            let ids = v["ids"].as_array().cloned().unwrap_or_default();
            if ids.is_empty() {
                println!("published; the topic has no subscribers, so no copy was stored");
            }
            for id in ids {
                println!("{}", id.as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

pub(crate) fn print_event(e: &Value) {
    println!(
        "{:<36}  {:<9} attempts {:<3} {:<24} {}",
        e["id"].as_str().unwrap_or(""),
        e["state"].as_str().unwrap_or(""),
        e["attempts"],
        format_time(e["created_at_us"].as_i64().unwrap_or(0)),
        e["channel"].as_str().unwrap_or(""),
    );
    if let Some(err) = e["last_error"].as_str() {
        println!("    {err}");
    }
}

fn print_detail(v: &Value) {
    for key in [
        "id",
        "state",
        "channel",
        "function",
        "attempts",
        "group_key",
        "last_error",
    ] {
        if !v[key].is_null() {
            println!(
                "{key}: {}",
                v[key].as_str().map_or(v[key].to_string(), String::from)
            );
        }
    }
    println!(
        "created: {}",
        format_time(v["created_at_us"].as_i64().unwrap_or(0))
    );
    println!(
        "{} {}",
        v["method"].as_str().unwrap_or(""),
        v["path"].as_str().unwrap_or("")
    );
    for h in v["headers"].as_array().cloned().unwrap_or_default() {
        println!(
            "{}: {}",
            h[0].as_str().unwrap_or(""),
            h[1].as_str().unwrap_or("")
        );
    }
    match (v["body"].as_str(), v["body_base64"].as_str()) {
        (Some(b), _) => println!("\n{b}"),
        (None, Some(b)) => println!("\n(binary, base64) {b}"),
        _ => {}
    }
    let attempts = v["invocations"].as_array().cloned().unwrap_or_default();
    if !attempts.is_empty() {
        println!("\nattempts:");
    }
    for i in attempts.iter().rev() {
        println!(
            "  #{} {}  {}  {} {:.2}ms  {}",
            i["attempt"],
            i["id"].as_str().unwrap_or(""),
            format_time(i["started_at_us"].as_i64().unwrap_or(0)),
            i["status"],
            i["duration_us"].as_f64().unwrap_or(0.0) / 1000.0,
            i["error"]
                .as_str()
                .unwrap_or(i["outcome"].as_str().unwrap_or("")),
        );
    }
}

pub async fn dlq(target: &Target, cmd: DlqCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        DlqCommand::List { function, limit } => {
            let (app, f) = split("function", &function)?;
            let v = api
                .get_json(&format!("/v1/apps/{app}/functions/{f}/dlq?limit={limit}"))
                .await?;
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("the dead-letter queue of {app}/{f} is empty");
            }
            for e in list {
                print_event(&e);
            }
        }
        DlqCommand::Show { function, id } => {
            let (app, f) = split("function", &function)?;
            let v = api
                .get_json(&format!("/v1/apps/{app}/functions/{f}/dlq/{id}"))
                .await?;
            print_detail(&v);
        }
        DlqCommand::Redrive { function, ids } => {
            let (app, f) = split("function", &function)?;
            let n = dlq_action(&api, app, f, "redrive", ids).await?;
            println!("{n} event(s) back in their queue");
        }
        DlqCommand::Purge { function, ids } => {
            let (app, f) = split("function", &function)?;
            let n = dlq_action(&api, app, f, "purge", ids).await?;
            println!("{n} event(s) deleted");
        }
    }
    Ok(())
}

async fn dlq_action(api: &Api, app: &str, f: &str, action: &str, ids: Vec<String>) -> Result<u64> {
    let body = if ids.is_empty() {
        json!({})
    } else {
        json!({ "ids": ids })
    };
    let rb = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/apps/{app}/functions/{f}/dlq/{action}"),
        )
        .json(&body);
    let v: Value = api.send(rb).await?.json().await?;
    Ok(v["redriven"].as_u64().or(v["purged"].as_u64()).unwrap_or(0))
}

/// `nimbus invocations APP --id ID`: an event's state and attempts, or one invocation.
pub async fn invocation(target: &Target, app: &str, id: &str) -> Result<()> {
    let api = Api::new(target)?;
    let v = api
        .get_json(&format!("/v1/apps/{app}/invocations/{id}"))
        .await?;
    if v["kind"] == "event" {
        print_detail(&v);
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

/// `nimbus invocations APP[/FUNCTION] --state S`: events in that state.
pub async fn events_in_state(
    target: &Target,
    app: &str,
    function: Option<&str>,
    state: &str,
    limit: i64,
) -> Result<()> {
    let api = Api::new(target)?;
    let mut q = format!("/v1/apps/{app}/events?state={state}&limit={limit}");
    if let Some(f) = function {
        q.push_str(&format!("&function={f}"));
    }
    let v = api.get_json(&q).await?;
    for e in v.as_array().cloned().unwrap_or_default() {
        print_event(&e);
    }
    Ok(())
}
