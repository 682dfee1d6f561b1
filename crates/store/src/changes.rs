//! Waiting for a document to change: the writes this node makes wake the
//! readers waiting on that document (`Store::doc_watch`). In a cluster
//! (PostgreSQL) every node also announces the documents it wrote on the
//! `nimbus_docs` channel (a background task, in batches: never on the
//! write's path) and wakes its own waiters on the others' announcements.
//! Whatever is missed is caught by re-reading at least every [`RECHECK`].
//! On a single node, a write that nobody waits on costs one atomic load
//! here.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a waiter re-reads its document even without a wake-up.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

type Key = (String, String, String);

/// The channel on which nodes announce the documents they wrote.
pub(crate) const DOCS_CHANNEL: &str = "nimbus_docs";

/// Who waits on which document.
#[derive(Default)]
pub(crate) struct DocChanges {
    waiting: Mutex<HashMap<Key, Arc<Notify>>>,
    /// Waiters in all: a write checks this before taking the lock.
    count: AtomicUsize,
    /// In a cluster: where this node's writes go to be announced.
    announce: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Key>>,
}

/// Separates app, collection and id in an announcement (none of them can
/// contain it: names and ids are checked).
const SEP: char = '\u{1f}';

/// One waiter's registration, removed when dropped.
pub(crate) struct Waiter<'a> {
    changes: &'a DocChanges,
    key: Key,
    notify: Option<Arc<Notify>>,
}

impl DocChanges {
    /// Registers a waiter on (app, collection, id).
    pub(crate) fn wait(&self, app: &str, coll: &str, id: &str) -> Waiter<'_> {
        let key = (app.to_string(), coll.to_string(), id.to_string());
        let notify = self
            .waiting
            .lock()
            .expect("doc waiters lock")
            .entry(key.clone())
            .or_default()
            .clone();
        self.count.fetch_add(1, Ordering::SeqCst);
        Waiter {
            changes: self,
            key,
            notify: Some(notify),
        }
    }

    /// A document was just written or deleted by this node: wakes its
    /// waiters here and, in a cluster, on the other nodes.
    pub(crate) fn written(&self, app: &str, coll: &str, id: &str) {
        if let Some(tx) = self.announce.get() {
            let _ = tx.send((app.to_string(), coll.to_string(), id.to_string()));
        }
        self.changed(app, coll, id);
    }

    /// Announces this node's writes on PostgreSQL and wakes its waiters on
    /// every node's announcements, until the store is dropped.
    pub(crate) fn start_cluster(self: &Arc<Self>, pool: sqlx::AnyPool, url: Arc<str>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Key>();
        if self.announce.set(tx).is_err() {
            return;
        }
        // Publisher: whatever accumulated, in notifications of at most
        // ~7 KB (PostgreSQL's payload limit is 8000 bytes).
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut keys = vec![first];
                while let Ok(k) = rx.try_recv() {
                    keys.push(k);
                }
                keys.sort();
                keys.dedup();
                let mut payload = String::new();
                for (i, (a, c, d)) in keys.iter().enumerate() {
                    let _ = writeln!(payload, "{a}{SEP}{c}{SEP}{d}");
                    if payload.len() > 7000 || i + 1 == keys.len() {
                        let sent = crate::cluster::notify(
                            &pool,
                            DOCS_CHANNEL,
                            &std::mem::take(&mut payload),
                        )
                        .await;
                        if let Err(e) = sent {
                            tracing::warn!(error = %e, "announcing document writes failed; other nodes' watches re-read within a second");
                        }
                    }
                }
            }
        });
        // Listener: wakes this node's waiters on every node's writes.
        let changes = Arc::downgrade(self);
        crate::cluster::spawn_listener(url, DOCS_CHANNEL, move |payload| {
            let Some(changes) = changes.upgrade() else {
                return false;
            };
            for line in payload.unwrap_or_default().lines() {
                let mut parts = line.splitn(3, SEP);
                if let (Some(a), Some(c), Some(d)) = (parts.next(), parts.next(), parts.next()) {
                    changes.changed(a, c, d);
                }
            }
            true
        });
    }

    /// Wakes this node's waiters on a document that was just written or deleted.
    pub(crate) fn changed(&self, app: &str, coll: &str, id: &str) {
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let key = (app.to_string(), coll.to_string(), id.to_string());
        if let Some(n) = self.waiting.lock().expect("doc waiters lock").get(&key) {
            n.notify_waiters();
        }
    }
}

impl Waiter<'_> {
    /// What wakes this waiter.
    pub(crate) fn notify(&self) -> &Notify {
        self.notify.as_deref().expect("set until dropped")
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiting = self.changes.waiting.lock().expect("doc waiters lock");
        // Handles are cloned and dropped only under the lock, so a count
        // of one (the map's own) means nobody else waits on this document.
        drop(self.notify.take());
        if waiting
            .get(&self.key)
            .is_some_and(|n| Arc::strong_count(n) == 1)
        {
            waiting.remove(&self.key);
        }
        self.changes.count.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_wakes_the_waiters_of_that_document_only() {
        let changes = DocChanges::default();
        let a = changes.wait("app", "games", "1");
        let b = changes.wait("app", "games", "1");
        let other = changes.wait("app", "games", "2");
        let mut woke_a = Box::pin(a.notify().notified());
        let mut woke_b = Box::pin(b.notify().notified());
        let mut woke_other = Box::pin(other.notify().notified());
        woke_a.as_mut().enable();
        woke_b.as_mut().enable();
        woke_other.as_mut().enable();
        changes.changed("app", "games", "1");
        let second = Duration::from_secs(1);
        tokio::time::timeout(second, woke_a.as_mut())
            .await
            .expect("a woke");
        tokio::time::timeout(second, woke_b.as_mut())
            .await
            .expect("b woke");
        let quiet = tokio::time::timeout(Duration::from_millis(20), woke_other.as_mut()).await;
        assert!(
            quiet.is_err(),
            "a write to games/1 woke the waiter of games/2"
        );
        drop((woke_a, woke_b, woke_other));
        drop((a, b, other));
        assert!(
            changes.waiting.lock().unwrap().is_empty(),
            "no registration outlives its waiter"
        );
        assert_eq!(changes.count.load(Ordering::SeqCst), 0);
    }
}
