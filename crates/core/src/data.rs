//! Data services in a manifest and a revision: key-value stores, document
//! collections with their indexes, and configuration variables.
//!
//! ```toml
//! [kv.sessions]
//! max_value_kb = 64               # optional, below the server's limit
//!
//! [collections.leaderboard]
//! indexes = [["-score"], ["player", "-finished_at"]]   # "-": descending
//!
//! [variables]                     # app-wide configuration (wasi:config)
//! greeting = "hello"
//!
//! [functions.api]
//! component = "api.wasm"
//! kv = ["sessions"]               # stores it may open
//! collections = ["leaderboard"]   # collections it may use
//! config = { greeting = "hi" }    # its own variables, over the app's
//! ```
//!
//! The write rule is here once for both faces: guests (`runtime` data
//! bindings) and REST clients (`control` data API) check keys, ids and
//! sizes with [`check_kv_write`] and [`check_doc_write`], under
//! [`value_limit`]. Field paths ([`check_field_path`]) are validated here
//! before the store writes them into SQL text.

use crate::policy::Access;
use serde::{Deserialize, Serialize};

/// A key-value store of an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvSpec {
    /// Largest value, in bytes (`None`: the server's limit).
    #[serde(default)]
    pub max_value_bytes: Option<u64>,
    /// Who may use it from clients.
    #[serde(default)]
    pub access: Access,
}

/// One field of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexField {
    /// Dotted path in the document (`score`, `player.name`).
    pub path: String,
    /// Descending order.
    pub desc: bool,
}

/// A document collection of an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// Indexes, each a list of fields.
    #[serde(default)]
    pub indexes: Vec<Vec<IndexField>>,
    /// Who may use it from clients.
    #[serde(default)]
    pub access: Access,
    /// For [`Access::Owner`]: the field holding the owner's subject.
    #[serde(default)]
    pub owner_field: Option<String>,
}

/// Longest key of a key-value store, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest document id, in bytes.
pub const MAX_DOC_ID_BYTES: usize = 256;
/// Longest field path.
pub const MAX_FIELD_PATH: usize = 128;

/// Checks a document field path: dot-separated names of letters, digits,
/// `_` and `-`.
pub fn check_field_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= MAX_FIELD_PATH
        && path.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "field {path:?} is not a field path: use dot-separated names of letters, digits, '_' and '-' (e.g. \"score\", \"player.name\")"
        ))
    }
}

/// Parses an index field as written in a manifest (`"-score"` is descending).
pub fn parse_index_field(s: &str) -> Result<IndexField, String> {
    let (path, desc) = match s.strip_prefix('-') {
        Some(p) => (p, true),
        None => (s, false),
    };
    check_field_path(path)?;
    Ok(IndexField {
        path: path.to_string(),
        desc,
    })
}

/// Checks a key-value key.
pub fn check_kv_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key of {} bytes is out of range: keys are 1-{MAX_KEY_BYTES} bytes",
            key.len()
        ));
    }
    Ok(())
}

/// Checks a document id.
pub fn check_doc_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_DOC_ID_BYTES || id.contains('/') || id.starts_with('_') {
        return Err(format!(
            "document id {id:?} is invalid: ids are 1-{MAX_DOC_ID_BYTES} bytes, without '/', not starting with '_'"
        ));
    }
    Ok(())
}

/// Why a KV value or a document is refused before it reaches the store:
/// one rule for guests (`nimbus:data`, `wasi:keyvalue`) and clients (REST),
/// so the two faces cannot drift.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The key or document id breaks its rules.
    #[error("{0}")]
    Invalid(String),
    /// The value or document is larger than its store allows.
    #[error("the {what} is {len} bytes, over the limit of {limit} bytes of {place}")]
    TooLarge {
        what: &'static str,
        len: u64,
        limit: u64,
        place: String,
    },
}

/// The largest value a store takes: its own limit (`max_value_kb`), at
/// most the server's (`--max-value-kb`).
pub fn value_limit(own: Option<u64>, server: u64) -> u64 {
    own.map_or(server, |o| o.min(server))
}

/// Checks a KV write of `len` bytes under `key` in `place` (a store's name
/// as the caller knows it, formatted only if the write is refused), with
/// the store's [`value_limit`].
pub fn check_kv_write(
    place: impl std::fmt::Display,
    key: &str,
    len: usize,
    limit: u64,
) -> Result<(), WriteError> {
    check_kv_key(key).map_err(WriteError::Invalid)?;
    check_size("value", place, len, limit)
}

/// Checks a document write: its id (if the caller names one) and its JSON
/// text's length, under the server's limit.
pub fn check_doc_write(
    place: impl std::fmt::Display,
    id: Option<&str>,
    len: usize,
    limit: u64,
) -> Result<(), WriteError> {
    if let Some(id) = id {
        check_doc_id(id).map_err(WriteError::Invalid)?;
    }
    check_size("document", place, len, limit)
}

fn check_size(
    what: &'static str,
    place: impl std::fmt::Display,
    len: usize,
    limit: u64,
) -> Result<(), WriteError> {
    let len = len as u64;
    if len > limit {
        return Err(WriteError::TooLarge {
            what,
            len,
            limit,
            place: place.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_write_rule_for_both_faces() {
        use super::*;
        assert_eq!(value_limit(None, 1024), 1024);
        assert_eq!(value_limit(Some(10), 1024), 10);
        assert_eq!(
            value_limit(Some(4096), 1024),
            1024,
            "the server's caps a store's"
        );
        assert!(check_kv_write("store \"s\"", "k", 10, 10).is_ok());
        let e = check_kv_write("store \"s\"", "k", 11, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the value is 11 bytes, over the limit of 10 bytes of store \"s\""
        );
        assert!(matches!(
            check_kv_write("s", "", 1, 10),
            Err(WriteError::Invalid(_))
        ));
        assert!(matches!(
            check_doc_write("c", Some("_x"), 1, 10),
            Err(WriteError::Invalid(_))
        ));
        assert!(check_doc_write("c", None, 10, 10).is_ok());
        assert!(matches!(
            check_doc_write("c", Some("d"), 11, 10),
            Err(WriteError::TooLarge {
                len: 11,
                limit: 10,
                ..
            })
        ));
    }

    use super::*;

    #[test]
    fn paths_and_fields() {
        assert!(check_field_path("score").is_ok());
        assert!(check_field_path("player.name").is_ok());
        assert!(check_field_path("a..b").is_err());
        assert!(check_field_path("x'); DROP").is_err());
        let f = parse_index_field("-score").unwrap();
        assert!(f.desc && f.path == "score");
        assert!(check_kv_key(&"k".repeat(257)).is_err());
        assert!(check_doc_id("a/b").is_err());
    }
}
