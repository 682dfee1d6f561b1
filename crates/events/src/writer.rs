//! The one task that writes events: operations sent from everywhere
//! (senders, consumers, schedules) are applied in batches, one transaction
//! per batch, so that thousands of small writes a second cost a few
//! commits. A sender waits only for its own batch to commit.

use nimbus_store::{EventOp, EventResult, Store};
use tokio::sync::{mpsc, oneshot};

struct Call {
    op: EventOp,
    reply: Option<oneshot::Sender<Result<EventResult, String>>>,
}

/// Handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Call>,
}

/// Largest batch applied in one transaction.
const MAX_BATCH: usize = 512;

impl Writer {
    pub(crate) fn spawn(store: Store) -> Writer {
        let (tx, rx) = mpsc::channel(16_384);
        tokio::spawn(run(store, rx));
        Writer { tx }
    }

    /// Applies `op` and waits until it is committed.
    pub(crate) async fn call(&self, op: EventOp) -> Result<EventResult, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Call {
                op,
                reply: Some(reply),
            })
            .await
            .map_err(|_| "the event writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the event writer has stopped".to_string())?
    }

    /// Applies `op` without waiting. Used for settlements: if one is lost
    /// (crash), the lease runs out and the message is delivered again.
    pub(crate) async fn submit(&self, op: EventOp) {
        let _ = self.tx.send(Call { op, reply: None }).await;
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Call>) {
    let mut buf = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
        let (ops, replies): (Vec<EventOp>, Vec<_>) = buf.drain(..).map(|c| (c.op, c.reply)).unzip();
        match store.apply_events(&ops).await {
            Ok(results) => {
                for (r, reply) in results.into_iter().zip(replies) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(r));
                    }
                }
            }
            Err(e) => {
                // One bad operation must not fail its neighbours: apply them
                // one by one, so only the failing ones report an error.
                tracing::warn!(error = %e, ops = ops.len(), "event batch failed; applying one by one");
                for (op, reply) in ops.into_iter().zip(replies) {
                    let result = store
                        .apply_events(std::slice::from_ref(&op))
                        .await
                        .map(|mut r| r.pop().expect("one result per op"))
                        .map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "event operation failed");
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
            }
        }
    }
}
