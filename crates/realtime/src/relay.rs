//! Nodes sharing a PostgreSQL database reach each other's connections:
//! each node records the connections it holds (`ws_connections`), an
//! operation on a connection held elsewhere is relayed to its node, and a
//! publish to every node, each fanning it out to its own subscribers.
//! Relayed operations travel as JSON on one notification channel
//! (`nimbus_store::RELAY_CHANNEL`), the large ones through a table.
//!
//! A relayed send or close is answered once it is relayed: whether the
//! connection took it is known only on its node (a slow consumer there is
//! cut off as it would be locally). A node applies what it receives in the
//! order it was committed.
//!
//! What one node costs the others is bounded: a notification's header
//! names its sender and addressee, so a node drops what is not for it
//! before reading or parsing anything; each app may relay at most
//! [`RELAY_KIB_PER_SEC`] from a node (past it, the operation is refused as
//! unavailable); and at most [`RELAY_BACKLOG`] notifications wait to be
//! applied (past that they are dropped, counted and logged).

use crate::{Conn, ConnectionInfo, Outgoing, Realtime};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use nimbus_store::{SocketRow, Store};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often each node removes the relayed operations nobody needs now.
const PURGE_EVERY: Duration = Duration::from_secs(30);

/// A node not seen for this long is gone: its connections' rows are
/// removed.
const NODE_GONE_AFTER: Duration = Duration::from_secs(600);

/// What one app may relay from one node, in KiB per second (and at once).
pub const RELAY_KIB_PER_SEC: u32 = 8 << 10;

/// Notifications received and not applied yet, at most.
pub const RELAY_BACKLOG: usize = 10_000;

/// An operation relayed to other nodes.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    Send {
        id: String,
        msg: Wire,
    },
    Close {
        id: String,
        code: u16,
        reason: String,
    },
    Subscribe {
        id: String,
        channel: String,
    },
    Unsubscribe {
        id: String,
        channel: String,
    },
    Publish {
        channel: String,
        msg: Wire,
    },
}

impl Op {
    pub(crate) fn send(id: &str, msg: &Outgoing) -> Op {
        Op::Send {
            id: id.to_string(),
            msg: Wire::from(msg),
        }
    }

    pub(crate) fn publish(channel: &str, msg: &Outgoing) -> Op {
        Op::Publish {
            channel: channel.to_string(),
            msg: Wire::from(msg),
        }
    }
}

/// A message as relayed: text as it is, binary in base64.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Wire {
    Text(String),
    Binary(String),
}

impl From<&Outgoing> for Wire {
    fn from(m: &Outgoing) -> Wire {
        match m {
            Outgoing::Text(t) => Wire::Text(t.to_string()),
            Outgoing::Binary(b) => Wire::Binary(B64.encode(b)),
        }
    }
}

impl Wire {
    fn outgoing(self) -> Option<Outgoing> {
        Some(match self {
            Wire::Text(t) => Outgoing::text(t),
            Wire::Binary(b) => Outgoing::Binary(Bytes::from(B64.decode(b).ok()?)),
        })
    }
}

/// One relayed operation: who sent it, to which node (`None`: every
/// other), for which app.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    app: String,
    op: Op,
}

/// This node's part in the cluster.
pub(crate) struct Relay {
    store: Store,
    node: Arc<str>,
    /// Each app's budget of relayed KiB.
    budget: DefaultKeyedRateLimiter<Arc<str>>,
}

/// The header of a notification from `from` to `to` (`*`: every node).
fn header(from: &str, to: Option<&str>) -> String {
    format!("{from}>{}", to.unwrap_or("*"))
}

/// A notification's body, if it is for `node` and not from it.
fn for_node<'a>(notification: &'a str, node: &str) -> Option<&'a str> {
    let (header, body) = notification.split_once('|')?;
    let (from, to) = header.split_once('>')?;
    (from != node && (to == "*" || to == node)).then_some(body)
}

impl Relay {
    /// Joins `rt` to the nodes sharing `store` (see
    /// [`Realtime::join_cluster`]).
    pub(crate) async fn join(rt: &Arc<Realtime>, store: Store) -> anyhow::Result<()> {
        let forgotten = store.forget_own_sockets().await?;
        if forgotten > 0 {
            tracing::info!(
                forgotten,
                "forgot WebSocket connections this node held before it stopped"
            );
        }
        let node: Arc<str> = store.node_id().into();
        let kib = NonZeroU32::new(RELAY_KIB_PER_SEC).expect("nonzero");
        let relay = Relay {
            node: node.clone(),
            store: store.clone(),
            budget: RateLimiter::keyed(Quota::per_second(kib).allow_burst(kib)),
        };
        if rt.relay.set(relay).is_err() {
            anyhow::bail!("this node has already joined the cluster's WebSocket relay");
        }
        let (tx, mut rx) = mpsc::channel::<String>(RELAY_BACKLOG);
        let (dropped, mut started) = (AtomicU64::new(0), false);
        store.listen_relay(move |n| {
            match n {
                Some(n) => {
                    let Some(body) = for_node(n, &node) else {
                        return !tx.is_closed();
                    };
                    if tx.try_send(body.to_string()).is_err() && !tx.is_closed() {
                        let d = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        metrics::counter!("nimbus_websocket_relay_dropped_total").increment(1);
                        if d.is_power_of_two() {
                            tracing::warn!(dropped = d, "WebSocket operations relayed from other nodes come faster than this node applies them: dropped");
                        }
                    }
                }
                None if started => tracing::warn!(
                    "listening for WebSocket operations relayed from other nodes restarted: those relayed meanwhile are lost"
                ),
                None => started = true,
            }
            !tx.is_closed()
        });
        let weak = Arc::downgrade(rt);
        let stop = rt.stop.clone();
        tokio::spawn(async move {
            loop {
                let n = tokio::select! {
                    _ = stop.cancelled() => return,
                    n = rx.recv() => n,
                };
                let (Some(n), Some(rt)) = (n, weak.upgrade()) else {
                    return;
                };
                if let Some(relay) = rt.relay.get() {
                    relay.apply(&rt, &n).await;
                }
            }
        });
        let stop = rt.stop.clone();
        let weak_rt = Arc::downgrade(rt);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(PURGE_EVERY) => {}
                }
                if let Err(e) = store.purge_relayed(NODE_GONE_AFTER).await {
                    tracing::warn!(error = %e, "removing old relayed WebSocket operations failed");
                }
                if let Some(rt) = weak_rt.upgrade()
                    && let Some(relay) = rt.relay.get()
                {
                    relay.budget.retain_recent();
                }
            }
        });
        Ok(())
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Tells the other nodes this one holds `conn` (a failure is logged:
    /// the connection works, but only through this node).
    pub(crate) async fn record(&self, conn: &Conn) {
        let row = SocketRow {
            id: conn.id.to_string(),
            app: conn.app.to_string(),
            node: self.node.to_string(),
            route: conn.route.pattern.to_string(),
            path: conn.path.clone(),
            opened_at_us: conn.opened_at_ms as i64 * 1000,
        };
        if let Err(e) = self.store.socket_opened(&row).await {
            tracing::warn!(error = %e, connection = %conn.id, "recording a WebSocket connection failed: other nodes cannot reach it");
        }
    }

    /// Tells the other nodes this one no longer holds `id` (in the
    /// background: it is called as the connection's place is freed).
    pub(crate) fn forget(&self, id: Arc<str>) {
        let store = self.store.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = store.socket_closed(&id).await {
                    tracing::warn!(error = %e, connection = %id, "forgetting a closed WebSocket connection failed");
                }
            });
        }
    }

    /// The live node that holds the connection `id` of `app`.
    pub(crate) async fn holder(&self, app: &str, id: &str) -> Result<Option<String>, String> {
        self.store
            .socket_node(app, id)
            .await
            .map_err(|e| format!("finding the node that holds connection {id:?} failed: {e}"))
    }

    /// The connections of `app` other live nodes hold.
    pub(crate) async fn listed(
        &self,
        app: &str,
        limit: usize,
    ) -> Result<Vec<ConnectionInfo>, String> {
        let rows = self
            .store
            .sockets_of(app, limit as i64)
            .await
            .map_err(|e| format!("listing the cluster's connections failed: {e}"))?;
        Ok(rows
            .into_iter()
            .filter(|r| *r.node != *self.node)
            .map(|r| ConnectionInfo {
                id: r.id,
                node: r.node,
                route: r.route,
                path: r.path,
                opened_at_ms: (r.opened_at_us / 1000) as u64,
                messages_in: None,
                messages_out: None,
                channels: None,
            })
            .collect())
    }

    /// Relays `op` of `app` to the node `to`, or to every other, within
    /// the app's budget.
    pub(crate) async fn send(&self, to: Option<String>, app: &str, op: Op) -> Result<(), String> {
        let header = header(&self.node, to.as_deref());
        let envelope = Envelope {
            from: self.node.to_string(),
            to,
            app: app.to_string(),
            op,
        };
        let payload = serde_json::to_string(&envelope).map_err(|e| e.to_string())?;
        let kib = NonZeroU32::new((payload.len() / 1024) as u32 + 1).expect("nonzero");
        if !matches!(self.budget.check_key_n(&Arc::from(app), kib), Ok(Ok(()))) {
            return Err(format!(
                "app {app:?} relays more than {} MiB/s of WebSocket messages to other nodes from this one: send less, or smaller messages",
                RELAY_KIB_PER_SEC >> 10
            ));
        }
        self.store
            .relay(app, &header, &payload)
            .await
            .map_err(|e| format!("relaying to the other nodes failed: {e}; retry"))
    }

    /// Applies a notification's body (for this node, from another).
    async fn apply(&self, rt: &Realtime, body: &str) {
        let payload = match self.store.relayed(body).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::warn!(
                    "a relayed WebSocket operation was removed before this node read it: it is lost"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading a relayed WebSocket operation failed: it is lost");
                return;
            }
        };
        let e: Envelope = match serde_json::from_str(&payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "a relayed WebSocket operation is not understood: ignored");
                return;
            }
        };
        // The header said so; the envelope must agree.
        if *e.from == *self.node || e.to.as_deref().is_some_and(|to| to != &*self.node) {
            return;
        }
        let limit = rt.config.send_buffer_bytes;
        let app = e.app.as_str();
        let too_large = |m: &Outgoing| {
            // Another node may keep larger send buffers: what would cut
            // off a client here is refused instead.
            let over = m.len() > limit;
            if over {
                tracing::debug!(
                    app,
                    len = m.len(),
                    "a relayed message is over this node's send buffer: not sent"
                );
            }
            over
        };
        // Whatever fails here was the connection's fate on its node: a
        // closed connection, a slow consumer (cut off as a local send
        // would), a subscription past the limit.
        let r = match e.op {
            Op::Send { id, msg } => match (rt.find(app, &id), msg.outgoing()) {
                (Ok(_), Some(m)) if too_large(&m) => Ok(()),
                (Ok(c), Some(m)) => c.send(m, limit).map(|_| ()),
                (Err(e), _) => Err(e),
                (_, None) => Ok(()),
            },
            Op::Close { id, code, reason } => {
                rt.find(app, &id).map(|c| c.close(code.into(), reason))
            }
            Op::Subscribe { id, channel } => rt.subscribe_local(app, &id, &channel),
            Op::Unsubscribe { id, channel } => rt.unsubscribe_local(app, &id, &channel),
            Op::Publish { channel, msg } => {
                if let Some(m) = msg.outgoing().filter(|m| !too_large(m)) {
                    rt.publish_local(app, &channel, m);
                }
                Ok(())
            }
        };
        if let Err(e) = r {
            tracing::debug!(app, error = %e, "a relayed WebSocket operation did nothing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_survives_the_wire() {
        for op in [
            Op::send("c1", &Outgoing::text("héllo")),
            Op::send(
                "c1",
                &Outgoing::Binary(Bytes::from_static(&[0, 159, 146, 150])),
            ),
            Op::publish("room:1", &Outgoing::text("{\"a\":1}")),
            Op::Close {
                id: "c2".into(),
                code: 4000,
                reason: "bye".into(),
            },
            Op::Subscribe {
                id: "c3".into(),
                channel: "x".into(),
            },
        ] {
            let e = Envelope {
                from: "n1".into(),
                to: None,
                app: "a".into(),
                op,
            };
            let text = serde_json::to_string(&e).unwrap();
            let back: Envelope = serde_json::from_str(&text).unwrap();
            assert_eq!(back.op, e.op, "{text}");
        }
        let n = format!("{}|{{}}", header("n1", Some("n2")));
        assert_eq!(for_node(&n, "n2"), Some("{}"));
        assert_eq!(for_node(&n, "n3"), None, "addressed to another node");
        assert_eq!(for_node(&n, "n1"), None, "its own");
        let all = format!("{}|#7", header("n1", None));
        assert_eq!(for_node(&all, "n3"), Some("#7"));
        assert_eq!(for_node("garbage", "n3"), None);
        let bin = Wire::from(&Outgoing::Binary(Bytes::from_static(&[0, 255])));
        assert_eq!(
            bin.outgoing(),
            Some(Outgoing::Binary(Bytes::from_static(&[0, 255])))
        );
        assert_eq!(Wire::Binary("not base64!".into()).outgoing(), None);
    }
}
