//! S3 Object Lock in the store: a bucket's lock configuration (enabled,
//! with an optional default retention) and each version's retention and
//! legal hold (in its `attrs`), with the rules that hold them.
//!
//! Invariants, kept here whatever the caller checked:
//! - a version under a legal hold, or retained in compliance mode until a
//!   time not yet past, is never deleted ([`crate::Store::delete_object`]
//!   by version id) and its retention is never shortened or removed;
//! - a version retained in governance mode is deleted, or its retention
//!   shortened or removed, only by a request that bypasses governance;
//! - a bucket with Object Lock keeps its versioning enabled (so a write
//!   or a deletion without a version id never removes a version), and its
//!   lock is never turned off.

use crate::objects::ObjectAttrs;
use crate::{Result, Store, StoreError};

/// An Object Lock retention mode, as S3 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LockMode {
    /// Deleted or shortened only by a request that bypasses governance.
    Governance,
    /// Never deleted or shortened before its time.
    Compliance,
}

impl LockMode {
    /// S3's name: `GOVERNANCE` or `COMPLIANCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// A version's retention: its mode, until when (µs since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// The mode.
    pub mode: LockMode,
    /// Retained until then.
    pub until_us: i64,
}

/// How long a bucket's default retention lasts, as it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// So many days.
    Days(u32),
    /// So many years (of 365 days, as S3 counts them).
    Years(u32),
}

impl Period {
    /// Its length in µs.
    pub fn micros(self) -> i64 {
        const DAY: i64 = 86_400_000_000;
        match self {
            Period::Days(d) => i64::from(d) * DAY,
            Period::Years(y) => i64::from(y) * 365 * DAY,
        }
    }
}

/// A bucket's Object Lock configuration (present only when enabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectLock {
    /// The retention every new version gets unless its write names one.
    pub default: Option<(LockMode, Period)>,
}

impl ObjectLock {
    /// The retention a version written at `now_us` gets by default.
    pub fn default_retention(&self, now_us: i64) -> Option<Retention> {
        self.default.map(|(mode, period)| Retention {
            mode,
            until_us: now_us.saturating_add(period.micros()),
        })
    }
}

impl ObjectAttrs {
    /// Its retention if not yet past at `now_us`.
    pub fn active_retention(&self, now_us: i64) -> Option<Retention> {
        self.retention.filter(|r| r.until_us > now_us)
    }

    /// Why this version may not be deleted at `now_us` (none if it may).
    pub fn delete_refusal(&self, now_us: i64, bypass_governance: bool) -> Option<String> {
        if self.legal_hold {
            return Some(
                "the object version is under a legal hold: remove it first (PutObjectLegalHold OFF)"
                    .into(),
            );
        }
        match self.active_retention(now_us)?.mode {
            LockMode::Compliance => Some(
                "the object version is retained in COMPLIANCE mode until its retain-until date: it cannot be deleted before"
                    .into(),
            ),
            LockMode::Governance if !bypass_governance => Some(
                "the object version is retained in GOVERNANCE mode: delete it with x-amz-bypass-governance-retention: true, or wait for its retain-until date"
                    .into(),
            ),
            LockMode::Governance => None,
        }
    }

    /// Why its retention may not become `new` at `now_us` (none if it
    /// may): an active compliance retention is only ever extended; an
    /// active governance one is extended in the same mode or made
    /// compliance, and otherwise changed only bypassing governance.
    pub fn retention_refusal(
        &self,
        new: Option<Retention>,
        now_us: i64,
        bypass_governance: bool,
    ) -> Option<String> {
        let old = self.active_retention(now_us)?;
        let extends = new.is_some_and(|n| n.until_us >= old.until_us);
        match old.mode {
            LockMode::Compliance if extends && new.map(|n| n.mode) == Some(old.mode) => None,
            LockMode::Compliance => Some(
                "the object version is retained in COMPLIANCE mode: its retention can only be extended, never shortened, removed or changed to GOVERNANCE"
                    .into(),
            ),
            LockMode::Governance if extends || bypass_governance => None,
            LockMode::Governance => Some(
                "the object version is retained in GOVERNANCE mode: shortening or removing its retention needs x-amz-bypass-governance-retention: true"
                    .into(),
            ),
        }
    }
}

fn lock_json(l: &ObjectLock) -> String {
    serde_json::to_string(l).expect("a lock configuration serializes")
}

impl Store {
    /// A bucket's Object Lock configuration; `None` when not enabled (the
    /// bucket exists: checked by the caller).
    pub async fn bucket_object_lock(&self, bucket: &str) -> Result<Option<ObjectLock>> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT object_lock FROM buckets WHERE name = $1")
                .bind(bucket)
                .fetch_optional(&self.pool)
                .await?;
        v.flatten()
            .map(|s| {
                serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("bucket object lock: {e}")))
            })
            .transpose()
    }

    /// Creates a bucket for `app` with Object Lock enabled (and so
    /// versioning), without a default retention. `Err(owner)` if the name
    /// is taken.
    pub async fn create_locked_bucket(
        &self,
        name: &str,
        app: &str,
    ) -> Result<std::result::Result<(), String>> {
        let done = sqlx::query(
            "INSERT INTO buckets (name, app, created_at, versioning, object_lock)
             VALUES ($1, $2, $3, 'Enabled', $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(app)
        .bind(crate::now_us())
        .bind(lock_json(&ObjectLock::default()))
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if done {
            return Ok(Ok(()));
        }
        Ok(Err(self.bucket_owner(name).await?.unwrap_or_default()))
    }

    /// Enables Object Lock on a bucket, or changes its default retention.
    /// `false` (nothing changed) when its versioning is not enabled: S3
    /// enables the lock only on a versioned bucket. A missing bucket is
    /// [`StoreError::NotFound`].
    pub async fn set_bucket_object_lock(&self, bucket: &str, lock: &ObjectLock) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE buckets SET object_lock = $1 WHERE name = $2 AND versioning = 'Enabled'",
        )
        .bind(lock_json(lock))
        .bind(bucket)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if done == 0 && self.bucket_owner(bucket).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "bucket {bucket:?} does not exist: create it first"
            )));
        }
        Ok(done == 1)
    }

    /// Sets (or, with `None`, removes) the retention of an object's
    /// current version or of the version named, at `now_us`; the id of the
    /// version changed, `None` if there is no such version, or
    /// [`StoreError::Locked`] if its retention forbids the change
    /// ([`ObjectAttrs::retention_refusal`]).
    pub async fn set_object_retention(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        retention: Option<Retention>,
        now_us: i64,
        bypass_governance: bool,
    ) -> Result<Option<String>> {
        self.update_attrs(bucket, key, version, |a| {
            if let Some(why) = a.retention_refusal(retention, now_us, bypass_governance) {
                return Err(StoreError::Locked(why));
            }
            a.retention = retention;
            Ok(())
        })
        .await
    }

    /// Puts a legal hold on an object's current version or on the version
    /// named, or lifts it; as [`Store::set_object_retention`].
    pub async fn set_object_legal_hold(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        on: bool,
    ) -> Result<Option<String>> {
        self.update_attrs(bucket, key, version, |a| {
            a.legal_hold = on;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectRow;

    const NOW: i64 = 1_800_000_000_000_000;

    fn retained(mode: LockMode, until_us: i64) -> ObjectAttrs {
        ObjectAttrs {
            retention: Some(Retention { mode, until_us }),
            ..Default::default()
        }
    }

    #[test]
    fn what_a_lock_allows() {
        let free = ObjectAttrs::default();
        assert_eq!(free.delete_refusal(NOW, false), None);
        let held = ObjectAttrs {
            legal_hold: true,
            ..Default::default()
        };
        assert!(
            held.delete_refusal(NOW, true).is_some(),
            "bypass never lifts a hold"
        );
        let c = retained(LockMode::Compliance, NOW + 1);
        assert!(c.delete_refusal(NOW, true).is_some());
        assert_eq!(c.delete_refusal(NOW + 1, false), None, "past its date");
        let g = retained(LockMode::Governance, NOW + 1);
        assert!(g.delete_refusal(NOW, false).is_some());
        assert_eq!(g.delete_refusal(NOW, true), None);

        let r = |mode, until_us| Some(Retention { mode, until_us });
        use LockMode::*;
        // Compliance: only extended, in the same mode.
        assert_eq!(
            c.retention_refusal(r(Compliance, NOW + 9), NOW, false),
            None
        );
        assert!(c.retention_refusal(r(Compliance, NOW), NOW, true).is_some());
        assert!(
            c.retention_refusal(r(Governance, NOW + 9), NOW, true)
                .is_some()
        );
        assert!(c.retention_refusal(None, NOW, true).is_some());
        assert_eq!(c.retention_refusal(None, NOW + 1, false), None, "past");
        // Governance: extended (or made compliance) freely, else bypassing.
        assert_eq!(
            g.retention_refusal(r(Governance, NOW + 9), NOW, false),
            None
        );
        assert_eq!(
            g.retention_refusal(r(Compliance, NOW + 9), NOW, false),
            None
        );
        assert!(g.retention_refusal(None, NOW, false).is_some());
        assert!(
            g.retention_refusal(r(Governance, NOW), NOW, false)
                .is_some()
        );
        assert_eq!(g.retention_refusal(None, NOW, true), None);
        assert_eq!(
            free.retention_refusal(r(Governance, NOW + 1), NOW, false),
            None
        );
    }

    #[tokio::test]
    async fn locked_versions_stay() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.create_bucket("plain", "app").await.unwrap().unwrap();
        assert!(
            !s.set_bucket_object_lock("plain", &ObjectLock::default())
                .await
                .unwrap(),
            "not on an unversioned bucket"
        );
        assert!(
            s.set_bucket_object_lock("nope", &ObjectLock::default())
                .await
                .is_err()
        );
        s.create_locked_bucket("b", "app").await.unwrap().unwrap();
        assert_eq!(
            s.create_locked_bucket("b", "other").await.unwrap(),
            Err("app".to_string())
        );
        assert_eq!(
            s.bucket_versioning("b").await.unwrap(),
            crate::Versioning::Enabled
        );
        assert_eq!(
            s.bucket_object_lock("b").await.unwrap(),
            Some(ObjectLock::default())
        );
        assert_eq!(s.bucket_object_lock("plain").await.unwrap(), None);
        let year = ObjectLock {
            default: Some((LockMode::Governance, Period::Years(1))),
        };
        assert!(s.set_bucket_object_lock("b", &year).await.unwrap());
        assert_eq!(s.bucket_object_lock("b").await.unwrap(), Some(year));
        // A version written without a retention gets the default, from
        // when it is recorded; one with its own keeps it.
        let plain = ObjectRow {
            bucket: "b".into(),
            key: "d".into(),
            file: "fd".into(),
            size: 1,
            etag: "e".into(),
            content_type: None,
            metadata: Vec::new(),
            last_modified_us: 1,
            version_id: String::new(),
            attrs: ObjectAttrs::default(),
        };
        let before = crate::now_us();
        let d = s.put_object(&plain, &[]).await.unwrap().version_id;
        let r = s
            .object("b", "d")
            .await
            .unwrap()
            .unwrap()
            .attrs
            .retention
            .unwrap();
        assert_eq!(r.mode, LockMode::Governance);
        assert!(r.until_us >= before + Period::Years(1).micros(), "{r:?}");
        s.delete_object("b", "d", Some(&d), &[], true)
            .await
            .unwrap();
        assert!(
            s.set_bucket_object_lock("b", &ObjectLock::default())
                .await
                .unwrap()
        );
        // A locked bucket's versioning is never suspended.
        assert!(matches!(
            s.set_bucket_versioning("b", false).await,
            Err(StoreError::Locked(_))
        ));

        let o = |file: &str, attrs: ObjectAttrs| ObjectRow {
            bucket: "b".into(),
            key: "k".into(),
            file: file.into(),
            size: 1,
            etag: "e".into(),
            content_type: None,
            metadata: Vec::new(),
            last_modified_us: 1,
            version_id: String::new(),
            attrs,
        };
        let now = crate::now_us();
        let far = now + 3_600_000_000;
        let v1 = s
            .put_object(&o("f1", retained(LockMode::Compliance, far)), &[])
            .await
            .unwrap()
            .version_id;
        let v2 = s
            .put_object(&o("f2", ObjectAttrs::default()), &[])
            .await
            .unwrap()
            .version_id;
        // Overwritten, then deleted without an id: v1 is still there.
        let marker = s.delete_object("b", "k", None, &[], false).await.unwrap();
        assert!(marker.delete_marker);
        assert!(matches!(
            s.delete_object("b", "k", Some(&v1), &[], true).await,
            Err(StoreError::Locked(_))
        ));
        assert!(s.object_version("b", "k", &v1).await.unwrap().is_some());
        // Shortening compliance: refused, even bypassing governance.
        assert!(matches!(
            s.set_object_retention("b", "k", Some(&v1), None, now, true)
                .await,
            Err(StoreError::Locked(_))
        ));
        // A legal hold on v2 keeps it; lifted, v2 goes.
        s.set_object_legal_hold("b", "k", Some(&v2), true)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            s.delete_object("b", "k", Some(&v2), &[], true).await,
            Err(StoreError::Locked(_))
        ));
        s.set_object_legal_hold("b", "k", Some(&v2), false)
            .await
            .unwrap()
            .unwrap();
        let gone = s
            .delete_object("b", "k", Some(&v2), &[], false)
            .await
            .unwrap();
        assert_eq!(gone.freed, vec!["f2".to_string()]);
        // Governance: deleted only bypassing it.
        let g = Some(Retention {
            mode: LockMode::Governance,
            until_us: far,
        });
        let v3 = s
            .put_object(&o("f3", ObjectAttrs::default()), &[])
            .await
            .unwrap()
            .version_id;
        s.set_object_retention("b", "k", Some(&v3), g, now, false)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            s.delete_object("b", "k", None, &[], false).await,
            Ok(Removed {
                delete_marker: true,
                ..
            })
        ));
        assert!(matches!(
            s.delete_object("b", "k", Some(&v3), &[], false).await,
            Err(StoreError::Locked(_))
        ));
        s.delete_object("b", "k", Some(&v3), &[], true)
            .await
            .unwrap();
        assert!(s.object_version("b", "k", &v3).await.unwrap().is_none());
        assert_eq!(
            s.set_object_legal_hold("b", "k", Some("nope"), true)
                .await
                .unwrap(),
            None
        );
    }

    use crate::Removed;
}
