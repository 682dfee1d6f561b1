//! Event commands: `nimbus queue`, `nimbus topic`, `nimbus dlq`, and event
//! status (`nimbus invocations --id/--state`).

use crate::Target;
use crate::client::{Api, format_time};
use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use nimbus_api::{
    DeadLetters, EventDetail, InvocationLookup, MessageRow, Published, Purged, QueueDepths,
    Redriven, Sent,
};
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
            let sent: Sent = api.read(rb).await?;
            if sent.duplicate {
                println!(
                    "{} (duplicate: the idempotency key was seen recently; nothing new stored)",
                    sent.id
                );
            } else {
                println!("{}", sent.id);
            }
        }
        QueueCommand::Ls { app } => {
            let depths: QueueDepths = api.get(&format!("/v1/apps/{app}/queues")).await?;
            println!(
                "{:<32} {:<16} {:>8} {:>8} {:>8} {:>8}",
                "CHANNEL", "FUNCTION", "QUEUED", "RUNNING", "RETRYING", "DEAD"
            );
            for c in depths.channels {
                println!(
                    "{:<32} {:<16} {:>8} {:>8} {:>8} {:>8}",
                    c.channel,
                    c.function.as_deref().unwrap_or("-"),
                    c.queued,
                    c.running,
                    c.failed,
                    c.dead
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
            let published: Published = api.read(rb).await?;
            if published.ids.is_empty() {
                println!("published; the topic has no subscribers, so no copy was stored");
            }
            for id in published.ids {
                println!("{id}");
            }
        }
    }
    Ok(())
}

pub(crate) fn print_event(e: &MessageRow) {
    println!(
        "{:<36}  {:<9} attempts {:<3} {:<24} {}",
        e.id,
        e.state,
        e.attempts,
        format_time(e.created_at_us),
        e.channel,
    );
    if let Some(err) = &e.last_error {
        println!("    {err}");
    }
}

fn print_detail(d: &EventDetail) {
    let m = &d.message;
    println!("id: {}", m.id);
    println!("state: {}", m.state);
    println!("channel: {}", m.channel);
    if let Some(f) = &m.function {
        println!("function: {f}");
    }
    println!("attempts: {}", m.attempts);
    if let Some(g) = &m.group_key {
        println!("group_key: {g}");
    }
    if let Some(e) = &m.last_error {
        println!("last_error: {e}");
    }
    println!("created: {}", format_time(m.created_at_us));
    println!("{} {}", m.method, m.path);
    for (name, value) in &m.headers {
        println!("{name}: {value}");
    }
    match (&d.body, &d.body_base64) {
        (Some(b), _) => println!("\n{b}"),
        (None, Some(b)) => println!("\n(binary, base64) {b}"),
        _ => {}
    }
    if !d.invocations.is_empty() {
        println!("\nattempts:");
    }
    for i in d.invocations.iter().rev() {
        println!(
            "  #{} {}  {}  {} {:.2}ms  {}",
            i.attempt,
            i.id,
            format_time(i.started_at_us),
            i.status,
            i.duration_us as f64 / 1000.0,
            i.error.as_deref().unwrap_or(i.outcome.as_str()),
        );
    }
}

pub async fn dlq(target: &Target, cmd: DlqCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        DlqCommand::List { function, limit } => {
            let (app, f) = split("function", &function)?;
            let list: Vec<MessageRow> = api
                .get(&format!("/v1/apps/{app}/functions/{f}/dlq?limit={limit}"))
                .await?;
            if list.is_empty() {
                println!("the dead-letter queue of {app}/{f} is empty");
            }
            for e in &list {
                print_event(e);
            }
        }
        DlqCommand::Show { function, id } => {
            let (app, f) = split("function", &function)?;
            let detail: EventDetail = api
                .get(&format!("/v1/apps/{app}/functions/{f}/dlq/{id}"))
                .await?;
            print_detail(&detail);
        }
        DlqCommand::Redrive { function, ids } => {
            let (app, f) = split("function", &function)?;
            let path = format!("/v1/apps/{app}/functions/{f}/dlq/redrive");
            let done: Redriven = api.read(dlq_request(&api, &path, ids)).await?;
            println!("{} event(s) back in their queue", done.redriven);
        }
        DlqCommand::Purge { function, ids } => {
            let (app, f) = split("function", &function)?;
            let path = format!("/v1/apps/{app}/functions/{f}/dlq/purge");
            let done: Purged = api.read(dlq_request(&api, &path, ids)).await?;
            println!("{} event(s) deleted", done.purged);
        }
    }
    Ok(())
}

/// A redrive or purge of the dead letters `ids` (all when empty).
fn dlq_request(api: &Api, path: &str, ids: Vec<String>) -> reqwest::RequestBuilder {
    let body = DeadLetters {
        ids: (!ids.is_empty()).then_some(ids),
    };
    api.req(reqwest::Method::POST, path).json(&body)
}

/// `nimbus invocations APP --id ID`: an event's state and attempts, or one invocation.
pub async fn invocation(target: &Target, app: &str, id: &str) -> Result<()> {
    let api = Api::new(target)?;
    let found: InvocationLookup = api.get(&format!("/v1/apps/{app}/invocations/{id}")).await?;
    match found {
        InvocationLookup::Event(detail) => print_detail(&detail),
        InvocationLookup::Invocation(i) => println!("{}", serde_json::to_string_pretty(&i)?),
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
    let events: Vec<MessageRow> = api.get(&q).await?;
    for e in &events {
        print_event(e);
    }
    Ok(())
}
