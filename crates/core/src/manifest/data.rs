//! The `[kv.NAME]` and `[collections.NAME]` tables, `[variables]`, and the
//! stores and collections each function is granted.

use super::{Manifest, ManifestError, line_of};
use crate::data::{CollectionSpec, KvSpec, parse_index_field};
use crate::names::check_name;
use crate::policy::Access;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;

/// A `[kv.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvManifest {
    /// Largest value, in KiB.
    #[serde(default)]
    pub max_value_kb: Option<u64>,
    /// Client access rule (see [`Access`]).
    #[serde(default)]
    pub access: Option<String>,
}

/// A `[collections.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionManifest {
    /// Indexes: lists of field paths, `-` first for descending.
    #[serde(default)]
    pub indexes: Vec<Vec<String>>,
    /// Client access rule (see [`Access`]).
    #[serde(default)]
    pub access: Option<String>,
    /// For `access = "owner"`: the field holding the owner's subject
    /// (default `owner`).
    #[serde(default)]
    pub owner_field: Option<String>,
}

/// KV stores and collections of a manifest, resolved.
pub(super) type DataParts = (BTreeMap<String, KvSpec>, BTreeMap<String, CollectionSpec>);

impl Manifest {
    /// Checks and resolves KV stores, collections and grants.
    pub(super) fn data_parts(&self, src: &str) -> Result<DataParts, ManifestError> {
        let at = |span: Range<usize>, message: String| ManifestError {
            line: Some(line_of(src, span)),
            message,
        };
        let mut kv = BTreeMap::new();
        for (name, k) in &self.kv {
            check_name("kv store", name).map_err(|e| at(k.span(), e))?;
            let max_value_bytes = match k.get_ref().max_value_kb {
                Some(0) => {
                    return Err(at(
                        k.span(),
                        format!("kv store {name:?}: max_value_kb must be at least 1"),
                    ));
                }
                Some(kb) => Some(kb.saturating_mul(1024)),
                None => None,
            };
            let access = match &k.get_ref().access {
                Some(a) => {
                    Access::parse(a).map_err(|e| at(k.span(), format!("kv store {name:?}: {e}")))?
                }
                None => Access::None,
            };
            kv.insert(
                name.clone(),
                KvSpec {
                    max_value_bytes,
                    access,
                },
            );
        }
        let mut collections = BTreeMap::new();
        for (name, c) in &self.collections {
            let err = |m: String| at(c.span(), format!("collection {name:?}: {m}"));
            check_name("collection", name).map_err(|e| at(c.span(), e))?;
            let mut indexes = Vec::new();
            for fields in &c.get_ref().indexes {
                if fields.is_empty() || fields.len() > 8 {
                    return Err(err("an index has 1 to 8 fields".into()));
                }
                let parsed = fields
                    .iter()
                    .map(|f| parse_index_field(f))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                indexes.push(parsed);
            }
            let access = match &c.get_ref().access {
                Some(a) => Access::parse(a).map_err(err)?,
                None => Access::None,
            };
            let owner_field = match (&c.get_ref().owner_field, access) {
                (Some(f), Access::Owner | Access::OwnerRead) => {
                    crate::data::check_field_path(f).map_err(err)?;
                    Some(f.clone())
                }
                (Some(_), _) => {
                    return Err(err(
                        "owner_field needs access = \"owner\" or \"owner-read\"".into(),
                    ));
                }
                (None, Access::Owner | Access::OwnerRead) => Some("owner".to_string()),
                (None, _) => None,
            };
            collections.insert(
                name.clone(),
                CollectionSpec {
                    indexes,
                    access,
                    owner_field,
                },
            );
        }
        for key in self.variables.keys() {
            check_config_key(key).map_err(|e| ManifestError {
                line: None,
                message: format!("[variables]: {e}"),
            })?;
        }
        for (fname, f) in &self.functions {
            let span = f.span();
            let f = f.get_ref();
            let err = |m: String| at(span.clone(), format!("function {fname:?}: {m}"));
            for s in &f.kv {
                if !kv.contains_key(s) {
                    return Err(err(format!(
                        "kv store {s:?} is not declared: add a [kv.{s}] table"
                    )));
                }
            }
            for c in &f.collections {
                if !collections.contains_key(c) {
                    return Err(err(format!(
                        "collection {c:?} is not declared: add a [collections.{c}] table"
                    )));
                }
            }
            for key in f.config.keys() {
                check_config_key(key).map_err(|e| err(format!("config: {e}")))?;
            }
        }
        Ok((kv, collections))
    }
}

/// Checks a configuration variable or secret name: 1-128 characters among
/// letters, digits, `_`, `-` and `.`.
pub fn check_config_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "variable name {key:?} is invalid: use 1-128 letters, digits, '_', '-' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[app]\nname = \"demo\"\n[functions.f]\ncomponent = \"f.wasm\"\n";

    fn err(extra: &str) -> ManifestError {
        Manifest::parse(&format!("{BASE}{extra}")).unwrap_err()
    }

    #[test]
    fn stores_collections_and_grants_resolve() {
        let src = r#"[app]
name = "demo"
[functions.f]
component = "f.wasm"
kv = ["cache"]
collections = ["games"]
config = { "db.url" = "x" }
[variables]
mode = "dev"
[kv.cache]
max_value_kb = 2
[collections.games]
access = "owner"
indexes = [["score", "-at"]]
"#;
        let m = Manifest::parse(src).unwrap();
        let spec = m.to_spec(&[("f".into(), "h".into())].into()).unwrap();
        assert_eq!(spec.kv["cache"].max_value_bytes, Some(2048));
        assert_eq!(spec.kv["cache"].access, Access::None);
        let games = &spec.collections["games"];
        assert_eq!(games.owner_field.as_deref(), Some("owner"), "the default");
        assert_eq!(games.indexes.len(), 1);
        assert_eq!(spec.functions["f"].kv, ["cache"]);
        assert_eq!(spec.variables["mode"], "dev");
    }

    #[test]
    fn data_errors_say_what_to_fix() {
        let e = err("[kv.cache]\nmax_value_kb = 0\n");
        assert!(e.message.contains("max_value_kb must be at least 1"), "{e}");
        assert_eq!(e.line, Some(5));
        let e = err("[collections.c]\nowner_field = \"by\"\n");
        assert!(e.message.contains("owner_field needs access"), "{e}");
        let e = err("[collections.c]\nindexes = [[]]\n");
        assert!(e.message.contains("1 to 8 fields"), "{e}");
        let e = err("[variables]\n\"a b\" = \"x\"\n");
        assert!(e.message.starts_with("[variables]: "), "{e}");
        let e = Manifest::parse(
            "[app]\nname = \"demo\"\n[functions.f]\ncomponent = \"f.wasm\"\nkv = [\"nope\"]\n",
        )
        .unwrap_err();
        assert!(e.message.contains("add a [kv.nope] table"), "{e}");
        let e = Manifest::parse(
            "[app]\nname = \"demo\"\n[functions.f]\ncomponent = \"f.wasm\"\ncollections = [\"nope\"]\n",
        )
        .unwrap_err();
        assert!(e.message.contains("add a [collections.nope] table"), "{e}");
        assert!(check_config_key(&"k".repeat(128)).is_ok());
        assert!(check_config_key(&"k".repeat(129)).is_err());
        assert!(check_config_key("").is_err());
    }
}
