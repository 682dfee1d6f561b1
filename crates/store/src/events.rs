//! Durable messages: every queue message, topic copy, async invocation and
//! schedule tick is one row in `messages`, waiting in a channel of its app.
//!
//! Life of a row: `queued` → leased (`running`, `attempts + 1`, a lease
//! deadline) → `succeeded`, or `failed` (waiting until `available_at` for
//! its next attempt), or `dead` (dead-lettered, kept until redriven or
//! purged). A lease that runs out puts the row back to `queued`.
//!
//! Writes that must be grouped for throughput (enqueue, lease, settle, a
//! schedule's tick) go through [`Store::apply_events`], which runs a batch
//! of operations in one transaction. The caller (one writer task) decides
//! how to batch. Consecutive sends become multi-row inserts and consecutive
//! settlements one update per kind, each written before any lease that
//! follows them.
//!
//! An idempotency key is claimed by one upsert (`ON CONFLICT … DO UPDATE …
//! WHERE expired RETURNING`), so concurrent senders on several nodes cannot
//! both claim it. A lease is one `UPDATE … WHERE seq IN (SELECT … ORDER BY
//! seq LIMIT n) RETURNING` that skips messages whose FIFO group has an
//! older unfinished one; on PostgreSQL the inner select is `FOR UPDATE
//! SKIP LOCKED`, so nodes leasing from one channel skip each other's rows.
//! Leases carry the node's id: [`Store::release_own_leases`] takes a
//! restarted node's back at once (the interrupted attempt uncounted), and
//! [`Store::expire_leases`] puts back those that ran out.

use crate::builder::QueryBuilder;
use crate::records::batches;
use crate::{Backend, Result, Store, StoreError, now_us};
use sqlx::{Any, Row, Transaction};

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Message id (a UUIDv7; it is also the CloudEvents `id`).
    pub id: String,
    /// App.
    pub app: String,
    /// Channel it waits in (see `nimbus_core::events::Channel`).
    pub channel: String,
    /// Function expected to consume it (the one that does is recorded at lease).
    pub function: Option<String>,
    /// FIFO group: messages of one group are delivered one at a time, in order.
    pub group_key: Option<String>,
    /// Idempotency key and until when (µs) a second send with it is dropped.
    pub idempotency: Option<(String, i64)>,
    /// HTTP method of the delivery.
    pub method: String,
    /// Path (and query) of the delivery.
    pub path: String,
    /// Headers of the delivery.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Not delivered before this time (µs).
    pub available_at_us: i64,
}

/// Result of storing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored under this id.
    New(String),
    /// Its idempotency key was seen recently: not stored; the first message's id.
    Duplicate(String),
}

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Leased {
    /// Row number (internal, for settling).
    pub seq: i64,
    /// Message id.
    pub id: String,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// FIFO group.
    pub group_key: Option<String>,
    /// Delivery method.
    pub method: String,
    /// Delivery path.
    pub path: String,
    /// Delivery headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// When it was stored (µs).
    pub created_at_us: i64,
}

/// How a delivery ended.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// Acknowledged: done.
    Succeeded,
    /// Failed; retry at this time (µs).
    Retry {
        /// Next attempt not before.
        at_us: i64,
        /// Why it failed.
        error: String,
    },
    /// Failed for the last time: dead-lettered.
    Dead {
        /// Why it failed.
        error: String,
    },
    /// Not attempted after all (e.g. its consumer went away): back to the
    /// queue, the attempt not counted.
    Release,
}

/// One operation of a batch.
#[derive(Debug)]
pub enum EventOp {
    /// Store messages.
    Enqueue(Vec<NewMessage>),
    /// Lease up to `max` ready messages of a channel for `lease_ms`.
    Lease {
        /// App.
        app: String,
        /// Channel.
        channel: String,
        /// Function that will consume them (recorded on the row).
        function: String,
        /// Most messages to lease.
        max: u32,
        /// Lease length.
        lease_ms: u64,
    },
    /// Settle deliveries: row number, the attempt that was leased (a
    /// settlement of an attempt whose lease ran out and was re-leased is
    /// ignored), and how it ended.
    Settle(Vec<(i64, u32, Settlement)>),
    /// Fire a schedule's tick: store `message` unless the tick already fired.
    FireTick {
        /// App.
        app: String,
        /// Schedule name.
        name: String,
        /// The tick (ms since the epoch).
        tick_ms: i64,
        /// The message to deliver.
        message: Box<NewMessage>,
    },
}

/// Result of one [`EventOp`].
#[derive(Debug)]
pub enum EventResult {
    /// Per message, in order.
    Enqueued(Vec<Enqueued>),
    /// Leased messages, oldest first.
    Leased(Vec<Leased>),
    /// Settled.
    Settled,
    /// Whether the tick fired now (false: it had already fired).
    Fired(bool),
}

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

fn headers_json(h: &[(String, String)]) -> String {
    serde_json::to_string(h).expect("strings serialize")
}

fn headers_of(s: &str) -> Result<Vec<(String, String)>> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("message headers: {e}")))
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

    /// When the next waiting message of a channel that was not ready at
    /// `after_us` (a retry in its backoff) becomes ready (µs), if any.
    /// Messages ready before `after_us` but still waiting are held back by
    /// their FIFO group, not by time.
    pub async fn next_available(
        &self,
        app: &str,
        channel: &str,
        after_us: i64,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(available_at) FROM messages
             WHERE app = $1 AND channel = $2 AND state IN ('queued', 'failed') AND available_at > $3",
        )
        .bind(app)
        .bind(channel)
        .bind(after_us)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Puts messages whose lease ran out back in their queue; returns how many.
    pub async fn expire_leases(&self) -> Result<u64> {
        let now = now_us();
        Ok(sqlx::query(
            "UPDATE messages SET state = 'queued', lease_until = NULL, available_at = $1,
                last_error = 'the lease ran out before the delivery finished', updated_at = $1
             WHERE state = 'running' AND lease_until < $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// At start-up of a node: the leases it held before (a crash, a kill)
    /// belong to a process that is gone, so their messages go back to their
    /// queue at once, and the interrupted attempt is not counted. On SQLite
    /// (one node) that is every lease; in a cluster, those marked with this
    /// node's id; other nodes' leases are alive, or run out. Returns how many.
    pub async fn release_own_leases(&self) -> Result<u64> {
        let now = now_us();
        Ok(sqlx::query(
            "UPDATE messages SET state = 'queued', lease_until = NULL, available_at = $1,
                attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $1
             WHERE state = 'running' AND ($2 = 1 OR lease_owner = $3)",
        )
        .bind(now)
        // One node: every lease was its own (whatever id it had then).
        .bind(i64::from(self.backend == Backend::Sqlite))
        .bind(&*self.node)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Deletes succeeded messages last changed before `before_us` and
    /// expired idempotency keys.
    pub async fn prune_messages(&self, before_us: i64) -> Result<u64> {
        let n = sqlx::query("DELETE FROM messages WHERE state = 'succeeded' AND updated_at < $1")
            .bind(before_us)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM message_keys WHERE expires_at < $1")
            .bind(now_us())
            .execute(&self.pool)
            .await?;
        Ok(n)
    }

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

    /// The last tick a schedule fired, creating its state at `initial_ms` if
    /// it has none (a new schedule does not fire for ticks before it existed).
    pub async fn schedule_last_tick(&self, app: &str, name: &str, initial_ms: i64) -> Result<i64> {
        sqlx::query(
            "INSERT INTO schedules (app, name, last_tick) VALUES ($1, $2, $3)
             ON CONFLICT (app, name) DO NOTHING",
        )
        .bind(app)
        .bind(name)
        .bind(initial_ms)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT last_tick FROM schedules WHERE app = $1 AND name = $2")
                .bind(app)
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, channel: &str, group: Option<&str>) -> NewMessage {
        NewMessage {
            id: id.into(),
            app: "a".into(),
            channel: channel.into(),
            function: None,
            group_key: group.map(String::from),
            idempotency: None,
            method: "POST".into(),
            path: "/".into(),
            headers: vec![("ce-type".into(), "t".into())],
            body: id.as_bytes().to_vec(),
            available_at_us: 0,
        }
    }

    async fn lease_ids(store: &Store, channel: &str, max: u32) -> Vec<Leased> {
        match store
            .apply_events(&[EventOp::Lease {
                app: "a".into(),
                channel: channel.into(),
                function: "f".into(),
                max,
                lease_ms: 60_000,
            }])
            .await
            .unwrap()
            .pop()
        {
            Some(EventResult::Leased(l)) => l,
            other => panic!("{other:?}"),
        }
    }

    async fn settle_one(store: &Store, seq: i64, s: Settlement) {
        let attempt: i64 = sqlx::query_scalar("SELECT attempts FROM messages WHERE seq = $1")
            .bind(seq)
            .fetch_one(store.pool())
            .await
            .unwrap();
        store
            .apply_events(&[EventOp::Settle(vec![(seq, attempt as u32, s)])])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn lease_settle_retry_dead_redrive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let msgs: Vec<_> = (0..5)
            .map(|i| msg(&format!("m{i}"), "queue:q", None))
            .collect();
        store.apply_events(&[EventOp::Enqueue(msgs)]).await.unwrap();
        let l = lease_ids(&store, "queue:q", 2).await;
        assert_eq!(
            l.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m0", "m1"]
        );
        assert_eq!(l[0].attempt, 1);
        assert_eq!(l[0].headers, vec![("ce-type".to_string(), "t".to_string())]);
        settle_one(&store, l[0].seq, Settlement::Succeeded).await;
        settle_one(
            &store,
            l[1].seq,
            Settlement::Retry {
                at_us: now_us() + 3_600_000_000,
                error: "boom".into(),
            },
        )
        .await;
        let depth = store.channel_depths("a").await.unwrap();
        assert_eq!((depth[0].queued, depth[0].failed), (3, 1));
        // m1 waits for its retry; the others come next.
        let l2 = lease_ids(&store, "queue:q", 10).await;
        assert_eq!(l2.len(), 3);
        assert!(
            store
                .next_available("a", "queue:q", now_us())
                .await
                .unwrap()
                .unwrap()
                > now_us()
        );
        settle_one(&store, l2[0].seq, Settlement::Dead { error: "x".into() }).await;
        let dead = store
            .messages_in_state("a", Some("f"), "dead", None, 10)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("x"));
        assert_eq!(store.redrive("a", "f", None).await.unwrap(), 1);
        let again = lease_ids(&store, "queue:q", 10).await;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempt, 1, "redrive resets attempts");
        // A settlement for an attempt that is no longer the leased one is ignored.
        store
            .apply_events(&[EventOp::Settle(vec![(
                again[0].seq,
                7,
                Settlement::Dead {
                    error: "late".into(),
                },
            )])])
            .await
            .unwrap();
        assert_eq!(
            store.message("a", &again[0].id).await.unwrap().state,
            "running"
        );
        // Crash recovery: running messages go back, their attempt uncounted.
        assert_eq!(store.release_own_leases().await.unwrap(), 3);
        let back = lease_ids(&store, "queue:q", 10).await;
        assert_eq!(back.len(), 3);
        assert!(back.iter().all(|m| m.attempt == 1));
    }

    #[tokio::test]
    async fn an_expired_lease_puts_the_message_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        store
            .apply_events(&[EventOp::Enqueue(vec![msg("m", "queue:q", None)])])
            .await
            .unwrap();
        let leased = store
            .apply_events(&[EventOp::Lease {
                app: "a".into(),
                channel: "queue:q".into(),
                function: "f".into(),
                max: 1,
                lease_ms: 0,
            }])
            .await
            .unwrap();
        assert!(matches!(&leased[0], EventResult::Leased(l) if l.len() == 1));
        assert!(
            lease_ids(&store, "queue:q", 1).await.is_empty(),
            "leased: invisible"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        assert_eq!(store.expire_leases().await.unwrap(), 1);
        let again = lease_ids(&store, "queue:q", 1).await;
        assert_eq!(again[0].attempt, 2, "the lost attempt counts");
        let row = store.message("a", "m").await.unwrap();
        assert_eq!(row.state, "running");
    }

    #[tokio::test]
    async fn groups_are_delivered_in_order_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let msgs = vec![
            msg("g1-a", "queue:q", Some("g1")),
            msg("g2-a", "queue:q", Some("g2")),
            msg("g1-b", "queue:q", Some("g1")),
            msg("free", "queue:q", None),
        ];
        store.apply_events(&[EventOp::Enqueue(msgs)]).await.unwrap();
        let l = lease_ids(&store, "queue:q", 10).await;
        let ids: Vec<_> = l.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["g1-a", "g2-a", "free"]);
        assert!(lease_ids(&store, "queue:q", 10).await.is_empty());
        settle_one(&store, l[0].seq, Settlement::Succeeded).await;
        let next = lease_ids(&store, "queue:q", 10).await;
        assert_eq!(next[0].id, "g1-b");
    }

    #[tokio::test]
    async fn idempotency_keys_and_ticks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        let keyed = |id: &str| {
            let mut m = msg(id, "queue:q", None);
            m.idempotency = Some(("k".into(), now_us() + 60_000_000));
            m
        };
        let r = store
            .apply_events(&[EventOp::Enqueue(vec![keyed("x1"), keyed("x2")])])
            .await
            .unwrap();
        match &r[0] {
            EventResult::Enqueued(e) => assert_eq!(
                e,
                &[Enqueued::New("x1".into()), Enqueued::Duplicate("x1".into())]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.schedule_last_tick("a", "s", 1_000).await.unwrap(),
            1_000
        );
        assert_eq!(
            store.schedule_last_tick("a", "s", 5_000).await.unwrap(),
            1_000
        );
        let tick = |t| EventOp::FireTick {
            app: "a".into(),
            name: "s".into(),
            tick_ms: t,
            message: Box::new(msg(&format!("t{t}"), "schedule:s", None)),
        };
        let r = store
            .apply_events(&[tick(2_000), tick(2_000)])
            .await
            .unwrap();
        assert!(matches!(r[0], EventResult::Fired(true)));
        assert!(matches!(r[1], EventResult::Fired(false)));
        assert_eq!(lease_ids(&store, "schedule:s", 10).await.len(), 1);
    }

    /// Two nodes sending with the same idempotency key at once: exactly one
    /// message is stored, and the other send is told which.
    #[tokio::test]
    async fn one_idempotency_key_one_message_across_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open_for_test(dir.path()).await.unwrap();
        let b = Store::open_for_test(dir.path()).await.unwrap();
        let keyed = |id: String, key: &str| {
            let mut m = msg(&id, "queue:q", None);
            m.idempotency = Some((key.into(), now_us() + 60_000_000));
            EventOp::Enqueue(vec![m])
        };
        let result = |r: Result<Vec<EventResult>>| match r.unwrap().pop() {
            Some(EventResult::Enqueued(mut e)) => e.pop().unwrap(),
            other => panic!("{other:?}"),
        };
        for i in 0..50 {
            let key = format!("k{i}");
            let (from_a, from_b) = (
                [keyed(format!("a{i}"), &key)],
                [keyed(format!("b{i}"), &key)],
            );
            let (x, y) = tokio::join!(a.apply_events(&from_a), b.apply_events(&from_b));
            match (result(x), result(y)) {
                (Enqueued::New(n), Enqueued::Duplicate(d))
                | (Enqueued::Duplicate(d), Enqueued::New(n)) => assert_eq!(n, d, "round {i}"),
                other => panic!("round {i}: {other:?}"),
            }
        }
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(a.pool())
            .await
            .unwrap();
        assert_eq!(stored, 50);
    }

    /// One batch as the writer sends it, sends, settlements and leases
    /// interleaved: the messages of consecutive sends are written together
    /// but before a lease that follows them, and so are settlements (one
    /// that unblocks a FIFO group lets the lease after it take the next).
    #[tokio::test]
    async fn a_mixed_batch_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        store
            .apply_events(&[EventOp::Enqueue(vec![msg("g-1", "queue:q", Some("g"))])])
            .await
            .unwrap();
        let first = lease_ids(&store, "queue:q", 10).await;
        assert_eq!(first.len(), 1);
        let lease = || EventOp::Lease {
            app: "a".into(),
            channel: "queue:q".into(),
            function: "f".into(),
            max: 10,
            lease_ms: 60_000,
        };
        let keyed = |id: &str| {
            let mut m = msg(id, "queue:q", None);
            m.idempotency = Some(("k".into(), now_us() + 60_000_000));
            m
        };
        let r = store
            .apply_events(&[
                EventOp::Enqueue(vec![msg("g-2", "queue:q", Some("g"))]),
                EventOp::Enqueue(vec![keyed("a")]),
                EventOp::Enqueue(vec![keyed("b")]),
                EventOp::Settle(vec![(
                    first[0].seq,
                    first[0].attempt,
                    Settlement::Succeeded,
                )]),
                lease(),
                EventOp::Enqueue(vec![msg("late", "queue:q", None)]),
                lease(),
            ])
            .await
            .unwrap();
        let ids = |r: &EventResult| match r {
            EventResult::Leased(l) => l.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(&r[2], EventResult::Enqueued(e) if e == &[Enqueued::Duplicate("a".into())]),
            "{:?}",
            r[2]
        );
        assert_eq!(
            ids(&r[4]),
            ["g-2", "a"],
            "the settled g-1 no longer blocks g-2"
        );
        assert_eq!(ids(&r[6]), ["late"]);
        let depths = store.channel_depths("a").await.unwrap();
        assert_eq!(depths.iter().map(|d| d.running).sum::<u64>(), 3);
    }
}
