//! API keys: named secrets with scopes (`admin`, `deploy`, `read-logs`,
//! `invoke`, `data`, `users`), limited to one app or platform-wide. Stored
//! as SHA-256 hashes and held in memory by hash (an `ArcSwap`, reloaded
//! after every change and when the cluster generation moves) for the
//! request path. The data dir's `admin-token` is bootstrapped as the first
//! `admin` key.

use crate::{IdentityError, Result, hash_secret, random_secret};
use arc_swap::ArcSwap;
use nimbus_store::{ApiKeyRow, Store};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// What a key may do. `admin` includes every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Everything, including managing keys.
    Admin,
    /// Deploy, roll back and delete apps; upload components; config,
    /// secrets; dead-letter redrive and purge.
    Deploy,
    /// Read apps, functions, revisions, invocations, events, queues and logs.
    ReadLogs,
    /// Call functions: direct invoke, queue sends, topic publishes, and
    /// routes whose policy is `auth = "api_key"`.
    Invoke,
    /// KV and documents over REST; S3 access keys.
    Data,
    /// Manage users of app pools and rotate their signing keys.
    Users,
}

impl Scope {
    /// Every scope, for messages.
    pub const ALL: [Scope; 6] = [
        Scope::Admin,
        Scope::Deploy,
        Scope::ReadLogs,
        Scope::Invoke,
        Scope::Data,
        Scope::Users,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Deploy => "deploy",
            Scope::ReadLogs => "read-logs",
            Scope::Invoke => "invoke",
            Scope::Data => "data",
            Scope::Users => "users",
        }
    }

    /// Parses a scope name.
    pub fn parse(s: &str) -> Result<Scope> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                IdentityError::Invalid(format!(
                    "unknown scope {s:?}: use {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                ))
            })
    }
}

/// An active key, as the request path sees it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Public id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The app it is limited to; `None`: every app.
    pub app: Option<String>,
    /// Scopes.
    pub scopes: Vec<Scope>,
}

impl KeyInfo {
    /// Whether it has `scope` (or `admin`).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// Whether it may act on `app` (`None`: the whole platform) with `scope`.
    pub fn allows(&self, app: Option<&str>, scope: Scope) -> bool {
        let app_ok = match (&self.app, app) {
            (None, _) => true,
            (Some(mine), Some(app)) => mine == app,
            (Some(_), None) => false,
        };
        app_ok && self.has(scope)
    }
}

/// A key just created: the only time its secret is known.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The secret to send as `Authorization: Bearer ...`.
    pub secret: String,
}

/// The API keys, kept in memory (by hash) and in the store.
#[derive(Clone)]
pub struct ApiKeys {
    store: Store,
    active: Arc<ArcSwap<HashMap<String, Arc<KeyInfo>>>>,
    /// One reload at a time: a slow one that read the store before a new
    /// key was written must not install its older map after a later one.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

fn info_of(row: &ApiKeyRow) -> KeyInfo {
    KeyInfo {
        id: row.id.clone(),
        name: row.name.clone(),
        app: row.app.clone(),
        scopes: row
            .scopes
            .split_whitespace()
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
    }
}

impl ApiKeys {
    /// Loads the active keys.
    pub async fn load(store: Store) -> Result<ApiKeys> {
        let keys = ApiKeys {
            store,
            active: Arc::default(),
            reloading: Arc::default(),
        };
        keys.reload().await?;
        Ok(keys)
    }

    /// Reloads the active keys from the store.
    pub async fn reload(&self) -> Result<()> {
        let _one = self.reloading.lock().await;
        let map = self
            .store
            .api_keys()
            .await?
            .into_iter()
            .filter(|r| r.revoked_at_us.is_none())
            .map(|r| (r.hash.clone(), Arc::new(info_of(&r))))
            .collect();
        self.active.store(Arc::new(map));
        Ok(())
    }

    /// The active key whose secret this is.
    pub fn verify(&self, secret: &str) -> Option<Arc<KeyInfo>> {
        if secret.is_empty() {
            return None;
        }
        self.active.load().get(&hash_secret(secret)).cloned()
    }

    /// Makes `secret` (the data dir's admin token) a platform-wide `admin`
    /// key named `admin`, unless it already is one.
    pub async fn bootstrap(&self, secret: &str) -> Result<()> {
        if self.verify(secret).is_some() {
            return Ok(());
        }
        let hash = hash_secret(secret);
        if self.store.api_keys().await?.iter().any(|k| k.hash == hash) {
            return Err(IdentityError::Conflict(
                "the bootstrap admin key (DATA_DIR/admin-token) was revoked: use another admin key, or delete that file to have a new admin key made at the next start".into(),
            ));
        }
        let mut name = "admin".to_string();
        let mut n = 1;
        while self.active.load().values().any(|k| k.name == name) {
            n += 1;
            name = format!("admin-{n}");
        }
        self.insert(&name, None, &[Scope::Admin], secret).await?;
        Ok(())
    }

    async fn insert(
        &self,
        name: &str,
        app: Option<&str>,
        scopes: &[Scope],
        secret: &str,
    ) -> Result<KeyInfo> {
        let row = ApiKeyRow {
            id: format!("key_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
            name: name.to_string(),
            hash: hash_secret(secret),
            app: app.map(str::to_string),
            scopes: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            created_at_us: nimbus_store::now_us(),
            revoked_at_us: None,
        };
        if !self.store.insert_api_key(&row).await? {
            return Err(IdentityError::Conflict(format!(
                "an active key is already named {name:?}: pick another name or revoke it first"
            )));
        }
        self.reload().await?;
        Ok(info_of(&row))
    }

    /// Creates a key. `by` (the caller's key) must be allowed to grant it:
    /// an app-limited caller creates keys of its own app only.
    pub async fn create(
        &self,
        by: &KeyInfo,
        name: &str,
        app: Option<&str>,
        scopes: &[Scope],
    ) -> Result<CreatedKey> {
        nimbus_core::names::check_name("key", name).map_err(IdentityError::Invalid)?;
        if scopes.is_empty() {
            return Err(IdentityError::Invalid(format!(
                "a key needs at least one scope: {}",
                Scope::ALL.map(Scope::as_str).join(", ")
            )));
        }
        if !by.allows(app, Scope::Admin) {
            return Err(IdentityError::Forbidden(match app {
                Some(a) => format!("this key cannot create keys for app {a:?}"),
                None => "only a platform-wide admin key can create platform-wide keys: pass --app"
                    .into(),
            }));
        }
        let secret = random_secret("nimbus_");
        let info = self.insert(name, app, scopes, &secret).await?;
        Ok(CreatedKey { info, secret })
    }

    /// Every key `by` can see (its app's, or all for platform-wide keys).
    pub async fn list(&self, by: &KeyInfo) -> Result<Vec<ApiKeyRow>> {
        Ok(self
            .store
            .api_keys()
            .await?
            .into_iter()
            .filter(|r| by.app.is_none() || r.app == by.app)
            .collect())
    }

    /// Revokes a key by name or id, if `by` may manage it.
    pub async fn revoke(&self, by: &KeyInfo, name_or_id: &str) -> Result<()> {
        let target = self
            .active
            .load()
            .values()
            .find(|k| k.name == name_or_id || k.id == name_or_id)
            .cloned()
            .ok_or_else(|| {
                IdentityError::NotFound(format!(
                    "no active key {name_or_id:?}: see `nimbus keys list`"
                ))
            })?;
        if !by.allows(target.app.as_deref(), Scope::Admin) {
            return Err(IdentityError::Forbidden(format!(
                "this key cannot revoke key {name_or_id:?}"
            )));
        }
        self.store.revoke_api_key(&target.id).await?;
        self.reload().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scopes_apps_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let keys = ApiKeys::load(store.clone()).await.unwrap();
        keys.bootstrap("nimbus_root").await.unwrap();
        keys.bootstrap("nimbus_root").await.unwrap();
        let root = keys.verify("nimbus_root").unwrap();
        assert!(root.allows(None, Scope::Deploy));
        let a = keys
            .create(&root, "a-admin", Some("a"), &[Scope::Admin])
            .await
            .unwrap();
        let a_info = keys.verify(&a.secret).unwrap();
        assert!(a_info.allows(Some("a"), Scope::Data));
        assert!(!a_info.allows(Some("b"), Scope::Data));
        assert!(!a_info.allows(None, Scope::ReadLogs));
        let err = keys
            .create(&a_info, "b-deploy", Some("b"), &[Scope::Deploy])
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::Forbidden(_)));
        let d = keys
            .create(&a_info, "a-deploy", Some("a"), &[Scope::Deploy])
            .await
            .unwrap();
        let d_info = keys.verify(&d.secret).unwrap();
        assert!(d_info.allows(Some("a"), Scope::Deploy));
        assert!(!d_info.allows(Some("a"), Scope::Users));
        assert!(matches!(
            keys.create(&root, "a-deploy", None, &[Scope::Deploy]).await,
            Err(IdentityError::Conflict(_))
        ));
        assert_eq!(keys.list(&a_info).await.unwrap().len(), 2);
        keys.revoke(&a_info, "a-deploy").await.unwrap();
        keys.revoke(&root, "admin").await.unwrap();
        let e = keys.bootstrap("nimbus_root").await.unwrap_err().to_string();
        assert!(e.contains("revoked"), "{e}");
        assert!(keys.verify(&d.secret).is_none());
        assert!(keys.verify("").is_none());
        // Survives a restart.
        let again = ApiKeys::load(store).await.unwrap();
        assert!(again.verify(&a.secret).is_some());
        assert!(again.verify(&d.secret).is_none());
        assert!(Scope::parse("root").is_err());
    }
}
