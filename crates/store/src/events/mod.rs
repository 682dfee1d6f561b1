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
//!
//! Modules: this one holds the operations' types; `batch` runs a batch of
//! them in one transaction ([`Store::apply_events`]); `leases` the
//! maintenance around leases (expiry, a restarted node's, pruning, the
//! next due time, schedule ticks); `inspect` reads messages and channel
//! depths and manages dead letters.

mod batch;
mod inspect;
mod leases;

pub(crate) use batch::insert_messages;
pub use inspect::{ChannelDepth, MessageRow};

use crate::{Result, StoreError};

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

fn headers_json(h: &[(String, String)]) -> String {
    serde_json::to_string(h).expect("strings serialize")
}

fn headers_of(s: &str) -> Result<Vec<(String, String)>> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("message headers: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, now_us};

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
