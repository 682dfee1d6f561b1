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

use crate::builder::QueryBuilder;
use crate::{Backend, Result, Store, StoreError, now_us};
use nimbus_core::data::{IndexField, check_field_path};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
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

/// A stored document.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// Id.
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

/// A comparison in a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in` (a list)
    In,
}

/// A parsed query.
#[derive(Debug, Clone, Default)]
pub struct DocQuery {
    /// Filters, all of which must hold.
    pub filters: Vec<(String, Op, Value)>,
    /// Order, then by id.
    pub order_by: Vec<IndexField>,
    /// Page size.
    pub limit: u32,
    /// Documents skipped (from the cursor).
    pub offset: u64,
}

/// Most documents a query page returns.
pub const MAX_PAGE: u32 = 1000;
/// Most bytes of documents a query page returns (at least one document):
/// past them the page ends early, with a cursor, and says so.
pub const MAX_PAGE_BYTES: usize = 4 << 20;
/// Largest offset a cursor may carry.
pub const MAX_OFFSET: u64 = 1 << 40;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryJson {
    #[serde(default, rename = "where")]
    filters: Vec<(String, String, Value)>,
    #[serde(default)]
    order_by: Vec<(String, String)>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

impl DocQuery {
    /// Parses the JSON query language (see `wit/data/data.wit`).
    pub fn parse(json: &str) -> Result<DocQuery, DocError> {
        let q: QueryJson = serde_json::from_str(json).map_err(|e| {
            DocError::Invalid(format!(
                "the query is not valid ({e}): write {{\"where\": [[\"field\", \"==\", value]], \"order_by\": [[\"field\", \"desc\"]], \"limit\": 10, \"cursor\": \"...\"}}"
            ))
        })?;
        let mut out = DocQuery {
            limit: q.limit.unwrap_or(100).clamp(1, MAX_PAGE),
            ..Default::default()
        };
        for (path, op, value) in q.filters {
            check_field_path(&path).map_err(DocError::Invalid)?;
            let op = match op.as_str() {
                "==" | "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "in" => Op::In,
                other => {
                    return Err(DocError::Invalid(format!(
                        "unknown operator {other:?}: use ==, !=, <, <=, >, >= or in"
                    )));
                }
            };
            match (&op, &value) {
                (Op::In, Value::Array(items)) => {
                    if items.is_empty() || items.len() > 100 {
                        return Err(DocError::Invalid(
                            "`in` takes a list of 1 to 100 values".into(),
                        ));
                    }
                    if items
                        .iter()
                        .any(|v| v.is_array() || v.is_object() || v.is_null())
                    {
                        return Err(DocError::Invalid(
                            "`in` takes numbers, strings or booleans".into(),
                        ));
                    }
                }
                (Op::In, _) => return Err(DocError::Invalid("`in` takes a list".into())),
                (_, Value::Array(_) | Value::Object(_)) => {
                    return Err(DocError::Invalid(format!(
                        "field {path:?} is compared with a list or object: compare with a number, string, boolean or null"
                    )));
                }
                (Op::Eq | Op::Ne, _) => {}
                (_, Value::Null) => {
                    return Err(DocError::Invalid(
                        "null can only be compared with == or !=".into(),
                    ));
                }
                _ => {}
            }
            out.filters.push((path, op, value));
        }
        for (path, dir) in q.order_by {
            check_field_path(&path).map_err(DocError::Invalid)?;
            let desc = match dir.to_ascii_lowercase().as_str() {
                "asc" => false,
                "desc" => true,
                other => {
                    return Err(DocError::Invalid(format!(
                        "order {other:?} is unknown: use \"asc\" or \"desc\""
                    )));
                }
            };
            out.order_by.push(IndexField { path, desc });
        }
        if let Some(c) = q.cursor {
            out.offset = c
                .strip_prefix("o")
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n <= MAX_OFFSET)
                .ok_or_else(|| {
                    DocError::Invalid(format!("cursor {c:?} is not one this server gave"))
                })?;
        }
        Ok(out)
    }
}

/// The SQL expression of a field path; the manifest's indexes are on
/// exactly these expressions. A JSON null reads as SQL NULL on both.
fn expr(backend: Backend, path: &str) -> String {
    // The path was checked: letters, digits, '_', '-' and dots only.
    match backend {
        Backend::Sqlite => format!("json_extract(body, '$.\"{}\"')", path.replace('.', "\".\"")),
        Backend::Postgres => format!(
            "NULLIF(body #> '{{\"{}\"}}', 'null'::jsonb)",
            path.replace('.', "\",\"")
        ),
    }
}

/// The ORDER BY (and index) direction of a field: NULLs first ascending,
/// last descending, on both (PostgreSQL's default is the opposite).
fn direction(backend: Backend, desc: bool) -> &'static str {
    match (backend, desc) {
        (Backend::Sqlite, false) => "",
        (Backend::Sqlite, true) => " DESC",
        (Backend::Postgres, false) => " ASC NULLS FIRST",
        (Backend::Postgres, true) => " DESC NULLS LAST",
    }
}

fn bind_scalar(backend: Backend, q: &mut QueryBuilder<'_>, v: &Value) {
    if backend == Backend::Postgres {
        // Compared as JSONB: numbers by value, strings as strings.
        match v {
            Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                q.push("CAST(").push_bind(v.to_string()).push(" AS JSONB)")
            }
            _ => q.push("NULL"),
        };
        return;
    }
    match v {
        Value::Bool(b) => q.push_bind(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => q.push_bind(i),
            None => q.push_bind(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => q.push_bind(s.clone()),
        _ => q.push("NULL"),
    };
}

impl Document {
    /// The body as a JSON value (parsed).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.body.get()).unwrap_or(Value::Null)
    }

    /// Bytes of the body's text.
    pub fn size(&self) -> usize {
        self.body.get().len()
    }
}

/// A page of a query's results.
#[derive(Debug, Serialize)]
pub struct DocPage {
    /// The documents, in order.
    pub documents: Vec<Document>,
    /// Where the next page starts, if there is one.
    pub cursor: Option<String>,
    /// The page ended before its `limit` because its documents reached
    /// [`MAX_PAGE_BYTES`] (the cursor goes on from there).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ended_early: bool,
}

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
    /// Creates the expression indexes a collection declares (idempotent).
    pub async fn ensure_doc_indexes(&self, indexes: &[Vec<IndexField>]) -> Result<()> {
        for fields in indexes {
            let cols: Vec<String> = fields
                .iter()
                .map(|f| {
                    check_field_path(&f.path).map_err(StoreError::Corrupt)?;
                    let e = expr(self.backend, &f.path);
                    Ok(match self.backend {
                        // An expression in an index is parenthesized on PostgreSQL.
                        Backend::Sqlite => format!("{e}{}", direction(self.backend, f.desc)),
                        Backend::Postgres => format!("({e}){}", direction(self.backend, f.desc)),
                    })
                })
                .collect::<Result<_>>()?;
            let name = hex::encode(&Sha256::digest(cols.join(",").as_bytes())[..8]);
            sqlx::query(&format!(
                "CREATE INDEX IF NOT EXISTS docs_ix_{name} ON docs (app, collection, {}, id)",
                cols.join(", ")
            ))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

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

    /// Runs a query; the page and the cursor of the next one.
    pub async fn doc_query(
        &self,
        app: &str,
        coll: &str,
        q: &DocQuery,
    ) -> Result<DocPage, DocError> {
        let backend = self.backend;
        let mut b = QueryBuilder::new(
            backend,
            format!("SELECT {} FROM docs WHERE app = ", self.doc_columns()),
        );
        b.push_bind(app.to_string())
            .push(" AND collection = ")
            .push_bind(coll.to_string());
        for (path, op, value) in &q.filters {
            b.push(" AND ").push(expr(backend, path));
            match (op, value) {
                (Op::Eq, Value::Null) => {
                    b.push(" IS NULL");
                }
                (Op::Ne, Value::Null) => {
                    b.push(" IS NOT NULL");
                }
                (Op::In, Value::Array(items)) => {
                    b.push(" IN (");
                    for (i, v) in items.iter().enumerate() {
                        if i > 0 {
                            b.push(", ");
                        }
                        bind_scalar(backend, &mut b, v);
                    }
                    b.push(")");
                }
                (op, v) => {
                    b.push(match op {
                        Op::Eq => " = ",
                        Op::Ne => " != ",
                        Op::Lt => " < ",
                        Op::Le => " <= ",
                        Op::Gt => " > ",
                        Op::Ge => " >= ",
                        Op::In => unreachable!("checked at parse"),
                    });
                    bind_scalar(backend, &mut b, v);
                }
            }
        }
        b.push(" ORDER BY ");
        for f in &q.order_by {
            b.push(expr(backend, &f.path))
                .push(direction(backend, f.desc))
                .push(", ");
        }
        b.push("id LIMIT ")
            .push_bind(i64::from(q.limit) + 1)
            .push(" OFFSET ")
            .push_bind(q.offset as i64);
        // Rows are read one at a time, so the page stops at its byte
        // budget without the rest of `limit` ever being held.
        let mut rows = b.build().fetch(&self.pool);
        let mut documents = Vec::new();
        let (mut bytes, mut more, mut ended_early) = (0usize, false, false);
        while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
            if documents.len() == q.limit as usize {
                more = true;
                break;
            }
            let d = document(&row)?;
            bytes += d.size();
            if bytes > MAX_PAGE_BYTES && !documents.is_empty() {
                more = true;
                ended_early = true;
                break;
            }
            documents.push(d);
        }
        let cursor = more.then(|| format!("o{}", q.offset.saturating_add(documents.len() as u64)));
        Ok(DocPage {
            documents,
            cursor,
            ended_early,
        })
    }

    /// The plan the database picks for a query's order (for tests and
    /// diagnostics). PostgreSQL is asked with sequential scans and sorts
    /// discouraged, as they would be on a large collection, so the plan
    /// shows whether an index can serve the query (on a small table it
    /// would rightly prefer a scan).
    pub async fn doc_query_plan(&self, app: &str, coll: &str, q: &DocQuery) -> Result<String> {
        let backend = self.backend;
        let mut b = QueryBuilder::new(
            backend,
            match backend {
                Backend::Sqlite => "EXPLAIN QUERY PLAN SELECT id FROM docs WHERE app = ",
                Backend::Postgres => "EXPLAIN SELECT id FROM docs WHERE app = ",
            },
        );
        b.push_bind(app.to_string())
            .push(" AND collection = ")
            .push_bind(coll.to_string())
            .push(" ORDER BY ");
        for f in &q.order_by {
            b.push(expr(backend, &f.path))
                .push(direction(backend, f.desc))
                .push(", ");
        }
        b.push("id LIMIT 10");
        let mut out = Vec::new();
        match backend {
            Backend::Sqlite => {
                // EXPLAIN compiles no schema check, so a pooled connection
                // that has not yet seen a newly created index would plan
                // without it. A real read on the same connection first
                // makes it reload a stale schema.
                let mut conn = self.pool.acquire().await?;
                sqlx::query("SELECT 1 FROM docs LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await?;
                for r in b.build().fetch_all(&mut *conn).await? {
                    out.push(r.try_get::<String, _>("detail")?);
                }
            }
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SET LOCAL enable_seqscan = off")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SET LOCAL enable_sort = off")
                    .execute(&mut *tx)
                    .await?;
                for r in b.build().fetch_all(&mut *tx).await? {
                    out.push(r.try_get::<String, _>(0)?);
                }
                tx.rollback().await?;
            }
        }
        Ok(out.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
