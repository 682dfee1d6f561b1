//! Reading records back: invocations, traces, spans, failed inputs, logs.

use super::{InvocationRow, LogQuery, OpSpanRow};
use crate::{Result, Store};
use nimbus_core::{LogEntry, Outcome, StoredInput};
use sqlx::Row;

const INVOCATION_COLUMNS: &str = "id, app, function, revision, trigger, method, path, started_at,
    duration_us, status, outcome, error, bytes_in, bytes_out, event_id, attempt, memory_mb,
    peak_memory, cold, trace_id, span_id, parent_span_id";

fn invocation_row(row: &sqlx::any::AnyRow) -> Result<InvocationRow> {
    let outcome: String = row.try_get("outcome")?;
    Ok(InvocationRow {
        id: row.try_get("id")?,
        app: row.try_get("app")?,
        function: row.try_get("function")?,
        revision: row.try_get("revision")?,
        trigger: row.try_get("trigger")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        started_at_us: row.try_get("started_at")?,
        duration_us: row.try_get("duration_us")?,
        status: row.try_get::<i64, _>("status")? as u16,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("unknown outcome {outcome:?}")))?,
        error: row.try_get("error")?,
        bytes_in: row.try_get::<i64, _>("bytes_in")? as u64,
        bytes_out: row.try_get::<i64, _>("bytes_out")? as u64,
        event_id: row.try_get("event_id")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        memory_mb: row.try_get::<i64, _>("memory_mb")? as u32,
        peak_memory_bytes: row.try_get::<i64, _>("peak_memory")? as u64,
        cold: row.try_get::<i64, _>("cold")? != 0,
        trace_id: row.try_get("trace_id")?,
        span_id: row.try_get("span_id")?,
        parent_span_id: row.try_get("parent_span_id")?,
    })
}

impl Store {
    /// The kept input of a failed invocation of `app`.
    pub async fn failed_input(&self, app: &str, id: &str) -> Result<Option<StoredInput>> {
        let row = sqlx::query(
            "SELECT method, path, headers, body, complete FROM failed_inputs
             WHERE app = $1 AND invocation_id = $2",
        )
        .bind(app)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let headers: String = r.try_get("headers")?;
            Ok(StoredInput {
                method: r.try_get("method")?,
                path: r.try_get("path")?,
                headers: serde_json::from_str(&headers)
                    .map_err(|e| crate::StoreError::Corrupt(format!("stored headers: {e}")))?,
                body: r.try_get("body")?,
                complete: r.try_get::<i64, _>("complete")? != 0,
            })
        })
        .transpose()
    }

    /// The spans of guests' operations in a trace, oldest first.
    pub async fn trace_ops(&self, trace_id: &str) -> Result<Vec<OpSpanRow>> {
        let rows = sqlx::query(
            "SELECT invocation_id, span_id, service, op, target, started_at, duration_us, ok
             FROM op_spans WHERE trace_id = $1 ORDER BY started_at LIMIT 10000",
        )
        .bind(trace_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OpSpanRow {
                    invocation_id: r.try_get("invocation_id")?,
                    span_id: r.try_get("span_id")?,
                    service: r.try_get("service")?,
                    op: r.try_get("op")?,
                    target: r.try_get("target")?,
                    started_at_us: r.try_get("started_at")?,
                    duration_us: r.try_get("duration_us")?,
                    ok: r.try_get::<i64, _>("ok")? != 0,
                })
            })
            .collect()
    }

    /// Newest invocations of an app (optionally of one function, or the
    /// attempts of one event), newest first.
    pub async fn invocations(
        &self,
        app: &str,
        function: Option<&str>,
        event: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InvocationRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS}
             FROM invocations WHERE app = $1 AND ($2 IS NULL OR function = $2)
               AND ($3 IS NULL OR event_id = $3)
             ORDER BY started_at DESC LIMIT $4"
        ))
        .bind(app)
        .bind(function)
        .bind(event)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invocation_row).collect()
    }

    /// Every invocation of a trace, oldest first.
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<InvocationRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE trace_id = $1 ORDER BY started_at LIMIT 10000"
        ))
        .bind(trace_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invocation_row).collect()
    }

    /// An invocation of any app.
    pub async fn invocation_anywhere(&self, id: &str) -> Result<Option<InvocationRow>> {
        let row = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invocation_row).transpose()
    }

    /// One invocation of an app.
    pub async fn invocation(&self, app: &str, id: &str) -> Result<Option<InvocationRow>> {
        let row = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE app = $1 AND id = $2"
        ))
        .bind(app)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invocation_row).transpose()
    }

    /// Log entries matching `q`, oldest first.
    pub async fn logs(&self, q: &LogQuery) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, invocation_id, app, function, at, stream, text FROM logs
             WHERE app = $1 AND seq > $2 AND at >= $3
               AND ($4 IS NULL OR function = $4) AND ($5 IS NULL OR invocation_id = $5)
               AND ($7 IS NULL OR LOWER(text) LIKE $7 ESCAPE '\\')
             ORDER BY seq LIMIT $6",
        )
        .bind(&q.app)
        .bind(q.after_seq)
        .bind(q.since_us)
        .bind(&q.function)
        .bind(&q.invocation)
        .bind(q.limit)
        .bind(q.grep.as_ref().map(|g| {
            let escaped = g
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        }))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LogEntry {
                    seq: row.try_get("seq")?,
                    invocation_id: row.try_get("invocation_id")?,
                    app: row.try_get("app")?,
                    function: row.try_get("function")?,
                    at_us: row.try_get("at")?,
                    stream: row.try_get("stream")?,
                    text: row.try_get("text")?,
                })
            })
            .collect()
    }
}
