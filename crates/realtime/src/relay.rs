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

use crate::{Conn, ConnectionInfo, Outgoing, Realtime};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use nimbus_store::{SocketRow, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often each node removes the relayed operations nobody needs now.
const PURGE_EVERY: Duration = Duration::from_secs(30);

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
        let relay = Relay {
            node: store.node_id().into(),
            store: store.clone(),
        };
        if rt.relay.set(relay).is_err() {
            anyhow::bail!("this node has already joined the cluster's WebSocket relay");
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        store.listen_relay(move |n| {
            if let Some(n) = n {
                let _ = tx.send(n.to_string());
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
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(PURGE_EVERY) => {}
                }
                if let Err(e) = store.purge_relayed().await {
                    tracing::warn!(error = %e, "removing old relayed WebSocket operations failed");
                }
            }
        });
        Ok(())
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Tells the other nodes this one holds `conn`.
    pub(crate) async fn record(&self, conn: &Conn) -> bool {
        let row = SocketRow {
            id: conn.id.to_string(),
            app: conn.app.to_string(),
            node: self.node.to_string(),
            route: conn.route.pattern.to_string(),
            path: conn.path.clone(),
            opened_at_us: conn.opened_at_ms as i64 * 1000,
        };
        match self.store.socket_opened(&row).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, connection = %conn.id, "recording a WebSocket connection failed: other nodes cannot reach it");
                false
            }
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

    /// Relays `op` of `app` to the node `to`, or to every other.
    pub(crate) async fn send(&self, to: Option<String>, app: &str, op: Op) -> Result<(), String> {
        let envelope = Envelope {
            from: self.node.to_string(),
            to,
            app: app.to_string(),
            op,
        };
        let payload = serde_json::to_string(&envelope).map_err(|e| e.to_string())?;
        self.store.relay(app, &payload).await.map_err(|e| {
            format!("relaying to the node that holds the connection failed: {e}; retry")
        })
    }

    /// Applies a notification another node sent.
    async fn apply(&self, rt: &Realtime, notification: &str) {
        let payload = match self.store.relayed(notification).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
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
        if *e.from == *self.node || e.to.as_deref().is_some_and(|to| to != &*self.node) {
            return;
        }
        let limit = rt.config.send_buffer_bytes;
        let app = e.app.as_str();
        // Whatever fails here was the connection's fate on its node: a
        // closed connection, a slow consumer (cut off as a local send
        // would), a subscription past the limit.
        let r = match e.op {
            Op::Send { id, msg } => match (rt.find(app, &id), msg.outgoing()) {
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
                if let Some(m) = msg.outgoing() {
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
        let bin = Wire::from(&Outgoing::Binary(Bytes::from_static(&[0, 255])));
        assert_eq!(
            bin.outgoing(),
            Some(Outgoing::Binary(Bytes::from_static(&[0, 255])))
        );
        assert_eq!(Wire::Binary("not base64!".into()).outgoing(), None);
    }
}
