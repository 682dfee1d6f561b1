//! JSON document collections on the database's JSON support: SQLite's
//! JSON functions, PostgreSQL's JSONB.
//!
//! A document is a JSON object with an id, a version (1 on creation, +1 on
//! every write) and created/updated times. Writes are single statements:
//! optimistic concurrency is a `WHERE version = $n`, a merge patch is
//! `json_patch` (RFC 7396; on PostgreSQL the `nimbus_json_patch` function
//! of the schema). Queries filter and order on `json_extract(body,
//! '$.path')` (PostgreSQL: `body #> '{path}'` compared as JSONB); the
//! manifest's indexes are expression indexes on exactly those expressions,
//! so the planner uses them.
//! Field paths are validated (`nimbus_core::data::check_field_path`) before
//! they are written into SQL text; values are always bound. A JSON null
//! reads as SQL NULL on both backends.
//!
//! Query pages stop at [`MAX_PAGE_BYTES`] and pass documents on as their
//! stored text (`RawValue`), never parsed. Every document write through the
//! store wakes that document's watchers (`changes.rs`).
//!
//! Two modules: this one holds documents and their writes (get, put with
//! a version check, merge patch, bulk put, delete, watch); `query` the
//! query language, its SQL, the pages and the indexes that serve them.

mod query;

pub use query::{DocPage, DocQuery, MAX_OFFSET, MAX_PAGE, MAX_PAGE_BYTES, Op};

use crate::{Backend, Result, Store, StoreError, now_us};
use serde_json::Value;
use sqlx::Row;
use std::time::Duration;

/// Why a document operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// The expected version did not match.
    #[error("{0}")]
    Conflict(String),
    /// The document or query is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DocError {
    fn from(e: sqlx::Error) -> Self {
        DocError::Store(e.into())
    }
}

/// A stored document (the type is the API's).
pub use nimbus_api::Document;

fn document(row: &sqlx::any::AnyRow) -> Result<Document, DocError> {
    let body: String = row.try_get("body")?;
    Ok(Document {
        id: row.try_get("id")?,
        body: serde_json::value::RawValue::from_string(body)
            .map_err(|e| StoreError::Corrupt(format!("document body: {e}")))?,
        version: row.try_get("version")?,
        created_at_us: row.try_get("created_at")?,
        updated_at_us: row.try_get("updated_at")?,
    })
}

fn object(json: &str) -> Result<String, DocError> {
    match serde_json::from_str::<Value>(json) {
        Ok(v @ Value::Object(_)) => Ok(v.to_string()),
        Ok(_) => Err(DocError::Invalid("a document must be a JSON object".into())),
        Err(e) => Err(DocError::Invalid(format!(
            "the document is not valid JSON: {e}"
        ))),
    }
}

impl Store {
    /// The columns a document is read from (PostgreSQL's JSONB as text).
    fn doc_columns(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "id, body, version, created_at, updated_at",
            Backend::Postgres => "id, CAST(body AS TEXT) AS body, version, created_at, updated_at",
        }
    }

    /// A bound JSON text parameter as a document value.
    fn json_param(&self, n: u32) -> String {
        match self.backend {
            Backend::Sqlite => format!("${n}"),
            Backend::Postgres => format!("CAST(${n} AS JSONB)"),
        }
    }

    /// `target` merge-patched (RFC 7396) by parameter `n`.
    fn patched(&self, target: &str, n: u32) -> String {
        match self.backend {
            Backend::Sqlite => format!("json_patch({target}, ${n})"),
            Backend::Postgres => format!("nimbus_json_patch({target}, CAST(${n} AS JSONB))"),
        }
    }

    /// The size in bytes of a JSON value's text.
    fn json_len(&self, e: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("length({e})"),
            Backend::Postgres => format!("octet_length(CAST({e} AS TEXT))"),
        }
    }
}

impl Store {
    /// A document.
    pub async fn doc_get(
        &self,
        app: &str,
        coll: &str,
        id: &str,
    ) -> Result<Option<Document>, DocError> {
        let cols = self.doc_columns();
        let row = sqlx::query(&format!(
            "SELECT {cols} FROM docs WHERE app = $1 AND collection = $2 AND id = $3"
        ))
        .bind(app)
        .bind(coll)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(document).transpose()
    }

    /// Creates or replaces a document. `expected`: `Some(0)` only if absent,
    /// `Some(v)` only if at version `v`.
    pub async fn doc_put(
        &self,
        app: &str,
        coll: &str,
        id: &str,
        json: &str,
        expected: Option<i64>,
    ) -> Result<Document, DocError> {
        let body = object(json)?;
        let now = now_us();
        let (cols, v4) = (self.doc_columns(), self.json_param(4));
        let row = match expected {
            None => sqlx::query(&format!(
                "INSERT INTO docs (app, collection, id, body, version, created_at, updated_at)
                 VALUES ($1, $2, $3, {v4}, 1, $5, $5)
                 ON CONFLICT (app, collection, id) DO UPDATE
                 SET body = excluded.body, version = docs.version + 1, updated_at = excluded.updated_at
                 RETURNING {cols}"
            ))
            .bind(app)
            .bind(coll)
            .bind(id)
            .bind(&body)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?,
            Some(0) => sqlx::query(&format!(
                "INSERT INTO docs (app, collection, id, body, version, created_at, updated_at)
                 VALUES ($1, $2, $3, {v4}, 1, $5, $5)
                 ON CONFLICT (app, collection, id) DO NOTHING
                 RETURNING {cols}"
            ))
            .bind(app)
            .bind(coll)
            .bind(id)
            .bind(&body)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?,
            Some(v) => sqlx::query(&format!(
                "UPDATE docs SET body = {v4}, version = version + 1, updated_at = $5
                 WHERE app = $1 AND collection = $2 AND id = $3 AND version = $6
                 RETURNING {cols}"
            ))
            .bind(app)
            .bind(coll)
            .bind(id)
            .bind(&body)
            .bind(now)
            .bind(v)
            .fetch_optional(&self.pool)
            .await?,
        };
        match row {
            Some(r) => {
                self.changes.written(app, coll, id);
                document(&r)
            }
            None => Err(self.conflict(app, coll, id, expected).await),
        }
    }

    /// The document once its version is not `after` (0: once it exists),
    /// or as it is when `timeout` runs out; `None` if it does not exist.
    /// Writes through this store wake the wait at once; others (another
    /// node's) are seen within a second.
    pub async fn doc_watch(
        &self,
        app: &str,
        coll: &str,
        id: &str,
        after: i64,
        timeout: Duration,
    ) -> Result<Option<Document>, DocError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let waiter = self.changes.wait(app, coll, id);
        loop {
            // Listening before reading: a write between the read and the
            // wait still wakes it.
            let changed = waiter.notify().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let doc = self.doc_get(app, coll, id).await?;
            let now = tokio::time::Instant::now();
            if doc.as_ref().map_or(0, |d| d.version) != after || now >= deadline {
                return Ok(doc);
            }
            let recheck = (deadline - now).min(crate::changes::RECHECK);
            let _ = tokio::time::timeout(recheck, changed).await;
        }
    }

    async fn conflict(&self, app: &str, coll: &str, id: &str, expected: Option<i64>) -> DocError {
        let current = match self.doc_get(app, coll, id).await {
            Ok(d) => d.map(|d| d.version),
            Err(e) => return e,
        };
        DocError::Conflict(match (expected, current) {
            (Some(0), Some(v)) => format!(
                "document {coll}/{id} already exists (version {v}); read it and write with its version, or omit the expected version to replace it"
            ),
            (Some(e), Some(v)) => format!(
                "document {coll}/{id} is at version {v}, not {e}: someone else wrote it; read it again and retry"
            ),
            (Some(e), None) => {
                format!("document {coll}/{id} does not exist (expected version {e})")
            }
            (None, _) => format!("document {coll}/{id} could not be written"),
        })
    }

    /// Merges `json` into a document (RFC 7396), creating it if absent and
    /// no version is expected. The merged document must stay within
    /// `max_bytes`.
    pub async fn doc_patch(
        &self,
        app: &str,
        coll: &str,
        id: &str,
        json: &str,
        expected: Option<i64>,
        max_bytes: u64,
    ) -> Result<Document, DocError> {
        let patch = object(json)?;
        let now = now_us();
        let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let cols = self.doc_columns();
        let from_empty = self.patched("'{}'", 4);
        let (upsert, update) = (self.patched("docs.body", 4), self.patched("body", 4));
        let (upsert_len, update_len) = (self.json_len(&upsert), self.json_len(&update));
        let row = match expected {
            None => {
                sqlx::query(&format!(
                    "INSERT INTO docs (app, collection, id, body, version, created_at, updated_at)
                     VALUES ($1, $2, $3, {from_empty}, 1, $5, $5)
                     ON CONFLICT (app, collection, id) DO UPDATE
                     SET body = {upsert}, version = docs.version + 1,
                         updated_at = excluded.updated_at
                     WHERE {upsert_len} <= $6
                     RETURNING {cols}"
                ))
                .bind(app)
                .bind(coll)
                .bind(id)
                .bind(&patch)
                .bind(now)
                .bind(max)
                .fetch_optional(&self.pool)
                .await?
            }
            Some(v) => {
                sqlx::query(&format!(
                    "UPDATE docs SET body = {update}, version = version + 1, updated_at = $5
                     WHERE app = $1 AND collection = $2 AND id = $3 AND version = $6
                       AND {update_len} <= $7
                     RETURNING {cols}"
                ))
                .bind(app)
                .bind(coll)
                .bind(id)
                .bind(&patch)
                .bind(now)
                .bind(v)
                .bind(max)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        match row {
            Some(r) => {
                self.changes.written(app, coll, id);
                document(&r)
            }
            None => {
                let merged: Option<i64> = sqlx::query_scalar(&format!(
                    "SELECT {update_len} FROM docs
                     WHERE app = $1 AND collection = $2 AND id = $3"
                ))
                .bind(app)
                .bind(coll)
                .bind(id)
                .bind(&patch)
                .fetch_optional(&self.pool)
                .await?;
                match merged {
                    Some(n) if n > max => Err(DocError::Invalid(format!(
                        "the patched document would be {n} bytes, over the limit of {max} bytes"
                    ))),
                    _ => Err(self.conflict(app, coll, id, expected).await),
                }
            }
        }
    }

    /// Creates or replaces many documents in one transaction; how many.
    pub async fn doc_put_many(
        &self,
        app: &str,
        coll: &str,
        docs: &[(String, String)],
    ) -> Result<usize, DocError> {
        let mut tx = self.pool.begin().await?;
        let now = now_us();
        let sql = format!(
            "INSERT INTO docs (app, collection, id, body, version, created_at, updated_at)
             VALUES ($1, $2, $3, {}, 1, $5, $5)
             ON CONFLICT (app, collection, id) DO UPDATE
             SET body = excluded.body, version = docs.version + 1, updated_at = excluded.updated_at",
            self.json_param(4)
        );
        for (id, json) in docs {
            let body = object(json)?;
            sqlx::query(&sql)
                .bind(app)
                .bind(coll)
                .bind(id)
                .bind(&body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        for (id, _) in docs {
            self.changes.written(app, coll, id);
        }
        Ok(docs.len())
    }

    /// Deletes a document; whether it existed.
    pub async fn doc_delete(&self, app: &str, coll: &str, id: &str) -> Result<bool, DocError> {
        self.doc_delete_at(app, coll, id, None).await
    }

    /// Deletes a document if it is at `version` (any version if `None`).
    pub async fn doc_delete_at(
        &self,
        app: &str,
        coll: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<bool, DocError> {
        let deleted = sqlx::query(
            "DELETE FROM docs WHERE app = $1 AND collection = $2 AND id = $3 AND ($4 IS NULL OR version = $4)",
        )
        .bind(app)
        .bind(coll)
        .bind(id)
        .bind(version)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if deleted {
            self.changes.written(app, coll, id);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::data::IndexField;

    #[tokio::test]
    async fn a_write_through_another_node_wakes_a_watch() {
        let dir = tempfile::tempdir().unwrap();
        let here = Store::open_for_test(dir.path()).await.unwrap();
        // Another node: its own connection pool and its own waiters, on the
        // same database (SQLite has one node: there, another handle).
        let there = match here.database_url() {
            Some(url) => Store::open_postgres(url, false, 2).await.unwrap(),
            None => here.clone(),
        };
        here.doc_put("a", "games", "g", r#"{"moves": 0}"#, None)
            .await
            .unwrap();
        // Let the listeners start.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let woke = std::time::Instant::now();
        let watch = {
            let here = here.clone();
            tokio::spawn(async move {
                here.doc_watch("a", "games", "g", 1, Duration::from_secs(10))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        there
            .doc_patch("a", "games", "g", r#"{"moves": 1}"#, Some(1), 1 << 20)
            .await
            .unwrap();
        let d = watch.await.unwrap().unwrap().unwrap();
        assert_eq!(d.version, 2);
        assert!(
            woke.elapsed() < Duration::from_millis(500),
            "the other node's write woke the watch before the once-a-second re-read: {:?}",
            woke.elapsed()
        );
    }

    #[tokio::test]
    async fn a_watch_returns_when_the_document_changes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.doc_put("a", "games", "g", r#"{"moves": 0}"#, None)
            .await
            .unwrap();
        // Already past the version asked about: at once.
        let d = s
            .doc_watch("a", "games", "g", 0, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(d.unwrap().version, 1);
        // Nothing changes: the document as it is, after the timeout.
        let t = std::time::Instant::now();
        let d = s
            .doc_watch("a", "games", "g", 1, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(d.unwrap().version, 1);
        assert!(t.elapsed() >= Duration::from_millis(50));
        // A write wakes the waiters at once: long before their timeout
        // (10 s), and before the once-a-second re-read would have seen it.
        let woke = std::time::Instant::now();
        let writer = s.clone();
        let write = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            writer
                .doc_patch("a", "games", "g", r#"{"moves": 1}"#, Some(1), 1 << 20)
                .await
                .unwrap();
        });
        let (one, two) = tokio::join!(
            s.doc_watch("a", "games", "g", 1, Duration::from_secs(10)),
            s.doc_watch("a", "games", "g", 1, Duration::from_secs(10)),
        );
        write.await.unwrap();
        for d in [one, two] {
            let d = d.unwrap().unwrap();
            assert_eq!((d.version, d.value()["moves"].as_i64()), (2, Some(1)));
        }
        assert!(
            woke.elapsed() < crate::changes::RECHECK,
            "the write woke the watch: {:?}",
            woke.elapsed()
        );
        // A deletion too; the answer is then `None`.
        let woke = std::time::Instant::now();
        let waiter = s.clone();
        let watch = tokio::spawn(async move {
            waiter
                .doc_watch("a", "games", "g", 2, Duration::from_secs(10))
                .await
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(s.doc_delete("a", "games", "g").await.unwrap());
        assert!(watch.await.unwrap().unwrap().is_none());
        assert!(
            woke.elapsed() < crate::changes::RECHECK,
            "{:?}",
            woke.elapsed()
        );
    }

    /// Documents of 1 MiB each: a page of up to 1,000 ends at
    /// [`MAX_PAGE_BYTES`], says so, and its cursor goes on to the rest.
    #[tokio::test]
    async fn a_query_page_ends_at_its_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(1 << 20));
        for i in 0..10 {
            s.doc_put("a", "big", &format!("{i}"), &big, None)
                .await
                .unwrap();
        }
        let mut q = DocQuery::parse(r#"{"limit": 1000}"#).unwrap();
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let page = s.doc_query("a", "big", &q).await.unwrap();
            let bytes: usize = page.documents.iter().map(Document::size).sum();
            assert!(bytes <= MAX_PAGE_BYTES, "{bytes}");
            assert!(!page.documents.is_empty());
            seen += page.documents.len();
            pages += 1;
            match page.cursor {
                Some(c) => {
                    assert!(page.ended_early);
                    q.offset = DocQuery::parse(&format!(r#"{{"cursor": "{c}"}}"#))
                        .unwrap()
                        .offset;
                }
                None => break,
            }
        }
        assert_eq!((seen, pages), (10, 4), "3 documents a page");
    }

    #[tokio::test]
    async fn documents_and_queries() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        let d = s
            .doc_put("a", "c", "1", r#"{"score": 5, "p": {"n": "x"}}"#, None)
            .await
            .unwrap();
        assert_eq!(d.version, 1);
        let d = s
            .doc_put("a", "c", "1", r#"{"score": 7}"#, Some(1))
            .await
            .unwrap();
        assert_eq!(d.version, 2);
        let e = s
            .doc_put("a", "c", "1", r#"{"score": 8}"#, Some(1))
            .await
            .unwrap_err();
        assert!(
            matches!(e, DocError::Conflict(ref m) if m.contains("version 2, not 1")),
            "{e}"
        );
        let e = s
            .doc_put("a", "c", "1", r#"{}"#, Some(0))
            .await
            .unwrap_err();
        assert!(matches!(e, DocError::Conflict(_)));
        let d = s
            .doc_patch(
                "a",
                "c",
                "1",
                r#"{"name": "bo", "score": null}"#,
                None,
                1 << 20,
            )
            .await
            .unwrap();
        let e = s
            .doc_patch(
                "a",
                "c",
                "1",
                r#"{"pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
                None,
                40,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, DocError::Invalid(ref m) if m.contains("over the limit")),
            "{e}"
        );
        assert_eq!(d.value(), serde_json::json!({"name": "bo"}));
        assert_eq!(d.version, 3);
        assert!(s.doc_put("a", "c", "x", "[1]", None).await.is_err());
        for i in 0..30 {
            s.doc_put(
                "a",
                "lb",
                &format!("{i:02}"),
                &format!(
                    r#"{{"score": {}, "team": "{}"}}"#,
                    i * 3 % 31,
                    if i % 2 == 0 { "red" } else { "blue" }
                ),
                None,
            )
            .await
            .unwrap();
        }
        s.ensure_doc_indexes(&[vec![IndexField {
            path: "score".into(),
            desc: true,
        }]])
        .await
        .unwrap();
        let q = DocQuery::parse(r#"{"where": [["team", "==", "red"], ["score", ">=", 10]], "order_by": [["score", "desc"]], "limit": 3}"#).unwrap();
        let DocPage {
            documents: page,
            cursor,
            ended_early,
            ..
        } = s.doc_query("a", "lb", &q).await.unwrap();
        assert!(!ended_early);
        let scores: Vec<i64> = page
            .iter()
            .map(|d| d.value()["score"].as_i64().unwrap())
            .collect();
        assert_eq!(scores.len(), 3);
        assert!(scores.windows(2).all(|w| w[0] >= w[1]));
        assert!(page.iter().all(|d| d.value()["team"] == "red"));
        let mut q2 = q.clone();
        q2.offset = DocQuery::parse(&format!(r#"{{"cursor": "{}"}}"#, cursor.unwrap()))
            .unwrap()
            .offset;
        let page2 = s.doc_query("a", "lb", &q2).await.unwrap().documents;
        assert!(page2[0].value()["score"].as_i64().unwrap() <= scores[2]);
        let q = DocQuery::parse(r#"{"where": [["team", "in", ["blue"]]]}"#).unwrap();
        assert_eq!(
            s.doc_query("a", "lb", &q).await.unwrap().documents.len(),
            15
        );
        let plan = s
            .doc_query_plan(
                "a",
                "lb",
                &DocQuery::parse(r#"{"order_by": [["score", "desc"]]}"#).unwrap(),
            )
            .await
            .unwrap();
        assert!(plan.contains("docs_ix_"), "the index is used: {plan}");
        assert!(DocQuery::parse(r#"{"where": [["x", "~", 1]]}"#).is_err());
        assert!(DocQuery::parse(r#"{"cursor": "o18446744073709551615"}"#).is_err());
        assert!(DocQuery::parse(r#"{"cursor": "o18446744073709551615"}"#).is_err());
        assert!(DocQuery::parse(r#"{"where": [["x'--", "==", 1]]}"#).is_err());
        assert!(s.doc_delete("a", "c", "1").await.unwrap());
        assert!(s.doc_get("a", "c", "1").await.unwrap().is_none());
    }
}
