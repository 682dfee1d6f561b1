//! What nodes sharing one database tell each other: a generation counter
//! bumped by every change to cluster-wide state that nodes keep in memory
//! (which revision of each app is active, configuration and secrets, API
//! keys, signing keys). A node compares it with the one it last loaded and
//! reloads when it moved. On PostgreSQL a bump also sends `NOTIFY
//! nimbus_cluster`, so listening nodes reload at once; polling the counter
//! is the fallback that bounds the delay when a notification is missed
//! (a dropped LISTEN connection, a node that was starting).
//!
//! The bump runs in the change's own transaction, with its `NOTIFY`,
//! which PostgreSQL sends at commit: a node that dies mid-change cannot
//! commit a change without its announcement. [`Store::follow_cluster`]
//! follows the counter; `spawn_listener` is the one LISTEN loop (also
//! used by `changes.rs`). The `nodes` table holds heartbeats: a node is
//! live for [`NODE_LIVE_FOR`] after its last one, and the live nodes split
//! cluster-wide concurrency limits between them.

use crate::{Backend, Result, Store};
use std::time::Duration;

/// The channel of the notifications.
pub const CLUSTER_CHANNEL: &str = "nimbus_cluster";

/// A node is live while its last heartbeat is younger than this.
pub const NODE_LIVE_FOR: Duration = Duration::from_secs(5);

/// A node of the cluster, as its heartbeats tell.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRow {
    /// Its id (the data dir's `node-id`).
    pub id: String,
    /// Where it serves.
    pub url: String,
    /// µs since the epoch.
    pub started_at_us: i64,
    /// Its last heartbeat, µs since the epoch.
    pub seen_at_us: i64,
}

impl Store {
    /// Records that this node is alive (serving at `url`, up since
    /// `started_at_us`); returns the ids of the live nodes, in order.
    pub async fn heartbeat(&self, url: &str, started_at_us: i64) -> Result<Vec<String>> {
        let now = crate::now_us();
        sqlx::query(
            "INSERT INTO nodes (id, url, started_at, seen_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, started_at = excluded.started_at,
                seen_at = excluded.seen_at",
        )
        .bind(&*self.node)
        .bind(url)
        .bind(started_at_us)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT id FROM nodes WHERE seen_at > $1 ORDER BY id")
                .bind(now - NODE_LIVE_FOR.as_micros() as i64)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Every node that sent a heartbeat in the last hour, live or not.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>> {
        let rows = sqlx::query(
            "SELECT id, url, started_at, seen_at FROM nodes WHERE seen_at > $1 ORDER BY id",
        )
        .bind(crate::now_us() - 3_600_000_000)
        .fetch_all(&self.pool)
        .await?;
        use sqlx::Row;
        rows.iter()
            .map(|r| {
                Ok(NodeRow {
                    id: r.try_get("id")?,
                    url: r.try_get("url")?,
                    started_at_us: r.try_get("started_at")?,
                    seen_at_us: r.try_get("seen_at")?,
                })
            })
            .collect()
    }

    /// This node stops (gracefully): the others take over its share now
    /// rather than when its heartbeat grows old.
    pub async fn leave_cluster(&self) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(&*self.node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The cluster generation now.
    pub async fn generation(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM cluster_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Records, inside the transaction that changes cluster-wide state,
    /// that it changed: bumps the generation and, on PostgreSQL, queues a
    /// notification to the listening nodes, which PostgreSQL sends when the
    /// transaction commits. The change and its announcement commit
    /// together: a node that crashes between them cannot leave the others
    /// serving the old state with nothing to tell them otherwise.
    pub(crate) async fn cluster_changed(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        let generation: i64 = sqlx::query_scalar(
            "UPDATE cluster_state SET generation = generation + 1 WHERE id = 1 RETURNING generation",
        )
        .fetch_one(&mut *conn)
        .await?;
        if self.backend == Backend::Postgres {
            notify(conn, CLUSTER_CHANNEL, &generation.to_string()).await?;
        }
        Ok(())
    }

    /// Calls `reload` whenever the generation moves past `loaded` (the one
    /// the caller's state reflects), forever: woken by notifications on
    /// PostgreSQL, and by polling every `poll` on any backend. `reload`
    /// returning an error is logged and retried at the next wake-up.
    pub async fn follow_cluster<F, Fut>(&self, mut loaded: i64, poll: Duration, mut reload: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), String>>,
    {
        let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<()>(1);
        if let Some(url) = self.url.clone() {
            // Woken on every notification, and on every (re)connection:
            // something may have changed while not listening.
            spawn_listener(url, CLUSTER_CHANNEL, move |_| {
                let _ = wake_tx.try_send(());
                !wake_tx.is_closed()
            });
        }
        loop {
            tokio::select! {
                Some(()) = wake.recv() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            match self.generation().await {
                Ok(g) if g != loaded => match reload().await {
                    Ok(()) => loaded = g,
                    Err(e) => {
                        tracing::error!(error = %e, "reloading the cluster's state failed; retrying")
                    }
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the cluster generation failed"),
            }
        }
    }
}

/// Sends a notification on a PostgreSQL channel (inside a transaction:
/// when it commits).
pub(crate) async fn notify<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
    channel: &str,
    payload: &str,
) -> Result<()> {
    sqlx::query("SELECT 1 FROM (SELECT pg_notify($1, $2)) AS n")
        .bind(channel)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// Listens on a PostgreSQL channel for as long as `on` returns true,
/// reconnecting (after a second) whenever the connection fails. `on` gets
/// each notification's payload, and `None` each time listening (re)starts,
/// when notifications may have been missed.
pub(crate) fn spawn_listener(
    url: std::sync::Arc<str>,
    channel: &'static str,
    mut on: impl FnMut(Option<&str>) -> bool + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => match listener.listen(channel).await {
                    Ok(()) => {
                        if !on(None) {
                            return;
                        }
                        loop {
                            match listener.recv().await {
                                Ok(n) => {
                                    if !on(Some(n.payload())) {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "the LISTEN {channel} connection failed; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN {channel} failed; retrying"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN {channel}; retrying"),
            }
            if !on(None) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_change_reaches_a_follower() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        let g0 = s.generation().await.unwrap();
        let reloads = Arc::new(AtomicUsize::new(0));
        let follower = {
            let (s, reloads) = (s.clone(), reloads.clone());
            tokio::spawn(async move {
                s.follow_cluster(g0, Duration::from_millis(20), move || {
                    let reloads = reloads.clone();
                    async move {
                        reloads.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(reloads.load(Ordering::SeqCst), 0, "nothing changed yet");
        s.config_set("a", "", "K", "v", false).await.unwrap();
        assert!(s.generation().await.unwrap() > g0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while reloads.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "no reload");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(reloads.load(Ordering::SeqCst), 1, "one reload per change");
        follower.abort();
    }
}
