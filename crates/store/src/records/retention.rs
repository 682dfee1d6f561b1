//! Retention: pruning records, failed inputs, spans and logs app by app.
//!
//! The writer prunes every 10,000 records, and at least once a minute while
//! records come in. It works app by app, so one app's flood never evicts
//! another's history: the apps are found by skipping through the index led
//! by `app` (a recursive CTE), never by a scan; each app is cut at its
//! `keep_invocations`-th newest record by time-ordered id (UUIDv7, index
//! `invocations (app, id)`), and its failed inputs and spans go with those
//! records. Logs are pruned by count and bytes of text per app, and by age.
//! Usage sums (`usage_hourly`) are never pruned here.

use super::RecordWriterConfig;
use crate::{Result, Store};

impl Store {
    /// Applies the retention of `config`, app by app, so that one app's
    /// flood of records or logs never evicts another's: of each app, all
    /// but its newest `keep_invocations` records (with their failed
    /// inputs and spans); its log entries beyond `keep_log_entries` or
    /// beyond `keep_log_bytes` of text; and everyone's entries older than
    /// `keep_logs_for`.
    pub async fn prune_records(&self, config: &RecordWriterConfig) -> Result<()> {
        for app in self.apps_in("invocations").await? {
            // Ids are UUIDv7 (time-ordered): (app, id) orders an app's
            // invocations by start, so the cut is an index seek.
            let cut: Option<String> = sqlx::query_scalar(
                "SELECT id FROM invocations WHERE app = $1 ORDER BY id DESC LIMIT 1 OFFSET $2",
            )
            .bind(&app)
            .bind(config.keep_invocations)
            .fetch_optional(&self.pool)
            .await?;
            let Some(cut) = cut else { continue };
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "DELETE FROM op_spans WHERE invocation_id IN (
                    SELECT id FROM invocations WHERE app = $1 AND id <= $2)",
            )
            .bind(&app)
            .bind(&cut)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM failed_inputs WHERE app = $1 AND invocation_id <= $2")
                .bind(&app)
                .bind(&cut)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM invocations WHERE app = $1 AND id <= $2")
                .bind(&app)
                .bind(&cut)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        let cutoff =
            crate::now_us() - config.keep_logs_for.as_micros().min(i64::MAX as u128) as i64;
        sqlx::query("DELETE FROM logs WHERE at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        for app in self.apps_in("logs").await? {
            sqlx::query(
                "DELETE FROM logs WHERE app = $1 AND seq <= (
                    SELECT seq FROM logs WHERE app = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
            )
            .bind(&app)
            .bind(config.keep_log_entries)
            .execute(&self.pool)
            .await?;
            // The app's newest entries whose text adds up to the budget stay.
            sqlx::query(
                "DELETE FROM logs WHERE app = $1 AND seq <= (
                    SELECT seq FROM (
                        SELECT seq, SUM(LENGTH(text)) OVER (ORDER BY seq DESC) AS newer_bytes
                        FROM logs WHERE app = $1
                    ) AS sized WHERE newer_bytes > $2 ORDER BY seq DESC LIMIT 1)",
            )
            .bind(&app)
            .bind(config.keep_log_bytes)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// The apps with rows in `table` (which has an index led by `app`),
    /// found by skipping from one app to the next in that index rather
    /// than reading every row.
    async fn apps_in(&self, table: &'static str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(&format!(
            "WITH RECURSIVE a(app) AS (
                SELECT MIN(app) FROM {table}
                UNION ALL
                SELECT (SELECT MIN(app) FROM {table} WHERE app > a.app) FROM a WHERE a.app IS NOT NULL
            ) SELECT app FROM a WHERE app IS NOT NULL"
        ))
        .fetch_all(&self.pool)
        .await?)
    }
}
