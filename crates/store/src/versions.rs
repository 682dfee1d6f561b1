//! S3 versioning in the store: a bucket's versioning state, the versions
//! and delete markers of its keys, and how a write or a deletion moves
//! them.
//!
//! `objects` holds each key's current version; `object_versions` every
//! other version and every delete marker, newest first by
//! `(last_modified, version_id)`. The one invariant: a key has a row in
//! `objects` exactly when its latest version is not a delete marker, so
//! reads and listings of current objects never look at
//! `object_versions`, and a bucket whose versioning was never enabled
//! works exactly as before versioning existed. Every move between the two
//! tables happens in the transaction of the write or deletion that
//! causes it ([`crate::Store::put_object`],
//! [`crate::Store::delete_object`]), under the object's lock; a row is
//! deleted before its copy is inserted, so a move never counts twice
//! against the app's storage quota.

use crate::objects::{OBJECT_COLUMNS, attrs_json, attrs_of, meta_json, object};
use crate::{ListFrom, ObjectRow, Result, Store, StoreError, now_us, prefix_end};
use sqlx::Row;

/// A bucket's versioning, as S3 names its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled: a write replaces the object, a deletion removes it.
    Unversioned,
    /// Every write makes a new version; a deletion adds a delete marker.
    Enabled,
    /// Writes and deletions replace the key's null version (a delete
    /// marker, for a deletion); other versions are kept.
    Suspended,
}

impl Versioning {
    pub(crate) fn parse(s: Option<&str>) -> Result<Versioning> {
        match s {
            None => Ok(Versioning::Unversioned),
            Some("Enabled") => Ok(Versioning::Enabled),
            Some("Suspended") => Ok(Versioning::Suspended),
            Some(other) => Err(StoreError::Corrupt(format!(
                "bucket versioning {other:?} is none of Enabled, Suspended"
            ))),
        }
    }
}

/// What a write recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The new version's id ([`crate::NULL_VERSION`] unless versioning is
    /// enabled).
    pub version_id: String,
    /// Files of bodies no row holds any more, to delete once committed.
    pub freed: Vec<String>,
}

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The delete marker created, or the version deleted (none for a
    /// deletion in a bucket without versioning).
    pub version_id: Option<String>,
    /// Whether that is a delete marker.
    pub delete_marker: bool,
    /// Whether anything changed (a version went or a marker came).
    pub changed: bool,
    /// Files of bodies no row holds any more, to delete once committed.
    pub freed: Vec<String>,
}

/// A version of an object, or a delete marker (whose body fields are
/// empty), as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// The version.
    pub object: ObjectRow,
    /// Whether it is a delete marker.
    pub delete_marker: bool,
    /// Whether it is its key's latest version.
    pub is_latest: bool,
}

/// Where a listing of versions starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionFrom {
    /// At or after a key, as an object listing (S3's `key-marker` alone).
    Key(ListFrom),
    /// After a version of a key (`key-marker` with `version-id-marker`):
    /// the key's older versions, then the keys after it. A version the
    /// key does not have skips the whole key.
    Version {
        /// The key.
        key: String,
        /// The version listed last.
        version_id: String,
    },
}

/// A fresh version id: a UUIDv7 in hex (time-ordered, 32 characters).
pub(crate) fn new_version_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

const VERSION_COLUMNS: &str = "bucket, key, version_id, delete_marker, file, size, etag, content_type, metadata, last_modified, attrs";

/// Inserts a version row into `object_versions`.
async fn insert_version(
    conn: &mut sqlx::AnyConnection,
    o: &ObjectRow,
    delete_marker: bool,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO object_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&o.bucket)
    .bind(&o.key)
    .bind(&o.version_id)
    .bind(i64::from(delete_marker))
    .bind(&o.file)
    .bind(o.size as i64)
    .bind(&o.etag)
    .bind(&o.content_type)
    .bind(meta_json(&o.metadata))
    .bind(o.last_modified_us)
    .bind(attrs_json(&o.attrs))
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes the key's current version noncurrent. With `keep_null` false, a
/// current null version is deleted instead: its file, to delete once
/// committed.
pub(crate) async fn retire_current(
    conn: &mut sqlx::AnyConnection,
    bucket: &str,
    key: &str,
    keep_null: bool,
) -> Result<Option<String>> {
    let row = sqlx::query(&format!(
        "DELETE FROM objects WHERE bucket = $1 AND key = $2 RETURNING {OBJECT_COLUMNS}"
    ))
    .bind(bucket)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let current = object(&row)?;
    if !keep_null && current.version_id == crate::NULL_VERSION {
        return Ok(Some(current.file));
    }
    insert_version(conn, &current, false).await?;
    Ok(None)
}

/// Deletes the key's noncurrent null version or null delete marker, if
/// any: the body's file, to delete once committed.
pub(crate) async fn drop_null_version(
    conn: &mut sqlx::AnyConnection,
    bucket: &str,
    key: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "DELETE FROM object_versions WHERE bucket = $1 AND key = $2 AND version_id = 'null'
         RETURNING file, delete_marker",
    )
    .bind(bucket)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    match row {
        Some(r) if r.try_get::<i64, _>("delete_marker")? == 0 => Ok(Some(r.try_get("file")?)),
        _ => Ok(None),
    }
}

/// Adds a delete marker as the key's latest version.
pub(crate) async fn insert_marker(
    conn: &mut sqlx::AnyConnection,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<()> {
    let marker = ObjectRow {
        bucket: bucket.into(),
        key: key.into(),
        file: String::new(),
        size: 0,
        etag: String::new(),
        content_type: None,
        metadata: Vec::new(),
        last_modified_us: now_us(),
        version_id: version_id.into(),
        attrs: Default::default(),
    };
    insert_version(conn, &marker, true).await
}

/// Deletes one version (or delete marker) for good, then makes the
/// newest remaining version current if it is not a delete marker. A
/// version its Object Lock keeps ([`ObjectAttrs::delete_refusal`]) is
/// [`StoreError::Locked`], and nothing changes.
pub(crate) async fn delete_version(
    conn: &mut sqlx::AnyConnection,
    bucket: &str,
    key: &str,
    version_id: &str,
    bypass_governance: bool,
) -> Result<Removed> {
    let attrs: Option<String> = sqlx::query_scalar(
        "SELECT attrs FROM objects WHERE bucket = $1 AND key = $2 AND version_id = $3
         UNION ALL
         SELECT attrs FROM object_versions WHERE bucket = $1 AND key = $2 AND version_id = $3",
    )
    .bind(bucket)
    .bind(key)
    .bind(version_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(a) = attrs
        && let Some(why) = attrs_of(&a)?.delete_refusal(now_us(), bypass_governance)
    {
        return Err(StoreError::Locked(why));
    }
    let current: Option<String> = sqlx::query_scalar(
        "DELETE FROM objects WHERE bucket = $1 AND key = $2 AND version_id = $3 RETURNING file",
    )
    .bind(bucket)
    .bind(key)
    .bind(version_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (changed, delete_marker, freed) = match current {
        Some(file) => (true, false, vec![file]),
        None => {
            let row = sqlx::query(
                "DELETE FROM object_versions WHERE bucket = $1 AND key = $2 AND version_id = $3
                 RETURNING file, delete_marker",
            )
            .bind(bucket)
            .bind(key)
            .bind(version_id)
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                None => (false, false, Vec::new()),
                Some(r) if r.try_get::<i64, _>("delete_marker")? != 0 => (true, true, Vec::new()),
                Some(r) => (true, false, vec![r.try_get("file")?]),
            }
        }
    };
    if changed {
        promote(conn, bucket, key).await?;
    }
    Ok(Removed {
        version_id: Some(version_id.to_string()),
        delete_marker,
        changed,
        freed,
    })
}

/// Keeps the invariant after a version went: with no current version,
/// the newest noncurrent one becomes current unless it is a delete
/// marker.
async fn promote(conn: &mut sqlx::AnyConnection, bucket: &str, key: &str) -> Result<()> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM objects WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    if current.is_some() {
        return Ok(());
    }
    let newest = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM object_versions WHERE bucket = $1 AND key = $2
         ORDER BY last_modified DESC, version_id DESC LIMIT 1"
    ))
    .bind(bucket)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = newest else { return Ok(()) };
    if row.try_get::<i64, _>("delete_marker")? != 0 {
        return Ok(());
    }
    let o = object(&row)?;
    sqlx::query("DELETE FROM object_versions WHERE bucket = $1 AND key = $2 AND version_id = $3")
        .bind(bucket)
        .bind(key)
        .bind(&o.version_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO objects ({OBJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&o.bucket)
    .bind(&o.key)
    .bind(&o.file)
    .bind(o.size as i64)
    .bind(&o.etag)
    .bind(&o.content_type)
    .bind(meta_json(&o.metadata))
    .bind(o.last_modified_us)
    .bind(&o.version_id)
    .bind(attrs_json(&o.attrs))
    .execute(conn)
    .await?;
    Ok(())
}

fn version_row(row: &sqlx::any::AnyRow) -> Result<VersionRow> {
    Ok(VersionRow {
        object: object(row)?,
        delete_marker: row.try_get::<i64, _>("delete_marker")? != 0,
        is_latest: row.try_get::<i64, _>("latest")? != 0,
    })
}

impl Store {
    /// A bucket's versioning (the bucket exists: checked by the caller).
    pub async fn bucket_versioning(&self, bucket: &str) -> Result<Versioning> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT versioning FROM buckets WHERE name = $1")
                .bind(bucket)
                .fetch_optional(&self.pool)
                .await?;
        Versioning::parse(v.flatten().as_deref())
    }

    /// Enables or suspends a bucket's versioning (once enabled, a bucket
    /// never returns to unversioned, as in S3). A bucket with Object Lock
    /// is never suspended: [`StoreError::Locked`].
    pub async fn set_bucket_versioning(&self, bucket: &str, enabled: bool) -> Result<()> {
        if !enabled {
            let locked = sqlx::query_scalar::<_, i64>(
                "UPDATE buckets SET versioning = 'Suspended'
                 WHERE name = $1 AND object_lock IS NULL RETURNING 1",
            )
            .bind(bucket)
            .fetch_optional(&self.pool)
            .await?
            .is_none();
            if locked && self.bucket_owner(bucket).await?.is_some() {
                return Err(StoreError::Locked(
                    "the bucket has Object Lock enabled: its versioning cannot be suspended".into(),
                ));
            }
            if locked {
                return Err(StoreError::NotFound(format!(
                    "bucket {bucket:?} does not exist: create it first"
                )));
            }
            return Ok(());
        }
        self.update_bucket(bucket, "versioning", Some("Enabled".to_string()))
            .await
    }

    /// One version of an object (current or not), or a delete marker.
    pub async fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<VersionRow>> {
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS}, CAST(0 AS BIGINT) AS delete_marker, CAST(1 AS BIGINT) AS latest
               FROM objects WHERE bucket = $1 AND key = $2 AND version_id = $3
             UNION ALL
             SELECT {OBJECT_COLUMNS}, delete_marker, CAST(0 AS BIGINT) AS latest
               FROM object_versions WHERE bucket = $1 AND key = $2 AND version_id = $3"
        ))
        .bind(bucket)
        .bind(key)
        .bind(version_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    /// The delete marker that is a key's latest version, if it is one (a
    /// key without a current version: its latest is a delete marker, or
    /// it has no version at all).
    pub async fn latest_marker(&self, bucket: &str, key: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT version_id, delete_marker FROM object_versions WHERE bucket = $1 AND key = $2
               AND NOT EXISTS (SELECT 1 FROM objects WHERE bucket = $1 AND key = $2)
             ORDER BY last_modified DESC, version_id DESC LIMIT 1",
        )
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) if r.try_get::<i64, _>("delete_marker")? != 0 => {
                Ok(Some(r.try_get("version_id")?))
            }
            _ => Ok(None),
        }
    }

    /// Versions and delete markers of a bucket's keys under `prefix`, from
    /// `from` on, in key order and, within a key, newest first (the
    /// current version first of all); at most `limit`.
    pub async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        from: &VersionFrom,
        limit: u32,
    ) -> Result<Vec<VersionRow>> {
        // Where the listing starts: a key bound, and for a version marker
        // the marker's place among its key's versions.
        enum Place {
            Current,
            Noncurrent(i64, String),
        }
        let (lower, inclusive, within) = match from {
            VersionFrom::Key(ListFrom::After(k)) => (k.clone(), false, None),
            VersionFrom::Key(ListFrom::At(k)) => (k.clone(), true, None),
            VersionFrom::Version { key, version_id } => {
                let place = match self.object_version(bucket, key, version_id).await? {
                    Some(v) if v.is_latest && !v.delete_marker => Some(Place::Current),
                    Some(v) => Some(Place::Noncurrent(
                        v.object.last_modified_us,
                        v.object.version_id,
                    )),
                    None => None,
                };
                // A marker outside the prefix places nothing inside it.
                let inside = key.starts_with(prefix);
                (
                    key.clone(),
                    false,
                    place.filter(|_| inside).map(|p| (key.clone(), p)),
                )
            }
        };
        let (lower, inclusive) = if lower.as_str() >= prefix {
            (lower, inclusive)
        } else {
            (prefix.to_string(), true)
        };
        let upper = prefix_end(prefix);
        let mut b = crate::builder::QueryBuilder::new(
            self.backend,
            format!(
                "SELECT * FROM (
                   SELECT {OBJECT_COLUMNS}, CAST(0 AS BIGINT) AS delete_marker,
                          CAST(1 AS BIGINT) AS latest, CAST(1 AS BIGINT) AS cur
                     FROM objects WHERE bucket = "
            ),
        );
        b.push_bind(bucket.to_string());
        b.push(
            " UNION ALL
               SELECT v.bucket, v.key, v.file, v.size, v.etag, v.content_type, v.metadata,
                      v.last_modified, v.version_id, v.attrs, v.delete_marker,
                      CASE WHEN NOT EXISTS (SELECT 1 FROM objects o WHERE o.bucket = v.bucket AND o.key = v.key)
                            AND NOT EXISTS (SELECT 1 FROM object_versions w
                                 WHERE w.bucket = v.bucket AND w.key = v.key
                                   AND (w.last_modified > v.last_modified
                                        OR (w.last_modified = v.last_modified AND w.version_id > v.version_id)))
                           THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS latest,
                      CAST(0 AS BIGINT) AS cur
                 FROM object_versions v WHERE v.bucket = ",
        );
        b.push_bind(bucket.to_string());
        b.push(") AS vs WHERE (key ")
            .push(if inclusive { ">= " } else { "> " })
            .push_bind(lower);
        if let Some((key, place)) = within {
            b.push(" OR (key = ").push_bind(key).push(" AND cur = 0");
            if let Place::Noncurrent(lm, vid) = place {
                b.push(" AND (last_modified < ")
                    .push_bind(lm)
                    .push(" OR (last_modified = ")
                    .push_bind(lm)
                    .push(" AND version_id < ")
                    .push_bind(vid)
                    .push("))");
            }
            b.push(")");
        }
        b.push(")");
        if let Some(upper) = upper {
            b.push(" AND key < ").push_bind(upper);
        }
        b.push(" ORDER BY key, cur DESC, last_modified DESC, version_id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = b.build().fetch_all(&self.pool).await?;
        rows.iter().map(version_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NULL_VERSION;

    fn obj(key: &str, file: &str, at: i64) -> ObjectRow {
        ObjectRow {
            bucket: "b".into(),
            key: key.into(),
            file: file.into(),
            size: 10,
            etag: file.into(),
            content_type: None,
            metadata: Vec::new(),
            last_modified_us: at,
            version_id: String::new(),
            attrs: Default::default(),
        }
    }

    async fn versions(s: &Store, key: &str) -> Vec<(String, String, bool, bool)> {
        s.list_versions(
            "b",
            key,
            &VersionFrom::Key(ListFrom::After(String::new())),
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|v| {
            (
                v.object.version_id,
                v.object.file,
                v.delete_marker,
                v.is_latest,
            )
        })
        .collect()
    }

    #[tokio::test]
    async fn versions_markers_and_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.create_bucket("b", "app").await.unwrap().unwrap();
        assert_eq!(
            s.bucket_versioning("b").await.unwrap(),
            Versioning::Unversioned
        );
        // Written before versioning: the null version.
        let w = s.put_object(&obj("k", "f0", 1), &[]).await.unwrap();
        assert_eq!(w.version_id, NULL_VERSION);
        s.set_bucket_versioning("b", true).await.unwrap();
        let v1 = s.put_object(&obj("k", "f1", 2), &[]).await.unwrap();
        assert!(v1.freed.is_empty(), "the null version is kept");
        assert_eq!(v1.version_id.len(), 32);
        let v2 = s.put_object(&obj("k", "f2", 3), &[]).await.unwrap();
        assert_eq!(s.object("b", "k").await.unwrap().unwrap().file, "f2");
        let listed = versions(&s, "k").await;
        let files: Vec<&str> = listed.iter().map(|v| v.1.as_str()).collect();
        assert_eq!(files, ["f2", "f1", "f0"], "newest first");
        assert_eq!(listed[0].0, v2.version_id);
        assert!(listed[0].3 && !listed[1].3 && !listed[2].3, "{listed:?}");
        // A deletion adds a marker: no current object, every version kept.
        let d = s.delete_object("b", "k", None, &[], false).await.unwrap();
        assert!(d.delete_marker && d.changed && d.freed.is_empty());
        assert!(s.object("b", "k").await.unwrap().is_none());
        let marker = d.version_id.unwrap();
        assert_eq!(
            s.latest_marker("b", "k").await.unwrap(),
            Some(marker.clone())
        );
        let listed = versions(&s, "k").await;
        assert_eq!(listed.len(), 4);
        assert_eq!(listed[0].0, marker);
        assert!(listed[0].2 && listed[0].3, "the marker is the latest");
        // Reading an old version by id; deleting the marker brings back v2.
        let old = s
            .object_version("b", "k", &v1.version_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.object.file, "f1");
        assert!(!old.is_latest);
        let d = s
            .delete_object("b", "k", Some(&marker), &[], false)
            .await
            .unwrap();
        assert!(d.delete_marker && d.freed.is_empty());
        assert_eq!(s.object("b", "k").await.unwrap().unwrap().file, "f2");
        // Deleting the current version by id frees its body and makes the
        // next one current; an unknown id changes nothing.
        let d = s
            .delete_object("b", "k", Some(&v2.version_id), &[], false)
            .await
            .unwrap();
        assert_eq!(d.freed, ["f2"]);
        assert_eq!(s.object("b", "k").await.unwrap().unwrap().file, "f1");
        let d = s
            .delete_object("b", "k", Some("nope"), &[], false)
            .await
            .unwrap();
        assert!(!d.changed);
        // Versions keep the bucket from being deleted.
        s.delete_object("b", "k", None, &[], false).await.unwrap();
        assert!(!s.delete_bucket("b").await.unwrap());
    }

    #[tokio::test]
    async fn suspended_versioning_replaces_the_null_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.create_bucket("b", "app").await.unwrap().unwrap();
        s.set_bucket_versioning("b", true).await.unwrap();
        let v1 = s.put_object(&obj("k", "f1", 1), &[]).await.unwrap();
        s.set_bucket_versioning("b", false).await.unwrap();
        assert_eq!(
            s.bucket_versioning("b").await.unwrap(),
            Versioning::Suspended
        );
        let n1 = s.put_object(&obj("k", "n1", 2), &[]).await.unwrap();
        assert_eq!(n1.version_id, NULL_VERSION);
        assert!(n1.freed.is_empty(), "v1 is kept");
        let n2 = s.put_object(&obj("k", "n2", 3), &[]).await.unwrap();
        assert_eq!(n2.freed, ["n1"], "the null version is replaced");
        let d = s.delete_object("b", "k", None, &[], false).await.unwrap();
        assert_eq!(d.freed, ["n2"]);
        assert_eq!(d.version_id.as_deref(), Some(NULL_VERSION));
        let listed = versions(&s, "k").await;
        assert_eq!(
            listed,
            [
                (NULL_VERSION.into(), String::new(), true, true),
                (v1.version_id.clone(), "f1".into(), false, false),
            ]
        );
        // A put over the null marker replaces it.
        s.put_object(&obj("k", "n3", 4), &[]).await.unwrap();
        assert_eq!(versions(&s, "k").await.len(), 2);
    }

    #[tokio::test]
    async fn version_listings_page_from_a_version_marker() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.create_bucket("b", "app").await.unwrap().unwrap();
        s.set_bucket_versioning("b", true).await.unwrap();
        let mut ids = Vec::new();
        for (i, key) in ["a", "a", "a", "b"].iter().enumerate() {
            let w = s
                .put_object(&obj(key, &format!("f{i}"), i as i64), &[])
                .await
                .unwrap();
            ids.push(w.version_id);
        }
        let page = |from: VersionFrom| {
            let s = s.clone();
            async move {
                s.list_versions("b", "", &from, 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|v| v.object.file)
                    .collect::<Vec<_>>()
            }
        };
        let after = |key: &str, v: &str| VersionFrom::Version {
            key: key.into(),
            version_id: v.into(),
        };
        assert_eq!(
            page(after("a", &ids[2])).await,
            ["f1", "f0", "f3"],
            "after the current"
        );
        assert_eq!(page(after("a", &ids[1])).await, ["f0", "f3"]);
        assert_eq!(page(after("a", "unknown")).await, ["f3"]);
        // A marker outside the prefix lists nothing of its key.
        let outside = s
            .list_versions("b", "zz", &after("a", &ids[2]), 10)
            .await
            .unwrap();
        assert!(outside.is_empty(), "{outside:?}");
        assert_eq!(
            page(VersionFrom::Key(ListFrom::After("a".into()))).await,
            ["f3"]
        );
    }
}
