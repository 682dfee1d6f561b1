//! What nodes sharing a PostgreSQL database need to reach each other's
//! WebSocket connections: which node holds each one (`ws_connections`),
//! and one notification channel ([`RELAY_CHANNEL`]) on which a node
//! relays a send, close, subscription or channel publish to the others.
//!
//! A notification is `HEADER|BODY`: the header (the sender's and the
//! addressee's node, which a listener checks before anything else) and
//! the operation itself when it fits ([`MAX_INLINE_PAYLOAD`]); a larger one
//! is written to `ws_relay`, and the body is `#` and its row id, which the
//! addressees read back. Those rows are removed after [`RELAY_KEEP`].
//!
//! The embedded database has one node, which holds every connection: the
//! realtime crate calls none of this there.

use crate::{NODE_LIVE_FOR, Result, Store};
use std::time::Duration;

/// The notification channel of relayed WebSocket operations.
pub const RELAY_CHANNEL: &str = "nimbus_realtime";

/// The largest payload sent inline; PostgreSQL refuses more than 8,000
/// bytes.
pub const MAX_INLINE_PAYLOAD: usize = 7_900;

/// How long a relayed operation too large for a notification is kept for
/// the listeners to read.
pub const RELAY_KEEP: Duration = Duration::from_secs(60);

/// An open WebSocket connection, with the node that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketRow {
    /// Its id.
    pub id: String,
    /// Its app.
    pub app: String,
    /// The node that holds it.
    pub node: String,
    /// The route pattern it came through.
    pub route: String,
    /// The path it asked for.
    pub path: String,
    /// When it opened, µs since the epoch.
    pub opened_at_us: i64,
}

impl Store {
    /// Records that this node holds the connection `row` describes (its
    /// `node` is ignored: this node's id is written).
    pub async fn socket_opened(&self, row: &SocketRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO ws_connections (id, app, node, route, path, opened_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.app)
        .bind(&*self.node)
        .bind(&row.route)
        .bind(&row.path)
        .bind(row.opened_at_us)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the connection `id` of this node.
    pub async fn socket_closed(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM ws_connections WHERE id = $1 AND node = $2")
            .bind(id)
            .bind(&*self.node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets every connection this node was recorded to hold: called as
    /// it starts, before it holds any (it may have stopped without
    /// forgetting them). Returns how many.
    pub async fn forget_own_sockets(&self) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM ws_connections WHERE node = $1")
            .bind(&*self.node)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The live node that holds the connection `id` of `app`, if any.
    pub async fn socket_node(&self, app: &str, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT s.node FROM ws_connections s JOIN nodes n ON n.id = s.node
             WHERE s.id = $1 AND s.app = $2 AND n.seen_at > $3",
        )
        .bind(id)
        .bind(app)
        .bind(live_since())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The connections of `app` held by live nodes, oldest first, at most
    /// `limit`.
    pub async fn sockets_of(&self, app: &str, limit: i64) -> Result<Vec<SocketRow>> {
        let rows = sqlx::query(
            "SELECT s.id, s.app, s.node, s.route, s.path, s.opened_at
             FROM ws_connections s JOIN nodes n ON n.id = s.node
             WHERE s.app = $1 AND n.seen_at > $2 ORDER BY s.opened_at, s.id LIMIT $3",
        )
        .bind(app)
        .bind(live_since())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        use sqlx::Row;
        rows.iter()
            .map(|r| {
                Ok(SocketRow {
                    id: r.try_get("id")?,
                    app: r.try_get("app")?,
                    node: r.try_get("node")?,
                    route: r.try_get("route")?,
                    path: r.try_get("path")?,
                    opened_at_us: r.try_get("opened_at")?,
                })
            })
            .collect()
    }

    /// Sends `payload` (an operation of `app`) with `header` (which must
    /// not contain `|`) to every node listening on [`RELAY_CHANNEL`], as
    /// `HEADER|PAYLOAD` or, past [`MAX_INLINE_PAYLOAD`], as `HEADER|#ID`
    /// with the payload in `ws_relay`.
    pub async fn relay(&self, app: &str, header: &str, payload: &str) -> Result<()> {
        if header.len() + 1 + payload.len() <= MAX_INLINE_PAYLOAD && !payload.starts_with('#') {
            let n = format!("{header}|{payload}");
            return crate::cluster::notify(&self.pool, RELAY_CHANNEL, &n).await;
        }
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO ws_relay (app, payload, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(app)
        .bind(payload)
        .bind(crate::now_us())
        .fetch_one(&mut *tx)
        .await?;
        crate::cluster::notify(&mut *tx, RELAY_CHANNEL, &format!("{header}|#{id}")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The payload a notification's body (after its header) stands for:
    /// itself, or the row it names (`None`: already removed).
    pub async fn relayed(&self, body: &str) -> Result<Option<String>> {
        let Some(id) = body.strip_prefix('#') else {
            return Ok(Some(body.to_string()));
        };
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        Ok(
            sqlx::query_scalar("SELECT payload FROM ws_relay WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Removes relayed operations older than [`RELAY_KEEP`], and the
    /// connections of nodes not seen for `gone_for` (a node that never
    /// came back cannot forget its own).
    pub async fn purge_relayed(&self, gone_for: Duration) -> Result<u64> {
        let relayed = sqlx::query("DELETE FROM ws_relay WHERE created_at < $1")
            .bind(crate::now_us() - RELAY_KEEP.as_micros() as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let orphans = sqlx::query(
            "DELETE FROM ws_connections WHERE node NOT IN (SELECT id FROM nodes WHERE seen_at > $1)",
        )
        .bind(crate::now_us() - gone_for.as_micros() as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(relayed + orphans)
    }

    /// Calls `on` with every notification on [`RELAY_CHANNEL`] (`None`
    /// each time listening (re)starts, when some may have been missed),
    /// for as long as it returns true. Only on PostgreSQL: elsewhere `on`
    /// is never called.
    pub fn listen_relay(&self, on: impl FnMut(Option<&str>) -> bool + Send + 'static) {
        if let Some(url) = self.url.clone() {
            crate::cluster::spawn_listener(url, RELAY_CHANNEL, on);
        }
    }
}

/// Heartbeats after this (µs since the epoch) are a live node's.
fn live_since() -> i64 {
    crate::now_us() - NODE_LIVE_FOR.as_micros() as i64
}
