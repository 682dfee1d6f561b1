//! The data API's bodies: key-value answers and operations, documents,
//! their writes and query pages, configuration, S3 keys. (Values and
//! document bodies themselves are the app's: raw bytes and JSON.)

use serde::{Deserialize, Serialize};

/// A page of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPage {
    /// Keys, in order.
    pub keys: Vec<String>,
    /// The last key, when more follow (pass it as `after`).
    pub cursor: Option<String>,
}

/// The answer to a `DELETE` of a key or a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Whether there was one to delete.
    pub deleted: bool,
}

/// `POST /v1/apps/{app}/kv/{store}/{*key}`: one operation on a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvOp {
    /// Adds to the key's integer value (0 if absent); answered [`Counter`].
    Increment(i64),
    /// Sets the value if it is `expected` (`None`: if the key is absent);
    /// answered [`Swapped`], or 409 if it is not.
    CompareAndSwap {
        expected: Option<String>,
        value: String,
    },
}

/// The answer to [`KvOp::Increment`]: the new value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub value: i64,
}

/// The answer to a [`KvOp::CompareAndSwap`] that swapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swapped {
    pub swapped: bool,
}

/// The answer to a bulk document write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub written: u64,
}

/// `GET /v1/apps/{app}/config`: variables, and secrets by name only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigList {
    pub app: String,
    pub config: Vec<ConfigEntry>,
}

/// One variable or secret of [`ConfigList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// `None`: app-wide; else the function it belongs to.
    pub function: Option<String>,
    pub key: String,
    /// `None` for a secret (its value is never returned).
    pub value: Option<String>,
    pub secret: bool,
    pub updated_at_us: i64,
}

/// The answer to setting or deleting a variable or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChanged {
    pub key: String,
    /// Whether anything changed (functions see the change at once).
    pub changed: bool,
}

/// `POST /v1/apps/{app}/keys/s3`: a new S3 access key, its secret shown
/// this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3KeyCreated {
    pub app: String,
    pub access_key: String,
    pub secret_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_operations_keep_their_wire_form() {
        let inc: KvOp = serde_json::from_str(r#"{"increment": 5}"#).unwrap();
        assert_eq!(inc, KvOp::Increment(5));
        let cas: KvOp =
            serde_json::from_str(r#"{"compare_and_swap": {"expected": null, "value": "v"}}"#)
                .unwrap();
        assert_eq!(
            cas,
            KvOp::CompareAndSwap {
                expected: None,
                value: "v".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&KvOp::Increment(-1)).unwrap(),
            r#"{"increment":-1}"#
        );
        // Both, or neither, is not an operation.
        assert!(serde_json::from_str::<KvOp>(r#"{}"#).is_err());
        assert!(
            serde_json::from_str::<KvOp>(
                r#"{"increment": 1, "compare_and_swap": {"expected": null, "value": "v"}}"#
            )
            .is_err()
        );
    }
}

/// A stored document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    /// The JSON object, as stored (passed on without being parsed: a page
    /// of documents costs the host their text, not a tree of values).
    pub body: Box<serde_json::value::RawValue>,
    /// 1 when created, +1 on every write.
    pub version: i64,
    /// µs since the epoch.
    pub created_at_us: i64,
    /// µs since the epoch.
    pub updated_at_us: i64,
}

impl Document {
    /// The body as a JSON value (parsed).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.body.get()).unwrap_or(serde_json::Value::Null)
    }

    /// Bytes of the body's text.
    pub fn size(&self) -> usize {
        self.body.get().len()
    }
}

/// A page of a document query's results (`POST .../docs/{coll}/_query`,
/// and `nimbus:data/documents.query` as JSON text).
#[derive(Debug, Serialize, Deserialize)]
pub struct DocPage {
    /// The documents, in order.
    pub documents: Vec<Document>,
    /// Where the next page starts, if there is one.
    pub cursor: Option<String>,
    /// The page ended before its `limit` because its documents reached
    /// the page's byte limit (the cursor goes on from there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended_early: bool,
    /// With `?explain=true`: how the database runs the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}
