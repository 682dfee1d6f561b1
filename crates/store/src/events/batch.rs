//! A batch of event operations in one transaction: sends (their
//! idempotency keys claimed first), leases and settlements, in order.

use super::{
    Enqueued, EventOp, EventResult, Leased, NewMessage, Settlement, headers_json, headers_of,
};
use crate::builder::QueryBuilder;
use crate::records::batches;
use crate::{Backend, Result, Store, now_us};
use sqlx::{Any, Row, Transaction};

/// Checks and records the idempotency keys of `msgs`: one result per
/// message; those to store (new, or without a key) are pushed onto
/// `to_insert`, for [`insert_messages`] to write together with other
/// operations' messages.
async fn check_keys<'m>(
    tx: &mut Transaction<'static, Any>,
    msgs: &'m [NewMessage],
    now: i64,
    to_insert: &mut Vec<&'m NewMessage>,
) -> Result<Vec<Enqueued>> {
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        if let Some((key, until)) = &m.idempotency {
            // Claims the key unless a live claim holds it, in one statement:
            // on PostgreSQL a second node sending the same key at once waits
            // for the first's row, then sees it live and claims nothing (a
            // read first, then a write, would let both see no claim and both
            // store their message).
            let claimed: Option<String> = sqlx::query_scalar(
                "INSERT INTO message_keys (app, channel, key, message_id, expires_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (app, channel, key)
                 DO UPDATE SET message_id = excluded.message_id, expires_at = excluded.expires_at
                 WHERE message_keys.expires_at <= $6
                 RETURNING message_id",
            )
            .bind(&m.app)
            .bind(&m.channel)
            .bind(key)
            .bind(&m.id)
            .bind(until)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await?;
            if claimed.is_none() {
                let holder: String = sqlx::query_scalar(
                    "SELECT message_id FROM message_keys WHERE app = $1 AND channel = $2 AND key = $3",
                )
                .bind(&m.app)
                .bind(&m.channel)
                .bind(key)
                .fetch_one(&mut **tx)
                .await?;
                out.push(Enqueued::Duplicate(holder));
                continue;
            }
        }
        out.push(Enqueued::New(m.id.clone()));
        to_insert.push(m);
    }
    Ok(out)
}

/// Stores messages, in multi-row inserts.
pub(crate) async fn insert_messages(
    tx: &mut Transaction<'static, Any>,
    msgs: &[&NewMessage],
    now: i64,
) -> Result<()> {
    for chunk in batches(msgs) {
        let mut q = QueryBuilder::new(
            crate::Backend::of(tx),
            "INSERT INTO messages (id, app, channel, function, state, attempts, available_at,
                group_key, method, path, headers, body, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut b, m| {
            b.push_bind(&m.id)
                .push_bind(&m.app)
                .push_bind(&m.channel)
                .push_bind(&m.function)
                .push_bind("queued")
                .push_bind(0i64)
                .push_bind(m.available_at_us)
                .push_bind(&m.group_key)
                .push_bind(&m.method)
                .push_bind(&m.path)
                .push_bind(headers_json(&m.headers))
                .push_bind(&m.body)
                .push_bind(now)
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn lease(
    owner: &str,
    tx: &mut Transaction<'static, Any>,
    app: &str,
    channel: &str,
    function: &str,
    max: u32,
    lease_ms: u64,
    now: i64,
) -> Result<Vec<Leased>> {
    // PostgreSQL: nodes lease from the same channel at once; each skips
    // the rows another is taking (SKIP LOCKED) instead of waiting for it,
    // and the state is re-checked on the locked row. SQLite: the write
    // transaction already serializes leasers.
    let lock = match Backend::of(tx) {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE OF m SKIP LOCKED",
    };
    let rows = sqlx::query(&format!(
        "UPDATE messages
         SET state = 'running', attempts = attempts + 1, lease_until = $4, function = $5, updated_at = $3,
             lease_owner = $7
         WHERE seq IN (
            SELECT m.seq FROM messages m
            WHERE m.app = $1 AND m.channel = $2 AND m.state IN ('queued', 'failed')
              AND m.available_at <= $3
              AND (m.group_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM messages p
                    WHERE p.app = m.app AND p.channel = m.channel AND p.group_key = m.group_key
                      AND p.group_key IS NOT NULL AND p.seq < m.seq
                      AND p.state IN ('queued', 'failed', 'running')))
            ORDER BY m.seq LIMIT $6{lock})
         RETURNING seq, id, attempts, group_key, method, path, headers, body, created_at"
    ))
    .bind(app)
    .bind(channel)
    .bind(now)
    .bind(now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX).saturating_mul(1000)))
    .bind(function)
    .bind(i64::from(max))
    .bind(owner)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = rows
        .iter()
        .map(|row| {
            Ok(Leased {
                seq: row.try_get("seq")?,
                id: row.try_get("id")?,
                attempt: row.try_get::<i64, _>("attempts")? as u32,
                group_key: row.try_get("group_key")?,
                method: row.try_get("method")?,
                path: row.try_get("path")?,
                headers: headers_of(&row.try_get::<String, _>("headers")?)?,
                body: row.try_get("body")?,
                created_at_us: row.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|l| l.seq);
    Ok(out)
}

async fn settle(
    tx: &mut Transaction<'static, Any>,
    settlements: &[&(i64, u32, Settlement)],
    now: i64,
) -> Result<()> {
    let done: Vec<(i64, u32)> = settlements
        .iter()
        .filter(|(_, _, s)| matches!(s, Settlement::Succeeded))
        .map(|(seq, attempt, _)| (*seq, *attempt))
        .collect();
    for chunk in batches(&done) {
        let mut q = QueryBuilder::new(
            crate::Backend::of(tx),
            "UPDATE messages SET state = 'succeeded', lease_until = NULL, last_error = NULL, updated_at = ",
        );
        q.push_bind(now)
            .push(" WHERE state = 'running' AND (seq, attempts) IN (VALUES ");
        let mut sep = q.separated(", ");
        for (seq, attempt) in chunk {
            sep.push("(")
                .push_bind_unseparated(*seq)
                .push_unseparated(", ")
                .push_bind_unseparated(i64::from(*attempt))
                .push_unseparated(")");
        }
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    for (seq, attempt, s) in settlements {
        let attempt = i64::from(*attempt);
        let q = match s {
            Settlement::Succeeded => continue,
            Settlement::Retry { at_us, error } => sqlx::query(
                "UPDATE messages SET state = 'failed', lease_until = NULL, available_at = $2,
                    last_error = $3, updated_at = $4
                 WHERE seq = $1 AND state = 'running' AND attempts = $5",
            )
            .bind(seq)
            .bind(at_us)
            .bind(error)
            .bind(now)
            .bind(attempt),
            Settlement::Dead { error } => sqlx::query(
                "UPDATE messages SET state = 'dead', lease_until = NULL, last_error = $2,
                    updated_at = $3 WHERE seq = $1 AND state = 'running' AND attempts = $4",
            )
            .bind(seq)
            .bind(error)
            .bind(now)
            .bind(attempt),
            Settlement::Release => sqlx::query(
                "UPDATE messages SET state = 'queued', lease_until = NULL,
                    attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                    available_at = $2, updated_at = $2
                 WHERE seq = $1 AND state = 'running' AND attempts = $3",
            )
            .bind(seq)
            .bind(now)
            .bind(attempt),
        };
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// Runs a batch of event operations in one transaction; one result per
    /// operation, in order. If anything fails, nothing is applied.
    ///
    /// The messages of consecutive sends are stored by one multi-row insert,
    /// and consecutive settlements by one update each kind, rather than a
    /// statement per operation: on PostgreSQL every statement is a round
    /// trip, and the writer applies batches one at a time. Both are written
    /// before a lease, which must see them (a new message to lease, a
    /// settled one no longer blocking its FIFO group).
    pub async fn apply_events(&self, ops: &[EventOp]) -> Result<Vec<EventResult>> {
        // IMMEDIATE: the batch may read (idempotency keys) before it writes;
        // a deferred transaction would then fail with SQLITE_BUSY_SNAPSHOT,
        // unretried, if another connection committed in between. Taking the
        // write lock first makes it wait (busy timeout) instead.
        let mut tx = self.begin_write().await?;
        let now = now_us();
        let mut out = Vec::with_capacity(ops.len());
        let mut to_insert: Vec<&NewMessage> = Vec::new();
        let mut to_settle: Vec<&(i64, u32, Settlement)> = Vec::new();
        for op in ops {
            if matches!(op, EventOp::Lease { .. }) {
                insert_messages(&mut tx, &to_insert, now).await?;
                settle(&mut tx, &to_settle, now).await?;
                to_insert.clear();
                to_settle.clear();
            }
            out.push(match op {
                EventOp::Enqueue(msgs) => {
                    EventResult::Enqueued(check_keys(&mut tx, msgs, now, &mut to_insert).await?)
                }
                EventOp::Lease {
                    app,
                    channel,
                    function,
                    max,
                    lease_ms,
                } => EventResult::Leased(
                    lease(
                        &self.node, &mut tx, app, channel, function, *max, *lease_ms, now,
                    )
                    .await?,
                ),
                EventOp::Settle(s) => {
                    to_settle.extend(s);
                    EventResult::Settled
                }
                EventOp::FireTick {
                    app,
                    name,
                    tick_ms,
                    message,
                } => {
                    let fired = sqlx::query(
                        "UPDATE schedules SET last_tick = $3
                         WHERE app = $1 AND name = $2 AND last_tick < $3",
                    )
                    .bind(app)
                    .bind(name)
                    .bind(tick_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if fired {
                        to_insert.push(message);
                    }
                    EventResult::Fired(fired)
                }
            });
        }
        insert_messages(&mut tx, &to_insert, now).await?;
        settle(&mut tx, &to_settle, now).await?;
        tx.commit().await?;
        Ok(out)
    }
}
