//! Around leases: the next due time, expired leases, a restarted node's
//! leases, pruning finished messages, and schedule ticks.

use crate::{Backend, Result, Store, now_us};

impl Store {
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
