//! Data commands: `nimbus kv`, `nimbus docs`, `nimbus config`, `nimbus secrets`.

use crate::Target;
use crate::client::Api;
use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use nimbus_api::{ConfigList, Counter, Deleted, KeyPage, KvOp, Written};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;

fn split<'a>(what: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    s.split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| anyhow!("name the {what} as APP/NAME, e.g. demo/scores"))
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Subcommand)]
pub enum KvCommand {
    /// Print a value
    Get {
        /// APP/STORE
        store: String,
        key: String,
    },
    /// Set a value
    Set {
        /// APP/STORE
        store: String,
        key: String,
        value: String,
        /// Expire after this long (e.g. 30s, 10m)
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Delete a key
    Del {
        /// APP/STORE
        store: String,
        key: String,
    },
    /// List keys, in order
    Ls {
        /// APP/STORE
        store: String,
        /// Only keys starting with this
        #[arg(long, default_value = "")]
        prefix: String,
        /// Start after this key (the cursor printed by the previous page)
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Add to an integer value atomically; prints the new value
    Incr {
        /// APP/STORE
        store: String,
        key: String,
        #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
        by: i64,
    },
}

#[derive(Subcommand)]
pub enum DocsCommand {
    /// Print a document
    Get {
        /// APP/COLLECTION
        collection: String,
        id: String,
    },
    /// Create or replace a document (a JSON object)
    Put {
        /// APP/COLLECTION
        collection: String,
        id: String,
        json: String,
        /// Only if the stored version is this one (0: only if absent)
        #[arg(long)]
        if_version: Option<i64>,
    },
    /// Merge a JSON object into a document (RFC 7396)
    Patch {
        /// APP/COLLECTION
        collection: String,
        id: String,
        json: String,
        #[arg(long)]
        if_version: Option<i64>,
    },
    /// Delete a document
    Del {
        /// APP/COLLECTION
        collection: String,
        id: String,
    },
    /// Run a query: '{"where": [["score", ">", 10]], "order_by": [["score", "desc"]], "limit": 10}'
    Query {
        /// APP/COLLECTION
        collection: String,
        #[arg(default_value = "{}")]
        query: String,
        /// Also print the query plan
        #[arg(long)]
        explain: bool,
    },
    /// Write many documents from a JSON file: an array of objects with an "id"
    Import {
        /// APP/COLLECTION
        collection: String,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// List variables (and the names of secrets)
    Ls { app: String },
    /// Set a variable (new invocations see it at once; no new revision)
    Set {
        app: String,
        key: String,
        value: String,
        /// Only for this function
        #[arg(long)]
        function: Option<String>,
    },
    /// Remove a variable
    Unset {
        app: String,
        key: String,
        #[arg(long)]
        function: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// List the names of secrets (values are never shown)
    Ls { app: String },
    /// Set a secret; without VALUE it is read from standard input
    Set {
        app: String,
        key: String,
        value: Option<String>,
        /// Only for this function
        #[arg(long)]
        function: Option<String>,
    },
    /// Remove a secret
    Unset {
        app: String,
        key: String,
        #[arg(long)]
        function: Option<String>,
    },
}

pub async fn kv(target: &Target, cmd: KvCommand) -> Result<()> {
    let api = Api::new(target)?;
    let path = |store: &str, key: &str| -> Result<String> {
        let (app, s) = split("store", store)?;
        Ok(format!("/v1/apps/{app}/kv/{s}/{}", enc(key)))
    };
    match cmd {
        KvCommand::Get { store, key } => {
            let r = api
                .send(api.req(reqwest::Method::GET, &path(&store, &key)?))
                .await?;
            let bytes = r.bytes().await?;
            std::io::stdout().write_all(&bytes)?;
            if !bytes.ends_with(b"\n") {
                println!();
            }
        }
        KvCommand::Set {
            store,
            key,
            value,
            ttl,
        } => {
            let mut p = path(&store, &key)?;
            if let Some(t) = ttl {
                p.push_str(&format!("?ttl={}", enc(&t)));
            }
            api.send(api.req(reqwest::Method::PUT, &p).body(value))
                .await?;
        }
        KvCommand::Del { store, key } => {
            let done: Deleted = api
                .read(api.req(reqwest::Method::DELETE, &path(&store, &key)?))
                .await?;
            if !done.deleted {
                println!("(there was no such key)");
            }
        }
        KvCommand::Ls {
            store,
            prefix,
            after,
            limit,
        } => {
            let (app, s) = split("store", &store)?;
            let mut p = format!(
                "/v1/apps/{app}/kv/{s}?prefix={}&limit={limit}",
                enc(&prefix)
            );
            if let Some(a) = after {
                p.push_str(&format!("&after={}", enc(&a)));
            }
            let page: KeyPage = api.get(&p).await?;
            for k in page.keys {
                println!("{k}");
            }
            if let Some(c) = page.cursor {
                eprintln!("-- more: --after {c:?}");
            }
        }
        KvCommand::Incr { store, key, by } => {
            let counter: Counter = api
                .read(
                    api.req(reqwest::Method::POST, &path(&store, &key)?)
                        .json(&KvOp::Increment(by)),
                )
                .await?;
            println!("{}", counter.value);
        }
    }
    Ok(())
}

fn print_doc(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn docs(target: &Target, cmd: DocsCommand) -> Result<()> {
    let api = Api::new(target)?;
    let path = |coll: &str, id: &str| -> Result<String> {
        let (app, c) = split("collection", coll)?;
        Ok(format!("/v1/apps/{app}/docs/{c}/{}", enc(id)))
    };
    match cmd {
        DocsCommand::Get { collection, id } => {
            print_doc(&api.get_json(&path(&collection, &id)?).await?);
        }
        DocsCommand::Put {
            collection,
            id,
            json,
            if_version,
        } => {
            let mut rb = api
                .req(reqwest::Method::PUT, &path(&collection, &id)?)
                .body(json);
            if let Some(v) = if_version {
                rb = rb.header("if-match", v.to_string());
            }
            print_doc(&api.send(rb).await?.json().await?);
        }
        DocsCommand::Patch {
            collection,
            id,
            json,
            if_version,
        } => {
            let mut rb = api
                .req(reqwest::Method::PATCH, &path(&collection, &id)?)
                .body(json);
            if let Some(v) = if_version {
                rb = rb.header("if-match", v.to_string());
            }
            print_doc(&api.send(rb).await?.json().await?);
        }
        DocsCommand::Del { collection, id } => {
            let done: Deleted = api
                .read(api.req(reqwest::Method::DELETE, &path(&collection, &id)?))
                .await?;
            if !done.deleted {
                println!("(there was no such document)");
            }
        }
        DocsCommand::Query {
            collection,
            query,
            explain,
        } => {
            let (app, c) = split("collection", &collection)?;
            let p = format!(
                "/v1/apps/{app}/docs/{c}/_query{}",
                if explain { "?explain=true" } else { "" }
            );
            let page: nimbus_api::DocPage = api
                .send(api.req(reqwest::Method::POST, &p).body(query))
                .await?
                .json()
                .await?;
            for d in &page.documents {
                println!("{}", serde_json::to_string(d)?);
            }
            if let Some(c) = &page.cursor {
                eprintln!("-- more: add \"cursor\": {c:?} to the query");
            }
            if let Some(plan) = &page.plan {
                eprintln!("-- plan:\n{plan}");
            }
        }
        DocsCommand::Import { collection, file } => {
            let (app, c) = split("collection", &collection)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let docs: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let done: Written = api
                .read(
                    api.req(reqwest::Method::POST, &format!("/v1/apps/{app}/docs/{c}"))
                        .json(&docs),
                )
                .await?;
            println!("{} document(s) written", done.written);
        }
    }
    Ok(())
}

fn scope(function: &Option<String>) -> String {
    function
        .as_ref()
        .map(|f| format!("?function={}", enc(f)))
        .unwrap_or_default()
}

async fn list(api: &Api, app: &str, secrets: bool) -> Result<()> {
    let list: ConfigList = api.get(&format!("/v1/apps/{app}/config")).await?;
    for r in list.config.into_iter().filter(|r| r.secret == secrets) {
        let scope = r.function.map(|f| format!("{f}: ")).unwrap_or_default();
        match r.value {
            Some(val) => println!("{scope}{} = {val}", r.key),
            None => println!("{scope}{} (secret)", r.key),
        }
    }
    Ok(())
}

pub async fn config(target: &Target, cmd: ConfigCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        ConfigCommand::Ls { app } => list(&api, &app, false).await?,
        ConfigCommand::Set {
            app,
            key,
            value,
            function,
        } => {
            let p = format!("/v1/apps/{app}/config/{}{}", enc(&key), scope(&function));
            api.send(api.req(reqwest::Method::PUT, &p).body(value))
                .await?;
        }
        ConfigCommand::Unset { app, key, function } => {
            let p = format!("/v1/apps/{app}/config/{}{}", enc(&key), scope(&function));
            api.send(api.req(reqwest::Method::DELETE, &p)).await?;
        }
    }
    Ok(())
}

pub async fn secrets(target: &Target, cmd: SecretsCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        SecretsCommand::Ls { app } => list(&api, &app, true).await?,
        SecretsCommand::Set {
            app,
            key,
            value,
            function,
        } => {
            let value = match value {
                Some(v) => v,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            let p = format!("/v1/apps/{app}/secrets/{}{}", enc(&key), scope(&function));
            api.send(api.req(reqwest::Method::PUT, &p).body(value))
                .await?;
        }
        SecretsCommand::Unset { app, key, function } => {
            let p = format!("/v1/apps/{app}/secrets/{}{}", enc(&key), scope(&function));
            api.send(api.req(reqwest::Method::DELETE, &p)).await?;
        }
    }
    Ok(())
}
