//! Stored bytes over time: each app's KV, document and object bytes are
//! sampled periodically (a task, every `--storage-sample-secs`) and
//! integrated into byte-seconds per app and hour (`storage_hourly`), from
//! which usage reports compute GB-hours (as object stores bill storage).
//!
//! Per-app storage quotas too: their limits (`storage_quotas`, set from
//! `nimbus up --quota-*-mb`) and the bytes counted against them
//! (`storage_usage`), which SQL triggers keep (see the crate doc). On
//! PostgreSQL an app's bytes are spread over 16 rows by key hash
//! (`hashtext(key) & 15`), so one app's concurrent writers rarely queue on
//! one row lock; writes committing at once may overshoot a quota by what
//! they add together. A completed multipart upload drops its parts in the
//! object's own transaction, so its bytes are not counted twice.

use crate::records::hour_start;
use crate::{Result, StorageKind, StorageQuotas, Store};
use sqlx::Row;
use std::collections::BTreeMap;
use std::time::Duration;

/// Bytes an app stores, by service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoredBytes {
    /// Keys and values of live (unexpired) KV entries.
    pub kv: i64,
    /// Document bodies (JSON text).
    pub docs: i64,
    /// Object bodies.
    pub objects: i64,
}

impl StoredBytes {
    /// Adds `other`'s bytes to these.
    pub fn add(&mut self, other: &StoredBytes) {
        self.kv += other.kv;
        self.docs += other.docs;
        self.objects += other.objects;
    }
}

/// Storage over a period, for one group (an app or a day).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StorageRow {
    /// The group: an app, or a day (`YYYY-MM-DD`, UTC).
    pub key: String,
    /// KV bytes × seconds held.
    pub kv_byte_seconds: i64,
    /// Document bytes × seconds held.
    pub doc_byte_seconds: i64,
    /// Object bytes × seconds held.
    pub object_byte_seconds: i64,
    /// Bytes stored at the latest sample (per app; summed per day).
    pub stored: StoredBytes,
}

impl Store {
    /// Sets the per-app storage quotas every node enforces (they live in
    /// the database, so the last node started decides: give every node
    /// the same `--quota-*-mb`). Writes already past a new, lower quota
    /// stay; the next growing write of that app is refused.
    pub async fn set_storage_quotas(&self, quotas: &StorageQuotas) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for kind in StorageKind::ALL {
            match quotas.of(kind) {
                Some(max) => sqlx::query(
                    "INSERT INTO storage_quotas (kind, max_bytes) VALUES ($1, $2)
                     ON CONFLICT (kind) DO UPDATE SET max_bytes = excluded.max_bytes",
                )
                .bind(kind.name())
                .bind(i64::try_from(max).unwrap_or(i64::MAX)),
                None => sqlx::query("DELETE FROM storage_quotas WHERE kind = $1").bind(kind.name()),
            }
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The quotas in force.
    pub async fn storage_quotas(&self) -> Result<StorageQuotas> {
        let mut q = StorageQuotas::default();
        for r in sqlx::query("SELECT kind, max_bytes FROM storage_quotas")
            .fetch_all(&self.pool)
            .await?
        {
            let max = u64::try_from(r.try_get::<i64, _>("max_bytes")?).ok();
            match StorageKind::named(&r.try_get::<String, _>("kind")?) {
                Some(StorageKind::Kv) => q.kv = max,
                Some(StorageKind::Docs) => q.docs = max,
                Some(StorageKind::Objects) => q.objects = max,
                None => {}
            }
        }
        Ok(q)
    }

    /// What an app's quotas count now: KV entries (expired ones until they
    /// are purged), document bodies, objects and unfinished uploads' parts.
    pub async fn quota_usage(&self, app: &str) -> Result<StoredBytes> {
        let mut out = StoredBytes::default();
        for r in sqlx::query(
            "SELECT kind, CAST(SUM(bytes) AS BIGINT) AS n FROM storage_usage WHERE app = $1 GROUP BY kind",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await?
        {
            let n: i64 = r.try_get("n")?;
            match StorageKind::named(&r.try_get::<String, _>("kind")?) {
                Some(StorageKind::Kv) => out.kv = n,
                Some(StorageKind::Docs) => out.docs = n,
                Some(StorageKind::Objects) => out.objects = n,
                None => {}
            }
        }
        Ok(out)
    }

    /// What every app stores now (apps storing nothing included).
    pub async fn stored_bytes(&self) -> Result<BTreeMap<String, StoredBytes>> {
        let mut out: BTreeMap<String, StoredBytes> = BTreeMap::new();
        for r in sqlx::query("SELECT name FROM apps")
            .fetch_all(&self.pool)
            .await?
        {
            out.entry(r.try_get("name")?).or_default();
        }
        let now = crate::now_us();
        type Field = fn(&mut StoredBytes) -> &mut i64;
        let queries: [(&str, Field); 3] = [
            (
                "SELECT app, CAST(SUM(OCTET_LENGTH(key) + OCTET_LENGTH(value)) AS BIGINT) AS n FROM kv
                 WHERE expires_at IS NULL OR expires_at > $1 GROUP BY app",
                |b| &mut b.kv,
            ),
            (
                // A JSONB body is measured as its text, as SQLite stores it.
                &format!(
                    "SELECT app, CAST(SUM(OCTET_LENGTH({})) AS BIGINT) AS n FROM docs WHERE $1 = $1 GROUP BY app",
                    match self.backend {
                        crate::Backend::Sqlite => "body",
                        crate::Backend::Postgres => "CAST(body AS TEXT)",
                    }
                ),
                |b| &mut b.docs,
            ),
            (
                // Noncurrent versions are stored bytes too.
                "SELECT b.app AS app, CAST(SUM(o.size) AS BIGINT) AS n FROM
                   (SELECT bucket, size FROM objects UNION ALL SELECT bucket, size FROM object_versions) o
                 JOIN buckets b ON b.name = o.bucket WHERE $1 = $1 GROUP BY b.app",
                |b| &mut b.objects,
            ),
        ];
        for (sql, field) in queries {
            for r in sqlx::query(sql).bind(now).fetch_all(&self.pool).await? {
                let n: Option<i64> = r.try_get("n")?;
                *field(out.entry(r.try_get("app")?).or_default()) = n.unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// Takes one sample at `now_us`: every app's stored bytes, counted as
    /// held for `held` (the time since the previous sample), into the
    /// app's hour.
    pub async fn sample_storage(&self, now_us: i64, held: Duration) -> Result<()> {
        let bytes = self.stored_bytes().await?;
        let hour = hour_start(now_us);
        let held_ms = held.as_millis().min(i64::MAX as u128) as i128;
        let byte_seconds = |b: i64| (b as i128 * held_ms / 1000).min(i64::MAX as i128) as i64;
        let mut tx = self.pool.begin().await?;
        for (app, b) in &bytes {
            sqlx::query(
                "INSERT INTO storage_hourly (app, hour, kv_byte_seconds, doc_byte_seconds,
                    object_byte_seconds, kv_bytes, doc_bytes, object_bytes, sampled_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (app, hour) DO UPDATE SET
                    kv_byte_seconds = storage_hourly.kv_byte_seconds + excluded.kv_byte_seconds,
                    doc_byte_seconds = storage_hourly.doc_byte_seconds + excluded.doc_byte_seconds,
                    object_byte_seconds = storage_hourly.object_byte_seconds + excluded.object_byte_seconds,
                    kv_bytes = excluded.kv_bytes, doc_bytes = excluded.doc_bytes,
                    object_bytes = excluded.object_bytes, sampled_at = excluded.sampled_at",
            )
            .bind(app)
            .bind(hour)
            .bind(byte_seconds(b.kv))
            .bind(byte_seconds(b.docs))
            .bind(byte_seconds(b.objects))
            .bind(b.kv)
            .bind(b.docs)
            .bind(b.objects)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Storage from the hour containing `since_us` on, of one app or all,
    /// per app (`by_day` false) or per day.
    pub async fn storage_usage(
        &self,
        app: Option<&str>,
        since_us: i64,
        by_day: bool,
    ) -> Result<Vec<StorageRow>> {
        let since = hour_start(since_us);
        let rows = sqlx::query(
            "SELECT app, hour, kv_byte_seconds, doc_byte_seconds, object_byte_seconds,
                kv_bytes, doc_bytes, object_bytes
             FROM storage_hourly WHERE hour >= $1 AND ($2 IS NULL OR app = $2)
             ORDER BY hour",
        )
        .bind(since)
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        // Per group: sums of byte-seconds; stored bytes at each app's latest
        // sample in the group, summed over its apps.
        let mut groups: BTreeMap<String, (StorageRow, BTreeMap<String, StoredBytes>)> =
            BTreeMap::new();
        for r in rows {
            let app: String = r.try_get("app")?;
            let hour: i64 = r.try_get("hour")?;
            let key = if by_day { day(hour) } else { app.clone() };
            let (g, latest) = groups.entry(key.clone()).or_default();
            g.key = key;
            g.kv_byte_seconds += r.try_get::<i64, _>("kv_byte_seconds")?;
            g.doc_byte_seconds += r.try_get::<i64, _>("doc_byte_seconds")?;
            g.object_byte_seconds += r.try_get::<i64, _>("object_byte_seconds")?;
            latest.insert(
                app,
                StoredBytes {
                    kv: r.try_get("kv_bytes")?,
                    docs: r.try_get("doc_bytes")?,
                    objects: r.try_get("object_bytes")?,
                },
            );
        }
        Ok(groups
            .into_values()
            .map(|(mut g, latest)| {
                for b in latest.values() {
                    g.stored.add(b);
                }
                g
            })
            .collect())
    }
}

/// `YYYY-MM-DD` (UTC) of a time in µs since the epoch.
pub(crate) fn day(at_us: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(at_us.max(0) as u64);
    humantime::format_rfc3339(t).to_string()[..10].to_string()
}

/// `YYYY-MM-DDTHH:00Z` (UTC) of the hour containing a time in µs since the epoch.
pub(crate) fn hour(at_us: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(at_us.max(0) as u64);
    format!("{}:00Z", &humantime::format_rfc3339(t).to_string()[..13])
}

/// Samples stored bytes every `every` until the runtime ends, starting
/// now (the first sample only records the current bytes).
pub fn spawn_storage_sampler(store: Store, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = every.max(Duration::from_millis(100));
        // The first sample a moment after the node starts, not during its
        // start (a node's cold start is on a request's path); the held
        // time since the last sample is measured, so none is lost.
        let first = tokio::time::Instant::now() + every.min(Duration::from_secs(1));
        let mut tick = tokio::time::interval_at(first, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = crate::now_us();
            // In a cluster every node ticks; one takes each sample.
            let held = match store.claim_sample("storage", now, every / 2).await {
                Ok(Some(held)) => held,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "sampling stored bytes failed");
                    continue;
                }
            };
            if let Err(e) = store.sample_storage(now, held).await {
                tracing::error!(error = %e, "sampling stored bytes failed");
            }
        }
    })
}

impl Store {
    /// Claims the periodic job `name` at `now_us` for this node, unless
    /// some node did it less than `min_gap` ago; the time since it was last
    /// done (zero the first time), or `None` if it is not this node's turn.
    /// A compare-and-set on the last time: two nodes never both win.
    pub async fn claim_sample(
        &self,
        name: &str,
        now_us: i64,
        min_gap: Duration,
    ) -> Result<Option<Duration>> {
        let inserted = sqlx::query(
            "INSERT INTO samplers (name, at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_us)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Some(Duration::ZERO));
        }
        let last: i64 = sqlx::query_scalar("SELECT at FROM samplers WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        if now_us - last < min_gap.as_micros() as i64 {
            return Ok(None);
        }
        let won = sqlx::query("UPDATE samplers SET at = $1 WHERE name = $2 AND at = $3")
            .bind(now_us)
            .bind(name)
            .bind(last)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        Ok(won.then(|| Duration::from_micros((now_us - last).max(0) as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;
    use crate::records::HOUR_US;

    #[tokio::test]
    async fn samples_integrate_into_byte_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        store
            .kv_set("a", "s", "key", &[7u8; 97], None)
            .await
            .unwrap();
        store.kv_set("a", "s", "gone", b"x", Some(1)).await.unwrap();
        store
            .doc_put("a", "c", "d1", r#"{"n":1}"#, None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let bytes = store.stored_bytes().await.unwrap();
        // JSONB's text has a space after the colon.
        let doc = if store.backend() == crate::Backend::Postgres {
            8
        } else {
            7
        };
        assert_eq!(
            bytes["a"],
            StoredBytes {
                kv: 100,
                docs: doc,
                objects: 0
            },
            "expired entries do not count"
        );
        let t0 = 10 * HOUR_US + 5;
        store.sample_storage(t0, Duration::ZERO).await.unwrap();
        store
            .sample_storage(t0 + 1, Duration::from_secs(60))
            .await
            .unwrap();
        store
            .sample_storage(t0 + HOUR_US, Duration::from_secs(30))
            .await
            .unwrap();
        let rows = store.storage_usage(Some("a"), 0, false).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key, "a");
        assert_eq!(rows[0].kv_byte_seconds, 100 * 90);
        assert_eq!(rows[0].doc_byte_seconds, doc * 90);
        assert_eq!(rows[0].stored.kv, 100);
        let days = store.storage_usage(None, t0, true).await.unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].key, "1970-01-01");
        assert_eq!(days[0].doc_byte_seconds, doc * 90);
        // Nodes sharing the database take turns: one sample per period.
        let t = t0 + 2 * HOUR_US;
        let gap = Duration::from_secs(60);
        assert_eq!(
            store.claim_sample("s", t, gap).await.unwrap(),
            Some(Duration::ZERO)
        );
        assert_eq!(
            store.claim_sample("s", t + 1_000_000, gap).await.unwrap(),
            None
        );
        let other = store.clone().with_node_id("other");
        assert_eq!(
            other.claim_sample("s", t + 90_000_000, gap).await.unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            store.claim_sample("s", t + 90_000_001, gap).await.unwrap(),
            None
        );
        assert!(
            store
                .storage_usage(None, t0 + 2 * HOUR_US, false)
                .await
                .unwrap()
                .is_empty()
        );
    }

    fn refused<T: std::fmt::Debug>(r: Result<T>, kind: StorageKind) {
        match r {
            Err(StoreError::QuotaExceeded(k)) => assert_eq!(k, kind),
            other => panic!(
                "expected the {} quota to refuse, got {other:?}",
                kind.name()
            ),
        }
    }

    /// Every kind of write counts against its app's quota, in the same
    /// statement: a growing write past it is refused and changes nothing,
    /// shrinking and deleting always pass and free room, another app is
    /// unaffected, and a completed upload's parts stop counting as its
    /// object starts to.
    #[tokio::test]
    async fn quotas_refuse_growth_past_them() {
        use crate::{DocError, ObjectRow, PartRow, UploadRow};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.set_storage_quotas(&StorageQuotas {
            kv: Some(1000),
            docs: Some(1000),
            objects: Some(1000),
        })
        .await
        .unwrap();
        assert_eq!(s.storage_quotas().await.unwrap().kv, Some(1000));

        // KV: 1 + 600 bytes, then 1 + 400 more is too much.
        s.kv_set("a", "s", "k", &[1; 600], None).await.unwrap();
        refused(
            s.kv_set("a", "s", "j", &[1; 400], None).await,
            StorageKind::Kv,
        );
        assert_eq!(
            s.kv_get("a", "s", "j").await.unwrap(),
            None,
            "nothing written"
        );
        refused(
            s.kv_compare_and_swap("a", "s", "j", None, &[1; 400]).await,
            StorageKind::Kv,
        );
        // Another app has its own quota.
        s.kv_set("b", "s", "j", &[1; 900], None).await.unwrap();
        // Shrinking passes, and so does what then fits.
        s.kv_set("a", "s", "k", &[1; 100], None).await.unwrap();
        s.kv_set("a", "s", "j", &[1; 400], None).await.unwrap();
        assert_eq!(s.quota_usage("a").await.unwrap().kv, 101 + 401);
        assert!(s.kv_delete("a", "s", "j").await.unwrap());
        assert_eq!(s.quota_usage("a").await.unwrap().kv, 101);

        // Documents.
        let big = format!(r#"{{"t":"{}"}}"#, "x".repeat(700));
        s.doc_put("a", "c", "d1", &big, None).await.unwrap();
        match s.doc_put("a", "c", "d2", &big, None).await {
            Err(DocError::Store(StoreError::QuotaExceeded(StorageKind::Docs))) => {}
            other => panic!("expected the docs quota to refuse, got {other:?}"),
        }
        assert!(s.doc_get("a", "c", "d2").await.unwrap().is_none());
        assert!(s.doc_delete("a", "c", "d1").await.unwrap());
        s.doc_put("a", "c", "d2", &big, None).await.unwrap();

        // Objects, with the parts of an upload.
        s.create_bucket("bk", "a").await.unwrap().unwrap();
        let obj = |key: &str, size| ObjectRow {
            bucket: "bk".into(),
            key: key.into(),
            file: format!("f-{key}-{size}"),
            size,
            etag: "e".into(),
            content_type: None,
            metadata: vec![],
            last_modified_us: 1,
            version_id: String::new(),
            attrs: Default::default(),
        };
        s.put_object(&obj("o1", 500), &[]).await.unwrap();
        refused(
            s.put_object(&obj("o2", 501), &[]).await,
            StorageKind::Objects,
        );
        assert!(s.object("bk", "o2").await.unwrap().is_none());
        s.create_upload(&UploadRow {
            id: "u".into(),
            bucket: "bk".into(),
            key: "big".into(),
            content_type: None,
            metadata: vec![],
            attrs: Default::default(),
        })
        .await
        .unwrap();
        let part = |n, size| PartRow {
            part_number: n,
            file: format!("p{n}"),
            size,
            etag: "x".into(),
            checksum: None,
        };
        s.put_part("u", &part(1, 200)).await.unwrap();
        s.put_part("u", &part(2, 200)).await.unwrap();
        refused(s.put_part("u", &part(3, 200)).await, StorageKind::Objects);
        assert_eq!(s.quota_usage("a").await.unwrap().objects, 900);
        // The 400-byte object replaces its 400 bytes of parts: it fits.
        let done = s.complete_upload(&obj("big", 400), "u", &[]).await.unwrap();
        assert_eq!(done.freed, ["p1", "p2"]);
        assert!(s.upload("u").await.unwrap().is_none());
        assert_eq!(s.quota_usage("a").await.unwrap().objects, 900);
        // Noncurrent versions count: o1's 500 bytes stay when it is
        // overwritten in a versioned bucket, and go with their version.
        s.set_bucket_versioning("bk", true).await.unwrap();
        s.put_object(&obj("o1", 100), &[]).await.unwrap();
        assert_eq!(s.quota_usage("a").await.unwrap().objects, 1000);
        refused(s.put_object(&obj("o3", 1), &[]).await, StorageKind::Objects);
        let gone = s
            .delete_object("bk", "o1", Some(crate::NULL_VERSION), &[], false)
            .await
            .unwrap();
        assert_eq!(gone.freed, ["f-o1-500"]);
        assert_eq!(s.quota_usage("a").await.unwrap().objects, 500);
        // Over a lowered quota, a deletion in a versioned bucket (the
        // current version moving to the noncurrent ones) still passes.
        s.set_storage_quotas(&StorageQuotas {
            objects: Some(100),
            ..s.storage_quotas().await.unwrap()
        })
        .await
        .unwrap();
        let marker = s
            .delete_object("bk", "big", None, &[], false)
            .await
            .unwrap();
        assert!(marker.delete_marker);
        assert_eq!(s.quota_usage("a").await.unwrap().objects, 500);
        // Deleting the app forgets its usage.
        let spec = nimbus_core::spec::AppSpec {
            name: "a".into(),
            ..Default::default()
        };
        s.create_and_activate_revision(&spec, "").await.unwrap();
        s.delete_app("a").await.unwrap();
        assert_eq!(s.quota_usage("a").await.unwrap(), StoredBytes::default());
        assert_eq!(s.quota_usage("b").await.unwrap().kv, 1 + 900);
    }
}
