//! Document collections: `[collections.NAME]` in the manifest, JSON
//! documents with versions, merge patches, watches, queries and bulk
//! writes.
//!
//! [`Collection::open`] is the capability's one policy: the collection
//! must be declared by the app; a function must be granted it
//! (`collections = [...]`), a client must pass its access rule, and under
//! the `owner` rule a user reaches only documents whose owner field
//! (`owner_field`, by default `owner`) names them ([`Collection::owner`]).
//! Every write passes [`Collection::check_write`] (the id's rules and the
//! node's document limit). The guest face (`guest.rs`:
//! `nimbus:data/documents`) and the REST face (`rest.rs`:
//! `/v1/apps/{app}/docs/{coll}`) both go through it; [`prepare`] readies a
//! revision's indexes; the SQL and the query language are
//! `nimbus_store`'s `docs/`.

pub mod guest;
mod guest3;
pub mod rest;

use crate::{Caller, Refusal};
use nimbus_core::AppSpec;
use nimbus_identity::IdentityError;
use nimbus_store::{Store, StoreError};
use serde_json::Value;

/// A collection of an app, opened by a caller it admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    name: String,
    /// Largest document a write may store.
    max_bytes: u64,
    /// Under the `owner` rule: the caller's subject and the owner field.
    owner: Option<(String, String)>,
}

impl Collection {
    /// Opens `coll` of `app` for `caller`, or says why not.
    pub fn open(
        app: &AppSpec,
        coll: &str,
        caller: Caller<'_>,
        node_max_bytes: u64,
    ) -> Result<Collection, Refusal> {
        let spec = app.collections.get(coll).ok_or_else(|| {
            Refusal::NotFound(format!(
                "app {:?} has no collection {coll:?}: declare it in nimbus.toml as [collections.{coll}]",
                app.name
            ))
        })?;
        let owner = match caller {
            Caller::Function(f) => {
                if !f.collections.iter().any(|n| n == coll) {
                    return Err(Refusal::NotGranted(format!(
                        "collection {coll:?} is not granted to this function: add it to its `collections` in nimbus.toml"
                    )));
                }
                None
            }
            Caller::Client { principal, write } => nimbus_identity::authorize(
                principal,
                &app.name,
                &format!("collection {coll:?}"),
                spec.access,
                write,
            )?
            .owner()
            .map(|subject| {
                (
                    subject.to_string(),
                    spec.owner_field.clone().unwrap_or_else(|| "owner".into()),
                )
            }),
        };
        Ok(Collection {
            name: coll.to_string(),
            max_bytes: node_max_bytes,
            owner,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Largest document a write may store.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Under the `owner` rule: the caller's subject and the owner field.
    pub fn owner(&self) -> Option<(&str, &str)> {
        self.owner.as_ref().map(|(s, f)| (s.as_str(), f.as_str()))
    }

    /// Whether a document `id` (if named) of `len` bytes may be written.
    pub fn check_write(&self, id: Option<&str>, len: usize) -> Result<(), Refusal> {
        let place = format_args!("collection {:?}", self.name);
        nimbus_core::data::check_doc_write(place, id, len, self.max_bytes)?;
        Ok(())
    }

    /// Under the owner rule, whether `body` (a stored document or a
    /// write's body) belongs to the caller.
    pub fn check_owner(&self, id: &str, body: &Value) -> Result<(), Refusal> {
        match &self.owner {
            Some((subject, field)) if !owns(body, field, subject) => Err(self.not_yours(id, field)),
            _ => Ok(()),
        }
    }

    fn not_yours(&self, id: &str, field: &str) -> Refusal {
        Refusal::Access(IdentityError::Forbidden(format!(
            "document {}/{id} belongs to another user (its {field:?} is not your user id)",
            self.name
        )))
    }
}

/// Whether `body`'s owner field names `subject`.
fn owns(body: &Value, field: &str, subject: &str) -> bool {
    field_value(body, field).and_then(Value::as_str) == Some(subject)
}

/// The value at a dotted field path.
fn field_value<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(body, |v, k| v.get(k))
}

/// Readies what a revision's collections need before it serves: their
/// indexes. Idempotent.
pub async fn prepare(store: &Store, app: &AppSpec) -> Result<(), StoreError> {
    for c in app.collections.values() {
        store.ensure_doc_indexes(&c.indexes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::FunctionSpec;
    use nimbus_core::policy::Access;

    fn app(access: Access) -> AppSpec {
        let mut app = AppSpec {
            name: "game".into(),
            ..Default::default()
        };
        app.collections.insert(
            "rooms".into(),
            nimbus_core::data::CollectionSpec {
                indexes: Vec::new(),
                access,
                owner_field: Some("meta.by".into()),
            },
        );
        app
    }

    #[test]
    fn a_function_opens_only_granted_collections() {
        let app = app(Access::None);
        let f = FunctionSpec {
            collections: vec!["rooms".into()],
            ..Default::default()
        };
        let c = Collection::open(&app, "rooms", Caller::Function(&f), 64).unwrap();
        assert_eq!(c.owner(), None);
        assert!(c.check_write(Some("r1"), 64).is_ok());
        assert!(matches!(
            c.check_write(Some("r1"), 65),
            Err(Refusal::TooLarge(_))
        ));
        assert!(matches!(
            Collection::open(
                &app,
                "rooms",
                Caller::Function(&FunctionSpec::default()),
                64
            ),
            Err(Refusal::NotGranted(_))
        ));
        assert!(matches!(
            Collection::open(&app, "halls", Caller::Function(&f), 64),
            Err(Refusal::NotFound(_))
        ));
    }

    #[test]
    fn the_owner_field_is_a_dotted_path() {
        let c = Collection {
            name: "rooms".into(),
            max_bytes: 64,
            owner: Some(("alice".into(), "meta.by".into())),
        };
        let mine = serde_json::json!({"meta": {"by": "alice"}});
        let theirs = serde_json::json!({"meta": {"by": "bob"}});
        assert!(c.check_owner("r1", &mine).is_ok());
        assert!(matches!(
            c.check_owner("r1", &theirs),
            Err(Refusal::Access(IdentityError::Forbidden(_)))
        ));
        assert!(c.check_owner("r1", &serde_json::json!({})).is_err());
    }
}
