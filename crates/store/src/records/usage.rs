//! Usage: hourly sums per function, and the reports read from them.

use super::{CLIENT_OPS, SocketUsage, UsageBy, UsageRow, WEBSOCKETS, batches, hour_start};
use crate::builder::QueryBuilder;
use crate::{Result, Store};
use nimbus_core::OpCounts;
use sqlx::Row;

/// Adds per-function hourly sums to `usage_hourly` in one upsert per 64 rows.
pub(super) async fn add_usage(
    tx: &mut sqlx::AnyConnection,
    sums: &[((&str, &str, i64), UsageRow)],
) -> Result<()> {
    for chunk in batches(sums) {
        let mut q = QueryBuilder::new(
            crate::Backend::of(tx),
            "INSERT INTO usage_hourly (app, function, hour, invocations, errors, duration_us,
                mb_us, bytes_in, bytes_out, cold_starts, kv_ops, doc_ops, object_ops, event_ops,
                realtime_ops, ws_connection_ms, ws_messages_in, ws_messages_out) ",
        );
        q.push_values(chunk, |mut b, ((app, function, hour), u)| {
            b.push_bind(*app)
                .push_bind(*function)
                .push_bind(*hour)
                .push_bind(u.invocations)
                .push_bind(u.errors)
                .push_bind(u.duration_us)
                .push_bind(u.mb_us)
                .push_bind(u.bytes_in)
                .push_bind(u.bytes_out)
                .push_bind(u.cold_starts)
                .push_bind(u.kv_ops)
                .push_bind(u.doc_ops)
                .push_bind(u.object_ops)
                .push_bind(u.event_ops)
                .push_bind(u.realtime_ops)
                .push_bind(u.ws_connection_ms)
                .push_bind(u.ws_messages_in)
                .push_bind(u.ws_messages_out);
        });
        q.push(
            " ON CONFLICT (app, function, hour) DO UPDATE SET
                invocations = usage_hourly.invocations + excluded.invocations,
                errors = usage_hourly.errors + excluded.errors,
                duration_us = usage_hourly.duration_us + excluded.duration_us,
                mb_us = usage_hourly.mb_us + excluded.mb_us,
                bytes_in = usage_hourly.bytes_in + excluded.bytes_in,
                bytes_out = usage_hourly.bytes_out + excluded.bytes_out,
                cold_starts = usage_hourly.cold_starts + excluded.cold_starts,
                kv_ops = usage_hourly.kv_ops + excluded.kv_ops,
                doc_ops = usage_hourly.doc_ops + excluded.doc_ops,
                object_ops = usage_hourly.object_ops + excluded.object_ops,
                event_ops = usage_hourly.event_ops + excluded.event_ops,
                realtime_ops = usage_hourly.realtime_ops + excluded.realtime_ops,
                ws_connection_ms = usage_hourly.ws_connection_ms + excluded.ws_connection_ms,
                ws_messages_in = usage_hourly.ws_messages_in + excluded.ws_messages_in,
                ws_messages_out = usage_hourly.ws_messages_out + excluded.ws_messages_out",
        );
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

impl Store {
    /// Usage from the hour containing `since_us` on, of one app or all,
    /// grouped by `by`, largest GB-seconds first.
    pub async fn usage(
        &self,
        app: Option<&str>,
        since_us: i64,
        by: UsageBy,
    ) -> Result<Vec<UsageRow>> {
        let key = match by {
            UsageBy::Function => "app || '/' || function",
            UsageBy::App => "app",
            // Days are grouped by number; the caller names them.
            UsageBy::Day => "CAST(hour / 86400000000 AS TEXT)",
            UsageBy::Hour => "CAST(hour AS TEXT)",
        };
        let since = hour_start(since_us);
        let mut q = QueryBuilder::new(
            self.backend,
            format!(
                "SELECT {key} AS k, CAST(SUM(invocations) AS BIGINT) AS invocations,
                CAST(SUM(errors) AS BIGINT) AS errors,
                CAST(SUM(duration_us) AS BIGINT) AS duration_us,
                CAST(SUM(mb_us) AS BIGINT) AS mb_us,
                CAST(SUM(bytes_in) AS BIGINT) AS bytes_in,
                CAST(SUM(bytes_out) AS BIGINT) AS bytes_out,
                CAST(SUM(cold_starts) AS BIGINT) AS cold_starts,
                CAST(SUM(kv_ops) AS BIGINT) AS kv_ops,
                CAST(SUM(doc_ops) AS BIGINT) AS doc_ops,
                CAST(SUM(object_ops) AS BIGINT) AS object_ops,
                CAST(SUM(event_ops) AS BIGINT) AS event_ops,
                CAST(SUM(realtime_ops) AS BIGINT) AS realtime_ops,
                CAST(SUM(ws_connection_ms) AS BIGINT) AS ws_connection_ms,
                CAST(SUM(ws_messages_in) AS BIGINT) AS ws_messages_in,
                CAST(SUM(ws_messages_out) AS BIGINT) AS ws_messages_out
             FROM usage_hourly WHERE hour >= "
            ),
        );
        q.push_bind(since);
        if let Some(app) = app {
            q.push(" AND app = ").push_bind(app.to_string());
        }
        q.push(" GROUP BY k ORDER BY SUM(mb_us) DESC, k");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let mut key: String = r.try_get("k")?;
                match by {
                    UsageBy::Day => {
                        let day: i64 = key.parse().unwrap_or(0);
                        key = crate::metering::day(day.saturating_mul(86_400_000_000));
                    }
                    UsageBy::Hour => key = crate::metering::hour(key.parse().unwrap_or(0)),
                    _ => {}
                }
                Ok(UsageRow {
                    key,
                    invocations: r.try_get("invocations")?,
                    errors: r.try_get("errors")?,
                    duration_us: r.try_get("duration_us")?,
                    mb_us: r.try_get("mb_us")?,
                    bytes_in: r.try_get("bytes_in")?,
                    bytes_out: r.try_get("bytes_out")?,
                    cold_starts: r.try_get("cold_starts")?,
                    kv_ops: r.try_get("kv_ops")?,
                    doc_ops: r.try_get("doc_ops")?,
                    object_ops: r.try_get("object_ops")?,
                    event_ops: r.try_get("event_ops")?,
                    realtime_ops: r.try_get("realtime_ops")?,
                    ws_connection_ms: r.try_get("ws_connection_ms")?,
                    ws_messages_in: r.try_get("ws_messages_in")?,
                    ws_messages_out: r.try_get("ws_messages_out")?,
                })
            })
            .collect()
    }

    /// Adds clients' operations on each app's services to this hour's usage.
    pub(super) async fn add_client_ops(
        &self,
        ops: &std::collections::BTreeMap<Box<str>, OpCounts>,
    ) -> Result<()> {
        let hour = hour_start(crate::now_us());
        let rows: Vec<((&str, &str, i64), UsageRow)> = ops
            .iter()
            .map(|(app, ops)| {
                let u = UsageRow {
                    kv_ops: ops.kv as i64,
                    doc_ops: ops.docs as i64,
                    object_ops: ops.objects as i64,
                    event_ops: ops.events as i64,
                    realtime_ops: ops.realtime as i64,
                    ..Default::default()
                };
                ((&**app, CLIENT_OPS, hour), u)
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        add_usage(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds WebSocket connections' time and messages to this hour's usage
    /// of each app.
    pub(super) async fn add_socket_usage(
        &self,
        usage: &std::collections::BTreeMap<Box<str>, SocketUsage>,
    ) -> Result<()> {
        let hour = hour_start(crate::now_us());
        let rows: Vec<((&str, &str, i64), UsageRow)> = usage
            .iter()
            .map(|(app, u)| {
                let u = UsageRow {
                    ws_connection_ms: u.connection_ms as i64,
                    ws_messages_in: u.messages_in as i64,
                    ws_messages_out: u.messages_out as i64,
                    ..Default::default()
                };
                ((&**app, WEBSOCKETS, hour), u)
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        add_usage(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(())
    }
}
