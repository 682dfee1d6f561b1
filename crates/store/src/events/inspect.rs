//! Reading messages (one, its body, those in a state, channel depths) and
//! managing dead letters (redrive, purge).

use super::headers_of;
use crate::builder::QueryBuilder;
use crate::{Result, Store, StoreError, now_us};
use sqlx::Row;

/// A stored message, as the API shows it (the type is the API's).
pub use nimbus_api::MessageRow;

/// Messages of a channel by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelDepth {
    /// Channel.
    pub channel: String,
    /// Waiting for their first attempt.
    pub queued: u64,
    /// Being delivered.
    pub running: u64,
    /// Waiting for a retry.
    pub failed: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// When the oldest message still waiting for delivery (queued or
    /// failed) was sent, µs since the epoch.
    pub oldest_waiting_us: Option<i64>,
}

const MESSAGE_COLUMNS: &str = "id, app, channel, state, attempts, function, group_key, last_error,
    method, path, headers, LENGTH(body) AS body_bytes, created_at, updated_at, available_at";

fn message_row(row: &sqlx::any::AnyRow) -> Result<MessageRow> {
    Ok(MessageRow {
        id: row.try_get("id")?,
        app: row.try_get("app")?,
        channel: row.try_get("channel")?,
        state: row.try_get("state")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        function: row.try_get("function")?,
        group_key: row.try_get("group_key")?,
        last_error: row.try_get("last_error")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        headers: headers_of(&row.try_get::<String, _>("headers")?)?
            .into_iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .map(|(k, v)| {
                // Shown by the API: never a caller's credentials.
                let secret = matches!(
                    k.as_str(),
                    "authorization" | "proxy-authorization" | "cookie" | "x-api-key"
                );
                (k, if secret { "[redacted]".to_string() } else { v })
            })
            .collect(),
        body_bytes: row.try_get::<i64, _>("body_bytes")? as u64,
        created_at_us: row.try_get("created_at")?,
        updated_at_us: row.try_get("updated_at")?,
        available_at_us: row.try_get("available_at")?,
    })
}

impl Store {
    /// A message of an app.
    pub async fn message(&self, app: &str, id: &str) -> Result<MessageRow> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE app = $1 AND id = $2"
        ))
        .bind(app)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "app {app:?} has no event {id:?} (succeeded events are kept for a limited time)"
            ))
        })?;
        message_row(&row)
    }

    /// A message's body.
    pub async fn message_body(&self, app: &str, id: &str) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT body FROM messages WHERE app = $1 AND id = $2")
            .bind(app)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("app {app:?} has no event {id:?}")))
    }

    /// Messages of an app in `state` last consumed by `function` (all
    /// functions if `None`), oldest first, after the message `after` (cursor).
    pub async fn messages_in_state(
        &self,
        app: &str,
        function: Option<&str>,
        state: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE app = $1 AND ($2 IS NULL OR function = $2) AND state = $3
               AND seq > COALESCE((SELECT seq FROM messages WHERE id = $4), 0)
             ORDER BY seq LIMIT $5"
        ))
        .bind(app)
        .bind(function)
        .bind(state)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_row).collect()
    }

    /// Puts dead messages of `function` (all, or those in `ids`) back in
    /// their queue with a fresh attempt count; returns how many.
    pub async fn redrive(&self, app: &str, function: &str, ids: Option<&[String]>) -> Result<u64> {
        let now = now_us();
        let mut q = QueryBuilder::new(
            self.backend,
            "UPDATE messages SET state = 'queued', attempts = 0, lease_until = NULL, available_at = ",
        );
        q.push_bind(now)
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE state = 'dead' AND app = ")
            .push_bind(app)
            .push(" AND function = ")
            .push_bind(function);
        push_ids(&mut q, ids);
        Ok(q.build().execute(&self.pool).await?.rows_affected())
    }

    /// Deletes dead messages of `function` (all, or those in `ids`); returns how many.
    pub async fn purge_dead(
        &self,
        app: &str,
        function: &str,
        ids: Option<&[String]>,
    ) -> Result<u64> {
        let mut q = QueryBuilder::new(
            self.backend,
            "DELETE FROM messages WHERE state = 'dead' AND app = ",
        );
        q.push_bind(app)
            .push(" AND function = ")
            .push_bind(function);
        push_ids(&mut q, ids);
        Ok(q.build().execute(&self.pool).await?.rows_affected())
    }

    /// Unfinished messages of an app, per channel and state.
    pub async fn channel_depths(&self, app: &str) -> Result<Vec<ChannelDepth>> {
        let rows = sqlx::query(
            "SELECT channel, state, COUNT(*) AS n, MIN(created_at) AS oldest FROM messages
             WHERE app = $1 AND state IN ('queued', 'running', 'failed', 'dead')
             GROUP BY channel, state ORDER BY channel",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<ChannelDepth> = Vec::new();
        for row in rows {
            let channel: String = row.try_get("channel")?;
            let state: String = row.try_get("state")?;
            let n = row.try_get::<i64, _>("n")? as u64;
            if out.last().is_none_or(|d| d.channel != channel) {
                out.push(ChannelDepth {
                    channel,
                    ..Default::default()
                });
            }
            let d = out.last_mut().expect("pushed");
            match state.as_str() {
                "queued" => d.queued = n,
                "running" => d.running = n,
                "failed" => d.failed = n,
                _ => d.dead = n,
            }
            if state == "queued" || state == "failed" {
                let oldest: i64 = row.try_get("oldest")?;
                d.oldest_waiting_us = Some(d.oldest_waiting_us.map_or(oldest, |o| o.min(oldest)));
            }
        }
        Ok(out)
    }
}

fn push_ids(q: &mut QueryBuilder<'_>, ids: Option<&[String]>) {
    if let Some(ids) = ids {
        if ids.is_empty() {
            q.push(" AND 1 = 0");
            return;
        }
        q.push(" AND id IN (");
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(id.clone());
        }
        q.push(")");
    }
}
