//! `nimbus keys` (API keys and S3 keys) and `nimbus users` (app user pools).

use crate::Target;
use crate::client::{Api, format_time};
use anyhow::{Result, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key (its secret is printed once)
    Create {
        /// Name of an API key (unique among active keys)
        name: Option<String>,
        /// Limit the key to this app (default: every app)
        #[arg(long)]
        app: Option<String>,
        /// Scopes: admin, deploy, read-logs, invoke, data, users (repeatable)
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
        /// Create an S3 access key (SigV4 id and secret) for --app's buckets instead
        #[arg(long)]
        s3: bool,
    },
    /// List API keys and S3 keys (secrets are never shown)
    List,
    /// Revoke an API key, by name or id (or with --s3, an S3 key by its access key id)
    Revoke {
        /// API key name or id; with --s3, the access key id
        name: String,
        /// Revoke the S3 access key with this id instead
        #[arg(long)]
        s3: bool,
    },
}

pub async fn keys(target: &Target, cmd: KeysCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        KeysCommand::Create {
            s3: true,
            app,
            name,
            ..
        } => {
            let Some(app) = app else {
                bail!("an S3 key belongs to an app: pass --app APP");
            };
            if name.is_some() {
                bail!("S3 keys have no name: drop it, or drop --s3 for an API key");
            }
            let key: nimbus_api::S3KeyCreated = api
                .read(api.req(Method::POST, &format!("/v1/apps/{app}/keys/s3")))
                .await?;
            println!("access key id:     {}", key.access_key);
            println!("secret access key: {}", key.secret_key);
            eprintln!(
                "-- the secret is shown only now; use path-style addressing with the S3 endpoint"
            );
        }
        KeysCommand::Create {
            name, app, scopes, ..
        } => {
            let Some(name) = name else {
                bail!("name the key: `nimbus keys create NAME --scope deploy [--app APP]`");
            };
            if scopes.is_empty() {
                bail!(
                    "give the key at least one --scope: admin, deploy, read-logs, invoke, data, users"
                );
            }
            let k: nimbus_api::CreatedKey = api
                .send(api.req(Method::POST, "/v1/keys").json(&nimbus_api::NewKey {
                    name,
                    app,
                    scopes,
                }))
                .await?
                .json()
                .await?;
            println!("{}", k.secret);
            eprintln!(
                "-- key {:?} ({}) created; the secret above is shown only now: send it as `Authorization: Bearer SECRET` or set NIMBUS_TOKEN",
                k.name, k.id
            );
        }
        KeysCommand::List => {
            let v: nimbus_api::KeyList = api.get("/v1/keys").await?;
            println!(
                "{:<20} {:<18} {:<12} {:<28} {:<24} STATE",
                "NAME", "ID", "APP", "SCOPES", "CREATED"
            );
            for k in &v.keys {
                println!(
                    "{:<20} {:<18} {:<12} {:<28} {:<24} {}",
                    k.name,
                    k.id,
                    k.app.as_deref().unwrap_or("*"),
                    k.scopes,
                    format_time(k.created_at_us),
                    if k.revoked_at_us.is_none() {
                        "active"
                    } else {
                        "revoked"
                    }
                );
            }
            if !v.s3_keys.is_empty() {
                println!();
                println!("{:<24} {:<20} CREATED", "S3 ACCESS KEY ID", "APP");
                for k in &v.s3_keys {
                    println!(
                        "{:<24} {:<20} {}",
                        k.access_key,
                        k.app,
                        format_time(k.created_at_us),
                    );
                }
            }
        }
        KeysCommand::Revoke { name, s3: true } => {
            api.send(api.req(Method::DELETE, &format!("/v1/keys/s3/{name}")))
                .await?;
            println!("revoked S3 key {name}; requests signed with it are refused from now on");
        }
        KeysCommand::Revoke { name, .. } => {
            api.send(api.req(Method::DELETE, &format!("/v1/keys/{name}")))
                .await?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List an app's users
    List {
        app: String,
        /// Start after this email
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Create a user (the password is read from NIMBUS_USER_PASSWORD or standard input)
    Create {
        app: String,
        email: String,
        /// Roles (repeatable)
        #[arg(long = "role", value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Show a user
    Show { app: String, id: String },
    /// Delete a user and end their sessions
    Delete { app: String, id: String },
    /// Replace a user's roles
    Roles {
        app: String,
        id: String,
        roles: Vec<String>,
    },
    /// Start signing the app's tokens with a new key (old tokens stay valid until they expire)
    RotateKeys { app: String },
}

fn read_password() -> Result<String> {
    if let Ok(p) = std::env::var("NIMBUS_USER_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        bail!("no password: set NIMBUS_USER_PASSWORD or pipe it on standard input");
    }
    Ok(p)
}

pub async fn users(target: &Target, cmd: UsersCommand) -> Result<()> {
    let api = Api::new(target)?;
    match cmd {
        UsersCommand::List { app, after, limit } => {
            let mut path = format!("/v1/apps/{app}/users?limit={limit}");
            if let Some(a) = after {
                path.push_str(&format!("&after={}", crate::data_cli::enc(&a)));
            }
            let v: nimbus_api::UserList = api.get(&path).await?;
            println!("{:<38} {:<32} {:<20} CREATED", "ID", "EMAIL", "ROLES");
            for u in &v.users {
                println!(
                    "{:<38} {:<32} {:<20} {}",
                    u.id,
                    u.email,
                    u.roles.join(","),
                    format_time(u.created_at_us)
                );
            }
        }
        UsersCommand::Create { app, email, roles } => {
            let password = read_password()?;
            let u: nimbus_api::User = api
                .send(
                    api.req(Method::POST, &format!("/v1/apps/{app}/users"))
                        .json(&nimbus_api::NewUser {
                            email,
                            password,
                            roles,
                        }),
                )
                .await?
                .json()
                .await?;
            println!("{}", u.id);
        }
        UsersCommand::Show { app, id } => {
            let u: nimbus_api::User = api.get(&format!("/v1/apps/{app}/users/{id}")).await?;
            println!("{}", serde_json::to_string_pretty(&u)?);
        }
        UsersCommand::Delete { app, id } => {
            api.send(api.req(Method::DELETE, &format!("/v1/apps/{app}/users/{id}")))
                .await?;
            println!("deleted {id}");
        }
        UsersCommand::Roles { app, id, roles } => {
            api.send(
                api.req(Method::PUT, &format!("/v1/apps/{app}/users/{id}/roles"))
                    .json(&json!({ "roles": roles })),
            )
            .await?;
            println!("{id}: roles {}", roles.join(","));
        }
        UsersCommand::RotateKeys { app } => {
            let r: nimbus_api::KeyRotated = api
                .send(api.req(Method::POST, &format!("/v1/apps/{app}/auth/rotate-keys")))
                .await?
                .json()
                .await?;
            println!("{app} now signs with key {}", r.kid);
        }
    }
    Ok(())
}
