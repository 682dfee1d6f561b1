//! Key-value stores: `[kv.NAME]` in the manifest, raw values by key with
//! TTLs, counters, compare-and-swap and prefix listings.
//!
//! [`KvStore::open`] is the capability's one policy: the store must be
//! declared by the app; a function must be granted it (`kv = [...]`), a
//! client must pass its access rule, and under the `owner` rule a user
//! reaches only keys under `SUBJECT/`. Every write passes
//! [`KvStore::check_write`] (the key's rules and the value limit, the
//! smaller of the store's `max_value_bytes` and the node's). The guest
//! face (`guest.rs`: `wasi:keyvalue` and `nimbus:data/kv-extras`) and the
//! REST face (`rest.rs`: `/v1/apps/{app}/kv/{store}`) both go through it;
//! the SQL is `nimbus_store`'s `kv.rs`.

pub mod guest;
pub mod guest3;
pub mod rest;

use crate::{Caller, Refusal};
use nimbus_core::AppSpec;

/// A store of an app, opened by a caller it admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvStore {
    /// `APP/STORE`, in messages.
    place: String,
    /// Largest value a write may store.
    pub max_value_bytes: u64,
    /// Under the `owner` rule: the only key prefix the caller reaches.
    owner_prefix: Option<String>,
}

impl KvStore {
    /// Opens `store` of `app` for `caller`, or says why not.
    pub fn open(
        app: &AppSpec,
        store: &str,
        caller: Caller<'_>,
        node_max_value_bytes: u64,
    ) -> Result<KvStore, Refusal> {
        let spec = app.kv.get(store).ok_or_else(|| {
            Refusal::NotFound(format!(
                "app {:?} has no KV store {store:?}: declare it in nimbus.toml as [kv.{store}]",
                app.name
            ))
        })?;
        let owner_prefix = match caller {
            Caller::Function(f) => {
                if !f.kv.iter().any(|n| n == store) {
                    return Err(Refusal::NotGranted(format!(
                        "KV store {store:?} is not granted to this function: add it to its `kv` in nimbus.toml"
                    )));
                }
                None
            }
            Caller::Client { principal, write } => nimbus_identity::authorize(
                principal,
                &app.name,
                &format!("KV store {store:?}"),
                spec.access,
                write,
            )?
            .owner()
            .map(|subject| format!("{subject}/")),
        };
        Ok(KvStore {
            place: format!("{}/{store}", app.name),
            max_value_bytes: nimbus_core::data::value_limit(
                spec.max_value_bytes,
                node_max_value_bytes,
            ),
            owner_prefix,
        })
    }

    /// Whether the caller reaches `key` (the owner rule's prefix).
    pub fn reach(&self, key: &str) -> Result<(), Refusal> {
        match &self.owner_prefix {
            Some(prefix) if !key.starts_with(prefix.as_str()) => Err(self.not_yours()),
            _ => Ok(()),
        }
    }

    /// Whether the caller may write `len` bytes at `key`.
    pub fn check_write(&self, key: &str, len: usize) -> Result<(), Refusal> {
        self.reach(key)?;
        nimbus_core::data::check_kv_write(&self.place, key, len, self.max_value_bytes)?;
        Ok(())
    }

    /// The prefix a listing that asked for `asked` covers: under the owner
    /// rule it stays within the caller's keys.
    pub fn list_prefix(&self, asked: &str) -> Result<String, Refusal> {
        match &self.owner_prefix {
            None => Ok(asked.to_string()),
            Some(mine) if asked.starts_with(mine.as_str()) => Ok(asked.to_string()),
            Some(mine) if mine.starts_with(asked) => Ok(mine.clone()),
            Some(mine) => Err(Refusal::Access(nimbus_identity::IdentityError::Forbidden(
                format!(
                    "under the owner rule of {}, list keys under {mine:?}",
                    self.place
                ),
            ))),
        }
    }

    fn not_yours(&self) -> Refusal {
        Refusal::Access(nimbus_identity::IdentityError::Forbidden(format!(
            "under the owner rule of {}, a user reaches only keys under {:?}",
            self.place,
            self.owner_prefix.as_deref().unwrap_or_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::FunctionSpec;
    use nimbus_core::policy::Access;
    use nimbus_identity::{Claims, Principal};
    use std::sync::Arc;

    fn app(access: Access) -> AppSpec {
        let mut app = AppSpec {
            name: "shop".into(),
            ..Default::default()
        };
        app.kv.insert(
            "carts".into(),
            nimbus_core::data::KvSpec {
                access,
                max_value_bytes: Some(10),
            },
        );
        app
    }

    fn user(subject: &str) -> Principal {
        Principal::User(Arc::new(Claims {
            subject: subject.into(),
            all: Default::default(),
            json: "{}".into(),
            expires_at: u64::MAX,
            issued_at_us: 0,
        }))
    }

    #[test]
    fn a_function_opens_only_what_it_is_granted() {
        let app = app(Access::None);
        let granted = FunctionSpec {
            kv: vec!["carts".into()],
            ..Default::default()
        };
        let store = KvStore::open(&app, "carts", Caller::Function(&granted), 100).unwrap();
        assert_eq!(store.max_value_bytes, 10, "the smaller limit wins");
        assert!(store.check_write("any/key", 10).is_ok());
        assert!(matches!(
            store.check_write("k", 11),
            Err(Refusal::TooLarge(_))
        ));
        assert!(matches!(store.check_write("", 1), Err(Refusal::Invalid(_))));
        let other = FunctionSpec::default();
        assert!(matches!(
            KvStore::open(&app, "carts", Caller::Function(&other), 100),
            Err(Refusal::NotGranted(_))
        ));
        assert!(matches!(
            KvStore::open(&app, "orders", Caller::Function(&granted), 100),
            Err(Refusal::NotFound(_))
        ));
    }

    #[test]
    fn the_owner_rule_keeps_a_user_under_their_prefix() {
        let app = app(Access::Owner);
        let alice = user("alice");
        let caller = Caller::Client {
            principal: &alice,
            write: true,
        };
        let store = KvStore::open(&app, "carts", caller, 100).unwrap();
        assert!(store.check_write("alice/cart", 3).is_ok());
        assert!(matches!(
            store.check_write("bob/cart", 3),
            Err(Refusal::Access(_))
        ));
        assert!(store.reach("alicex/cart").is_err(), "the prefix ends at /");
        assert_eq!(store.list_prefix("").unwrap(), "alice/");
        assert_eq!(store.list_prefix("alice/c").unwrap(), "alice/c");
        assert!(store.list_prefix("bob/").is_err());
    }

    #[test]
    fn anonymous_clients_get_what_the_rule_allows() {
        let anon = Principal::Anonymous;
        let read = Caller::Client {
            principal: &anon,
            write: false,
        };
        let write = Caller::Client {
            principal: &anon,
            write: true,
        };
        assert!(KvStore::open(&app(Access::PublicRead), "carts", read, 100).is_ok());
        assert!(matches!(
            KvStore::open(&app(Access::PublicRead), "carts", write, 100),
            Err(Refusal::Access(
                nimbus_identity::IdentityError::Unauthorized(_)
            ))
        ));
        assert!(KvStore::open(&app(Access::None), "carts", read, 100).is_err());
    }
}
