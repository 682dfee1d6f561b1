//! The document query language (`where`, `order_by`, `limit`, `cursor`),
//! its SQL on either backend, pages bounded in count and bytes, and the
//! manifest's indexes, which are expression indexes on exactly the
//! expressions queries use.

use super::{DocError, document};
use crate::builder::QueryBuilder;
use crate::{Backend, Result, Store, StoreError};
use nimbus_core::data::{IndexField, check_field_path};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;

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

/// A page of a query's results (the type is the API's; `plan` is the
/// REST face's to fill).
pub use nimbus_api::DocPage;

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
            plan: None,
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
