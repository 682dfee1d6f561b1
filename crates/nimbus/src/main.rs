//! `nimbus`: run the platform (`nimbus up`) or drive one (every other
//! command talks to a server's control API, local or remote).

mod client;
mod data_cli;
mod events_cli;
mod identity_cli;
mod new;
mod realtime_cli;
mod replay_cli;
mod up;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Nimbus: a self-hosted serverless platform for WebAssembly functions.
#[derive(Parser)]
#[command(name = "nimbus", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the CLI finds a server.
#[derive(Args, Clone)]
pub struct Target {
    /// The server's control API URL [default: the one recorded in the data dir, else http://127.0.0.1:8081]
    #[arg(long, env = "NIMBUS_SERVER", global = true)]
    server: Option<String>,
    /// API key [default: the data dir's admin-token file, the bootstrap admin key]
    #[arg(long, env = "NIMBUS_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Data dir of a local server, where its URL and admin token are found
    #[arg(
        long,
        env = "NIMBUS_DATA_DIR",
        default_value = ".nimbus",
        global = true
    )]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Nimbus server
    Up(Box<nimbus_server::Config>),
    /// Bring a database's schema up to date (`nimbus up` also does at start)
    Migrate {
        /// A PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DATABASE)
        /// [default: the embedded SQLite database of the data dir]
        #[arg(long, env = "NIMBUS_DATABASE", hide_env_values = true)]
        database: Option<String>,
        /// Data dir of the embedded database
        #[arg(long, env = "NIMBUS_DATA_DIR", default_value = ".nimbus")]
        data_dir: PathBuf,
    },
    /// Write a new app (manifest, handler, build command) that `nimbus deploy` runs as it is
    New {
        /// The app's name (also its directory, its function and its route)
        name: String,
        /// The language of its handler
        #[arg(long, value_enum)]
        lang: new::Lang,
        /// The WASI version of its handler [default: 0.3 for Rust, 0.2 for JavaScript and Python]
        #[arg(long, value_enum)]
        wasi: Option<new::Wasi>,
        /// Where to create the app's directory
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build, upload and activate an app (a directory with nimbus.toml, or the file)
    Deploy {
        /// App directory or manifest path
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Skip the functions' build commands
        #[arg(long)]
        no_build: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Call a function directly (APP/FUNCTION), bypassing routes
    Invoke {
        /// APP/FUNCTION
        function: String,
        /// Request body
        #[arg(long, short = 'd', conflicts_with = "data_file")]
        data: Option<String>,
        /// Read the request body from a file
        #[arg(long)]
        data_file: Option<PathBuf>,
        /// HTTP method [default: POST with a body, else GET]
        #[arg(long, short = 'X')]
        method: Option<String>,
        /// Path (and query) the function sees
        #[arg(long, default_value = "/")]
        path: String,
        /// Extra request header, "Name: value" (repeatable)
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Invoke asynchronously: answered 202 with an event id once stored;
        /// the function runs later, with retries
        #[arg(long = "async")]
        asynchronous: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Send to queues, show their depth
    Queue {
        #[command(subcommand)]
        command: events_cli::QueueCommand,
        #[command(flatten)]
        target: Target,
    },
    /// List, message and close an app's WebSocket connections; publish to its channels
    Connections {
        #[command(subcommand)]
        command: realtime_cli::ConnectionsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Publish to topics
    Topic {
        #[command(subcommand)]
        command: events_cli::TopicCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Key-value stores: get, set, del, ls, incr
    Kv {
        #[command(subcommand)]
        command: data_cli::KvCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Document collections: get, put, patch, del, query, import
    Docs {
        #[command(subcommand)]
        command: data_cli::DocsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Configuration variables (wasi:config): ls, set, unset
    Config {
        #[command(subcommand)]
        command: data_cli::ConfigCommand,
        #[command(flatten)]
        target: Target,
    },
    /// API keys with scopes, and S3 keys: create, list, revoke
    Keys {
        #[command(subcommand)]
        command: identity_cli::KeysCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Users of an app's pool: list, create, show, delete, roles, rotate-keys
    Users {
        #[command(subcommand)]
        command: identity_cli::UsersCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Secrets (encrypted at rest, never shown): ls, set, unset
    Secrets {
        #[command(subcommand)]
        command: data_cli::SecretsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Dead-letter queues: list, show, redrive, purge
    Dlq {
        #[command(subcommand)]
        command: events_cli::DlqCommand,
        #[command(flatten)]
        target: Target,
    },
    /// List apps
    Apps {
        #[command(flatten)]
        target: Target,
    },
    /// List an app's functions and routes (active revision)
    Functions {
        /// App name
        app: String,
        #[command(flatten)]
        target: Target,
    },
    /// List an app's revisions
    Revisions {
        /// App name
        app: String,
        #[command(flatten)]
        target: Target,
    },
    /// Re-activate the previous revision (or --to N)
    Rollback {
        /// App name
        app: String,
        /// Revision to activate
        #[arg(long)]
        to: Option<i64>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete an app and all its revisions
    Delete {
        /// App name
        app: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show what functions wrote to stdout/stderr
    Logs {
        /// App name
        app: String,
        /// Only this function
        function: Option<String>,
        /// Keep printing new entries
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only this invocation
        #[arg(long)]
        invocation: Option<String>,
        /// Only entries newer than this (e.g. 10m, 2h)
        #[arg(long)]
        since: Option<humantime::Duration>,
        /// Only lines containing this text (case-insensitive)
        #[arg(long)]
        grep: Option<String>,
        /// One JSON object per line (time, app, function, invocation, stream, line)
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List recent invocations of an app (APP, APP/FUNCTION), events in a
    /// state (--state), or one invocation or event with its attempts (--id)
    Invocations {
        /// App name, or APP/FUNCTION
        app: String,
        /// Only this function
        function: Option<String>,
        /// How many
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Show this invocation or event (async, queue, topic, schedule) and its attempts
        #[arg(long, conflicts_with = "state")]
        id: Option<String>,
        /// List events in this state: queued, running, failed, succeeded, dead
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Run a failed invocation again, on the server (--revision) or on this
    /// machine against a locally built component (--local), and compare
    Replay {
        /// Invocation id (from `nimbus invocations` or a response's nimbus-invocation-id)
        id: String,
        /// Its app [default: looked up on the server]
        #[arg(long)]
        app: Option<String>,
        /// Revision to run against [default: the active one]
        #[arg(long)]
        revision: Option<i64>,
        /// A component built on this machine to run instead (in-process)
        #[arg(long)]
        local: Option<std::path::PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// A trace as a tree of invocations with timings (a trace id, or the id
    /// of any invocation in it)
    Trace {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Usage and a cost estimate: invocations, GB-seconds, bytes, cold starts
    Usage {
        /// Only this app
        #[arg(long)]
        app: Option<String>,
        /// How far back (hour granularity)
        #[arg(long, default_value = "30d")]
        since: String,
        /// Group by function, hour, day or app
        #[arg(long, default_value = "function")]
        by: String,
        /// Print the JSON the API returned
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// The control API's endpoints and what each needs (from the route
    /// table the server is built from; no server needed)
    Routes {
        /// As the Markdown table in docs/API.md
        #[arg(long)]
        markdown: bool,
    },
}

/// `nimbus routes`: the route table, aligned, or as Markdown.
fn print_routes(markdown: bool) {
    if markdown {
        print!("{}", nimbus_control::routes::markdown());
        return;
    }
    let rows: Vec<_> = nimbus_control::routes::endpoints()
        .into_iter()
        .map(|e| {
            let mut needs = e.need.describe();
            if e.client {
                needs.push_str("; app origins too");
            }
            (e.verb.as_str(), e.path, needs)
        })
        .collect();
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (verb, path, needs) in rows {
        println!("{verb:<6} {path:<width$}  {needs}");
    }
}

fn main() {
    // Library backtraces (std::backtrace::Backtrace::capture) would be taken
    // for every error wasmtime builds internally, even ones it discards when
    // an instance is dropped; that costs microseconds per request. Panics
    // still honour RUST_BACKTRACE. Set RUST_LIB_BACKTRACE=1 to debug.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(*args).await,
            Command::New {
                name,
                lang,
                wasi,
                dir,
            } => new::run(&dir, &name, lang, wasi),
            Command::Migrate { database, data_dir } => {
                up::migrate(database.as_deref(), &data_dir).await
            }
            Command::Deploy {
                path,
                no_build,
                target,
            } => client::deploy(&target, &path, !no_build).await,
            Command::Invoke {
                function,
                data,
                data_file,
                method,
                path,
                mut headers,
                asynchronous,
                target,
            } => {
                if asynchronous {
                    headers.push("Prefer: respond-async".into());
                }
                client::invoke(&target, &function, data, data_file, method, &path, &headers).await
            }
            Command::Queue { command, target } => events_cli::queue(&target, command).await,
            Command::Topic { command, target } => events_cli::topic(&target, command).await,
            Command::Connections { command, target } => {
                realtime_cli::connections(&target, command).await
            }
            Command::Dlq { command, target } => events_cli::dlq(&target, command).await,
            Command::Kv { command, target } => data_cli::kv(&target, command).await,
            Command::Docs { command, target } => data_cli::docs(&target, command).await,
            Command::Config { command, target } => data_cli::config(&target, command).await,
            Command::Secrets { command, target } => data_cli::secrets(&target, command).await,
            Command::Keys { command, target } => identity_cli::keys(&target, command).await,
            Command::Users { command, target } => identity_cli::users(&target, command).await,
            Command::Apps { target } => client::apps(&target).await,
            Command::Trace { id, target } => replay_cli::trace(&target, &id).await,
            Command::Replay {
                id,
                app,
                revision,
                local,
                target,
            } => replay_cli::replay(&target, &id, app, revision, local.as_deref()).await,
            Command::Usage {
                app,
                since,
                by,
                json,
                target,
            } => client::usage(&target, app.as_deref(), &since, &by, json).await,
            Command::Functions { app, target } => client::functions(&target, &app).await,
            Command::Revisions { app, target } => client::revisions(&target, &app).await,
            Command::Rollback { app, to, target } => client::rollback(&target, &app, to).await,
            Command::Delete { app, target } => client::delete(&target, &app).await,
            Command::Routes { markdown } => {
                print_routes(markdown);
                Ok(())
            }
            Command::Logs {
                app,
                function,
                follow,
                invocation,
                since,
                grep,
                json,
                target,
            } => {
                let filter = client::LogFilter {
                    function,
                    invocation,
                    since: since.map(Into::into),
                    grep,
                };
                client::logs(&target, &app, filter, follow, json).await
            }
            Command::Invocations {
                app,
                function,
                limit,
                id,
                state,
                target,
            } => {
                let (app, function) = match app.split_once('/') {
                    Some((a, f)) => (a.to_string(), Some(f.to_string())),
                    None => (app, function),
                };
                match (id, state) {
                    (Some(id), _) => events_cli::invocation(&target, &app, &id).await,
                    (None, Some(state)) => {
                        events_cli::events_in_state(
                            &target,
                            &app,
                            function.as_deref(),
                            &state,
                            limit,
                        )
                        .await
                    }
                    (None, None) => client::invocations(&target, &app, function, limit).await,
                }
            }
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
