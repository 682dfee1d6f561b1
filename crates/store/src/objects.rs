//! Object storage metadata: buckets (owned by one app each), objects,
//! multipart uploads and their parts, and S3 access keys (secrets sealed by
//! the control plane; listed without them, revoked by deletion). Bodies are
//! files ([`crate::BlobFiles`]); a row points at a complete, durable file.
//! Object keys are data in SQL, never paths: bodies live under generated
//! ids.
//!
//! An object's put or delete stores its storage events (built by the
//! caller) in the same transaction. A listing is bounded above by
//! [`prefix_end`] of its prefix, the least string past every extension of
//! it, so it ends whatever the keys (U+10FFFF included).
//!
//! Transactions that read before they write start with `BEGIN IMMEDIATE`:
//! a deferred one would fail (SQLITE_BUSY_SNAPSHOT, not retried) when a
//! concurrent writer commits between its read and its write. On PostgreSQL
//! they take a transaction-scoped advisory lock on the object or part
//! instead (`Store::lock_name`).
//!
//! A bucket is deleted only while empty, and an object or upload is only
//! recorded in a bucket that exists: on PostgreSQL, where transactions of
//! several nodes run at once, a write locks its bucket's row for share and
//! a bucket's deletion locks it for update, so neither can slip between
//! the other's check and its change (SQLite's single writer already
//! orders them).

use crate::versions::{Removed, Versioning, Written};
use crate::{NewMessage, Result, Store, StoreError, now_us};
use sqlx::Row;

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectRow {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Body file id.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag, without quotes.
    pub etag: String,
    /// Media type.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`), name → value.
    pub metadata: Vec<(String, String)>,
    /// µs since the epoch.
    pub last_modified_us: i64,
    /// Standard headers kept and tags.
    pub attrs: ObjectAttrs,
    /// Its version id, [`NULL_VERSION`] for the version written while the
    /// bucket's versioning was off or suspended. Assigned by the store
    /// when the object is recorded (what a writer sets is not read).
    pub version_id: String,
}

/// What an object carries besides its body, media type and user
/// metadata, stored as one JSON value: the standard headers S3 keeps and
/// returns (name → value: `cache-control`, `content-disposition`,
/// `content-encoding`, `content-language`, `expires`), its tags, its ACL
/// and its Object Lock (retention and legal hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ObjectAttrs {
    /// Standard headers, name (lower case) → value.
    pub headers: Vec<(String, String)>,
    /// Tags, key → value, in the order given.
    pub tags: Vec<(String, String)>,
    /// Whether anyone may read it without signing (ACL `public-read`).
    pub public: bool,
    /// Its Object Lock retention, if any (`crate::lock`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::Retention>,
    /// Whether it is under an Object Lock legal hold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub legal_hold: bool,
    /// Its additional checksum (S3's `x-amz-checksum-*`), if it has one.
    /// On a multipart upload in progress: the algorithm its parts are
    /// checked with and the checksum's type, with an empty value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ObjectChecksum>,
}

/// An object's additional checksum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectChecksum {
    /// The algorithm, as S3 names it (`CRC32`, `CRC32C`, `CRC64NVME`,
    /// `SHA1`, `SHA256`).
    pub algorithm: String,
    /// The checksum, base64 (a composite one ends in `-N`, its parts).
    pub value: String,
    /// Whether it is of the whole object (`FULL_OBJECT`) rather than of
    /// its parts' checksums (`COMPOSITE`).
    pub full_object: bool,
}

pub(crate) fn attrs_json(a: &ObjectAttrs) -> String {
    serde_json::to_string(a).expect("strings serialize")
}

pub(crate) fn attrs_of(s: &str) -> Result<ObjectAttrs> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("object attributes: {e}")))
}

/// The id of the version an object has when written while its bucket's
/// versioning is off or suspended (S3's "null" version).
pub const NULL_VERSION: &str = "null";

/// An S3 access key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3KeyRow {
    /// Access key id.
    pub access_key: String,
    /// The app whose buckets it reaches.
    pub app: String,
    /// µs since the epoch.
    pub created_at_us: i64,
}

impl From<S3KeyRow> for nimbus_api::S3Key {
    fn from(k: S3KeyRow) -> Self {
        nimbus_api::S3Key {
            access_key: k.access_key,
            app: k.app,
            created_at_us: k.created_at_us,
        }
    }
}

/// A part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    /// 1-10000.
    pub part_number: i64,
    /// Body file id.
    pub file: String,
    /// Size.
    pub size: u64,
    /// ETag (MD5 hex).
    pub etag: String,
    /// Its additional checksum (base64, of its upload's algorithm).
    pub checksum: Option<String>,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    /// Upload id.
    pub id: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Media type of the object to be.
    pub content_type: Option<String>,
    /// Its user metadata.
    pub metadata: Vec<(String, String)>,
    /// Its standard headers and tags.
    pub attrs: ObjectAttrs,
}

/// Where a listing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFrom {
    /// After this key (a marker or a continuation).
    After(String),
    /// At this key, included (e.g. past a common prefix: [`prefix_end`]).
    At(String),
}

/// The least string greater than every string that starts with `prefix`
/// (in code point order, which is byte order in UTF-8: SQLite's BINARY and
/// PostgreSQL's "C" collation); `None` when there is none (the prefix is
/// empty or all U+10FFFF). A listing bounded by it ends, whatever the keys.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

pub(crate) fn meta_json(m: &[(String, String)]) -> String {
    serde_json::to_string(m).expect("strings serialize")
}

fn meta_of(s: &str) -> Result<Vec<(String, String)>> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("object metadata: {e}")))
}

pub(crate) fn object(row: &sqlx::any::AnyRow) -> Result<ObjectRow> {
    Ok(ObjectRow {
        bucket: row.try_get("bucket")?,
        key: row.try_get("key")?,
        file: row.try_get("file")?,
        size: row.try_get::<i64, _>("size")? as u64,
        etag: row.try_get("etag")?,
        content_type: row.try_get("content_type")?,
        metadata: meta_of(&row.try_get::<String, _>("metadata")?)?,
        last_modified_us: row.try_get("last_modified")?,
        version_id: row.try_get("version_id")?,
        attrs: attrs_of(&row.try_get::<String, _>("attrs")?)?,
    })
}

pub(crate) const OBJECT_COLUMNS: &str =
    "bucket, key, file, size, etag, content_type, metadata, last_modified, version_id, attrs";

impl Store {
    /// Creates a bucket for `app`. `Err(owner)` if the name is taken.
    pub async fn create_bucket(&self, name: &str, app: &str) -> Result<Result<(), String>> {
        let done = sqlx::query(
            "INSERT INTO buckets (name, app, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(app)
        .bind(now_us())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if done {
            return Ok(Ok(()));
        }
        Ok(Err(self.bucket_owner(name).await?.unwrap_or_default()))
    }

    /// The app owning a bucket.
    pub async fn bucket_owner(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT app FROM buckets WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Buckets of an app, with their creation times (µs).
    pub async fn buckets(&self, app: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT name, created_at FROM buckets WHERE app = $1 ORDER BY name")
            .bind(app)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("created_at")?)))
            .collect()
    }

    /// Deletes an empty bucket; `false` if it still holds objects, object
    /// versions or delete markers, or multipart uploads in progress (whose
    /// parts would be left behind).
    pub async fn delete_bucket(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        self.lock_bucket(&mut tx, name, "FOR UPDATE").await?;
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM objects WHERE bucket = $1
             UNION ALL SELECT 1 FROM object_versions WHERE bucket = $1
             UNION ALL SELECT 1 FROM uploads WHERE bucket = $1 LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if used.is_some() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM buckets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records an object as its key's current version and, in the same
    /// transaction, the storage events it causes. What happens to the
    /// version it replaces follows the bucket's versioning
    /// ([`Versioning`]): kept as a noncurrent version (enabled), or
    /// replaced (off; suspended, for the null version). Without a
    /// retention of its own, it gets its bucket's default one (Object
    /// Lock), from when it is recorded. The new version's id, and the files
    /// of the bodies it replaced, to delete once this is committed.
    pub async fn put_object(&self, o: &ObjectRow, events: &[NewMessage]) -> Result<Written> {
        self.record_object(o, events, None).await
    }

    /// Completes a multipart upload: records its object (as
    /// [`Store::put_object`]) and forgets the upload and its parts in the
    /// same transaction, so the parts stop counting against the app's
    /// quota as the object starts to; among the files to delete once this
    /// is committed, the parts'.
    pub async fn complete_upload(
        &self,
        o: &ObjectRow,
        upload: &str,
        events: &[NewMessage],
    ) -> Result<Written> {
        self.record_object(o, events, Some(upload)).await
    }

    async fn record_object(
        &self,
        o: &ObjectRow,
        events: &[NewMessage],
        upload: Option<&str>,
    ) -> Result<Written> {
        let mut tx = self.begin_write().await?;
        let (versioning, object_lock) = self
            .lock_bucket_settings(&mut tx, &o.bucket, "FOR SHARE")
            .await?;
        self.lock_name(&mut tx, &format!("object/{}/{}", o.bucket, o.key))
            .await?;
        let mut freed = match upload {
            Some(id) => forget_upload(&mut tx, id).await?,
            None => Vec::new(),
        };
        // The version's time is taken under the object's lock, so versions
        // are ordered as their writes commit (on one clock).
        let last_modified = now_us().max(o.last_modified_us);
        let version_id = match versioning {
            Versioning::Enabled => crate::versions::new_version_id(),
            _ => NULL_VERSION.to_string(),
        };
        // A version written without a retention gets its bucket's default
        // one, from the time it is recorded (as S3 applies it).
        let mut attrs = o.attrs.clone();
        if attrs.retention.is_none() {
            attrs.retention = object_lock.and_then(|l| l.default_retention(last_modified));
        }
        match versioning {
            Versioning::Unversioned => {
                let old: Option<String> =
                    sqlx::query_scalar("SELECT file FROM objects WHERE bucket = $1 AND key = $2")
                        .bind(&o.bucket)
                        .bind(&o.key)
                        .fetch_optional(&mut *tx)
                        .await?;
                freed.extend(old.filter(|f| *f != o.file));
            }
            Versioning::Enabled => {
                crate::versions::retire_current(&mut tx, &o.bucket, &o.key, true).await?;
            }
            Versioning::Suspended => {
                freed.extend(
                    crate::versions::retire_current(&mut tx, &o.bucket, &o.key, false).await?,
                );
                freed.extend(crate::versions::drop_null_version(&mut tx, &o.bucket, &o.key).await?);
            }
        }
        sqlx::query(
            "INSERT INTO objects (bucket, key, file, size, etag, content_type, metadata, last_modified, version_id, attrs)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (bucket, key) DO UPDATE SET file = excluded.file, size = excluded.size,
                etag = excluded.etag, content_type = excluded.content_type,
                metadata = excluded.metadata, last_modified = excluded.last_modified,
                version_id = excluded.version_id, attrs = excluded.attrs",
        )
        .bind(&o.bucket)
        .bind(&o.key)
        .bind(&o.file)
        .bind(o.size as i64)
        .bind(&o.etag)
        .bind(&o.content_type)
        .bind(meta_json(&o.metadata))
        .bind(last_modified)
        .bind(&version_id)
        .bind(attrs_json(&attrs))
        .execute(&mut *tx)
        .await?;
        let events: Vec<&NewMessage> = events.iter().collect();
        crate::events::insert_messages(&mut tx, &events, crate::now_us()).await?;
        tx.commit().await?;
        Ok(Written { version_id, freed })
    }

    /// An object's metadata.
    pub async fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRow>> {
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND key = $2"
        ))
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object).transpose()
    }

    /// Deletes an object, as S3 does under the bucket's versioning:
    ///
    /// - without `version`: off, the current version goes; enabled, it
    ///   becomes noncurrent and a delete marker is the key's latest
    ///   version; suspended, a null delete marker replaces the null
    ///   version (a non-null current version becomes noncurrent);
    /// - with `version`, that version (or delete marker) goes for good,
    ///   and the newest remaining version becomes current unless it is a
    ///   delete marker. An unknown version deletes nothing.
    ///
    /// When anything changed, the storage events are stored in the same
    /// transaction. What was deleted or created, and the files of the
    /// bodies that went, to delete once this is committed. A version kept
    /// by its Object Lock is not deleted ([`StoreError::Locked`]; governance
    /// mode yields to `bypass_governance`).
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        events: &[NewMessage],
        bypass_governance: bool,
    ) -> Result<Removed> {
        let mut tx = self.begin_write().await?;
        let versioning = self.lock_bucket(&mut tx, bucket, "FOR SHARE").await?;
        self.lock_name(&mut tx, &format!("object/{bucket}/{key}"))
            .await?;
        let removed = match version {
            Some(v) => {
                crate::versions::delete_version(&mut tx, bucket, key, v, bypass_governance).await?
            }
            None => match versioning {
                Versioning::Unversioned => {
                    let file: Option<String> = sqlx::query_scalar(
                        "DELETE FROM objects WHERE bucket = $1 AND key = $2 RETURNING file",
                    )
                    .bind(bucket)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    Removed {
                        changed: file.is_some(),
                        freed: file.into_iter().collect(),
                        version_id: None,
                        delete_marker: false,
                    }
                }
                Versioning::Enabled => {
                    crate::versions::retire_current(&mut tx, bucket, key, true).await?;
                    let id = crate::versions::new_version_id();
                    crate::versions::insert_marker(&mut tx, bucket, key, &id).await?;
                    Removed {
                        changed: true,
                        freed: Vec::new(),
                        version_id: Some(id),
                        delete_marker: true,
                    }
                }
                Versioning::Suspended => {
                    let mut freed: Vec<String> =
                        crate::versions::retire_current(&mut tx, bucket, key, false)
                            .await?
                            .into_iter()
                            .collect();
                    freed.extend(crate::versions::drop_null_version(&mut tx, bucket, key).await?);
                    crate::versions::insert_marker(&mut tx, bucket, key, NULL_VERSION).await?;
                    Removed {
                        changed: true,
                        freed,
                        version_id: Some(NULL_VERSION.into()),
                        delete_marker: true,
                    }
                }
            },
        };
        if removed.changed {
            let events: Vec<&NewMessage> = events.iter().collect();
            crate::events::insert_messages(&mut tx, &events, crate::now_us()).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Objects of a bucket with keys starting with `prefix`, from `from`
    /// on, in key order, at most `limit`.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        from: &ListFrom,
        limit: u32,
    ) -> Result<Vec<ObjectRow>> {
        let (lower, inclusive) = match from {
            ListFrom::After(k) if k.as_str() >= prefix => (k.as_str(), false),
            ListFrom::At(k) if k.as_str() > prefix => (k.as_str(), true),
            _ => (prefix, true),
        };
        let upper = prefix_end(prefix);
        let mut b = crate::builder::QueryBuilder::new(
            self.backend,
            format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = "),
        );
        b.push_bind(bucket.to_string())
            .push(if inclusive {
                " AND key >= "
            } else {
                " AND key > "
            })
            .push_bind(lower.to_string());
        if let Some(upper) = upper {
            b.push(" AND key < ").push_bind(upper);
        }
        b.push(" ORDER BY key LIMIT ").push_bind(i64::from(limit));
        let rows = b.build().fetch_all(&self.pool).await?;
        rows.iter().map(object).collect()
    }

    /// Starts a multipart upload.
    pub async fn create_upload(&self, u: &UploadRow) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.lock_bucket(&mut tx, &u.bucket, "FOR SHARE").await?;
        sqlx::query(
            "INSERT INTO uploads (id, bucket, key, content_type, metadata, created_at, attrs)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&u.id)
        .bind(&u.bucket)
        .bind(&u.key)
        .bind(&u.content_type)
        .bind(meta_json(&u.metadata))
        .bind(now_us())
        .bind(attrs_json(&u.attrs))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Within a write transaction: checks that `bucket` exists and, on
    /// PostgreSQL, locks its row (`lock`: `FOR SHARE` to write into it,
    /// `FOR UPDATE` to delete it) until the transaction ends. A missing
    /// bucket is [`StoreError::NotFound`]. Its versioning.
    async fn lock_bucket(
        &self,
        conn: &mut sqlx::AnyConnection,
        bucket: &str,
        lock: &str,
    ) -> Result<Versioning> {
        Ok(self.lock_bucket_settings(conn, bucket, lock).await?.0)
    }

    /// As [`Store::lock_bucket`], with the bucket's Object Lock too.
    async fn lock_bucket_settings(
        &self,
        conn: &mut sqlx::AnyConnection,
        bucket: &str,
        lock: &str,
    ) -> Result<(Versioning, Option<crate::ObjectLock>)> {
        let lock = if self.backend() == crate::Backend::Postgres {
            lock
        } else {
            ""
        };
        let found = sqlx::query(&format!(
            "SELECT versioning, object_lock FROM buckets WHERE name = $1 {lock}"
        ))
        .bind(bucket)
        .fetch_optional(conn)
        .await?;
        let Some(row) = found else {
            return Err(StoreError::NotFound(format!(
                "bucket {bucket:?} does not exist (it may have been deleted during the request): create it and retry"
            )));
        };
        let versioning =
            Versioning::parse(row.try_get::<Option<String>, _>("versioning")?.as_deref())?;
        let object_lock = row
            .try_get::<Option<String>, _>("object_lock")?
            .map(|l| {
                serde_json::from_str(&l)
                    .map_err(|e| StoreError::Corrupt(format!("bucket object lock: {e}")))
            })
            .transpose()?;
        Ok((versioning, object_lock))
    }

    /// A multipart upload.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>> {
        let row = sqlx::query(
            "SELECT id, bucket, key, content_type, metadata, attrs FROM uploads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(UploadRow {
                id: r.try_get("id")?,
                bucket: r.try_get("bucket")?,
                key: r.try_get("key")?,
                content_type: r.try_get("content_type")?,
                metadata: meta_of(&r.try_get::<String, _>("metadata")?)?,
                attrs: attrs_of(&r.try_get::<String, _>("attrs")?)?,
            })
        })
        .transpose()
    }

    /// Multipart uploads in progress in `bucket` with keys under `prefix`,
    /// in (key, upload id) order, each with its start (µs), from `from`:
    /// past `from`'s key (`ListFrom::After`), or at it (`At`). With
    /// `after_id`, the uploads of `from`'s key itself that sort after that
    /// id come first (S3's `key-marker` with `upload-id-marker`).
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        from: &ListFrom,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(UploadRow, i64)>> {
        let (start, same_key) = match from {
            ListFrom::After(k) if k.as_str() >= prefix => (k.as_str(), after_id),
            ListFrom::At(k) if k.as_str() > prefix => (k.as_str(), Some("")),
            _ => (prefix, Some("")),
        };
        let mut b = crate::builder::QueryBuilder::new(
            self.backend,
            "SELECT id, bucket, key, content_type, metadata, attrs, created_at FROM uploads WHERE bucket = "
                .to_string(),
        );
        b.push_bind(bucket.to_string())
            .push(" AND (key > ")
            .push_bind(start.to_string());
        if let Some(id) = same_key {
            // "" sorts before every id: all of `start`'s uploads.
            b.push(" OR (key = ")
                .push_bind(start.to_string())
                .push(" AND id > ")
                .push_bind(id.to_string())
                .push(")");
        }
        b.push(")");
        if let Some(upper) = prefix_end(prefix) {
            b.push(" AND key < ").push_bind(upper);
        }
        b.push(" ORDER BY key, id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = b.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    UploadRow {
                        id: r.try_get("id")?,
                        bucket: r.try_get("bucket")?,
                        key: r.try_get("key")?,
                        content_type: r.try_get("content_type")?,
                        metadata: meta_of(&r.try_get::<String, _>("metadata")?)?,
                        attrs: attrs_of(&r.try_get::<String, _>("attrs")?)?,
                    },
                    r.try_get("created_at")?,
                ))
            })
            .collect()
    }

    /// Records a part (replacing one with the same number); the replaced
    /// part's file.
    pub async fn put_part(&self, upload: &str, p: &PartRow) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        self.lock_name(&mut tx, &format!("part/{upload}/{}", p.part_number))
            .await?;
        let old: Option<String> = sqlx::query_scalar(
            "SELECT file FROM upload_parts WHERE upload_id = $1 AND part_number = $2",
        )
        .bind(upload)
        .bind(p.part_number)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO upload_parts (upload_id, part_number, file, size, etag, checksum)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (upload_id, part_number) DO UPDATE SET file = excluded.file,
                size = excluded.size, etag = excluded.etag, checksum = excluded.checksum",
        )
        .bind(upload)
        .bind(p.part_number)
        .bind(&p.file)
        .bind(p.size as i64)
        .bind(&p.etag)
        .bind(&p.checksum)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(old.filter(|f| *f != p.file))
    }

    /// The parts of an upload, by number.
    pub async fn parts(&self, upload: &str) -> Result<Vec<PartRow>> {
        let rows = sqlx::query(
            "SELECT part_number, file, size, etag, checksum FROM upload_parts WHERE upload_id = $1
             ORDER BY part_number",
        )
        .bind(upload)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PartRow {
                    part_number: r.try_get("part_number")?,
                    file: r.try_get("file")?,
                    size: r.try_get::<i64, _>("size")? as u64,
                    etag: r.try_get("etag")?,
                    checksum: r.try_get("checksum")?,
                })
            })
            .collect()
    }

    /// Forgets an upload and its parts; their files, to delete.
    pub async fn delete_upload(&self, upload: &str) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let files = forget_upload(&mut tx, upload).await?;
        tx.commit().await?;
        Ok(files)
    }

    /// Stores an S3 access key of an app (the secret sealed by the caller).
    pub async fn insert_s3_key(
        &self,
        access_key: &str,
        app: &str,
        sealed_secret: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO s3_keys (access_key, app, secret, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(access_key)
        .bind(app)
        .bind(sealed_secret)
        .bind(now_us())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every S3 access key (never its secret), by app, oldest first.
    pub async fn s3_keys(&self) -> Result<Vec<S3KeyRow>> {
        let rows = sqlx::query(
            "SELECT access_key, app, created_at FROM s3_keys ORDER BY app, created_at, access_key",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(S3KeyRow {
                    access_key: r.try_get("access_key")?,
                    app: r.try_get("app")?,
                    created_at_us: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Revokes (deletes) an S3 access key; whether it existed. Secrets are
    /// looked up in the store for every request, on every node, so the
    /// next request signed with it is refused.
    pub async fn delete_s3_key(&self, access_key: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM s3_keys WHERE access_key = $1")
            .bind(access_key)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// The app and sealed secret of an access key.
    pub async fn s3_key(&self, access_key: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT app, secret FROM s3_keys WHERE access_key = $1")
            .bind(access_key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("app")?, r.try_get("secret")?)))
            .transpose()
    }
}

/// Deletes an upload and its parts in `conn`'s transaction; the parts'
/// files, to delete once it is committed.
async fn forget_upload(conn: &mut sqlx::AnyConnection, upload: &str) -> Result<Vec<String>> {
    let files: Vec<String> =
        sqlx::query_scalar("DELETE FROM upload_parts WHERE upload_id = $1 RETURNING file")
            .bind(upload)
            .fetch_all(&mut *conn)
            .await?;
    sqlx::query("DELETE FROM uploads WHERE id = $1")
        .bind(upload)
        .execute(&mut *conn)
        .await?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, file: &str) -> ObjectRow {
        ObjectRow {
            bucket: "b".into(),
            key: key.into(),
            file: file.into(),
            size: 1,
            etag: "e".into(),
            content_type: None,
            metadata: vec![("a".into(), "1".into())],
            last_modified_us: 1,
            version_id: String::new(),
            attrs: ObjectAttrs::default(),
        }
    }

    #[tokio::test]
    async fn uploads_list_in_key_then_id_order_from_their_markers() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.create_bucket("b", "app").await.unwrap().unwrap();
        for (id, key) in [("u2", "k/a"), ("u1", "k/a"), ("u3", "k/b"), ("u4", "z")] {
            s.create_upload(&UploadRow {
                id: id.into(),
                bucket: "b".into(),
                key: key.into(),
                content_type: None,
                metadata: Vec::new(),
                attrs: ObjectAttrs::default(),
            })
            .await
            .unwrap();
        }
        let ids = |from: ListFrom, after: Option<&str>, prefix: &str| {
            let s = s.clone();
            let prefix = prefix.to_string();
            let after = after.map(str::to_string);
            async move {
                s.list_uploads("b", &prefix, &from, after.as_deref(), 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(u, _)| u.id)
                    .collect::<Vec<_>>()
            }
        };
        let from = |k: &str| ListFrom::After(k.into());
        assert_eq!(ids(from(""), None, "").await, ["u1", "u2", "u3", "u4"]);
        assert_eq!(ids(from(""), None, "k/").await, ["u1", "u2", "u3"]);
        // A key marker alone skips its key; with an upload id, only the
        // key's uploads up to that id.
        assert_eq!(ids(from("k/a"), None, "").await, ["u3", "u4"]);
        assert_eq!(ids(from("k/a"), Some("u1"), "").await, ["u2", "u3", "u4"]);
        // Past a common prefix: at the first key after all of it.
        let past = ListFrom::At(prefix_end("k/").unwrap());
        assert_eq!(ids(past, None, "").await, ["u4"]);
    }

    #[tokio::test]
    async fn buckets_objects_parts() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        assert_eq!(s.create_bucket("b", "app1").await.unwrap(), Ok(()));
        assert_eq!(
            s.create_bucket("b", "app2").await.unwrap(),
            Err("app1".into())
        );
        assert!(
            s.put_object(&obj("k", "f1"), &[])
                .await
                .unwrap()
                .freed
                .is_empty()
        );
        assert_eq!(
            s.put_object(&obj("k", "f2"), &[]).await.unwrap().freed,
            ["f1"]
        );
        s.put_object(&obj("dir/x", "f3"), &[]).await.unwrap();
        let l = s
            .list_objects("b", "dir/", &ListFrom::After(String::new()), 10)
            .await
            .unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].metadata, vec![("a".to_string(), "1".to_string())]);
        assert!(!s.delete_bucket("b").await.unwrap(), "not empty");
        assert_eq!(
            s.delete_object("b", "k", None, &[], false)
                .await
                .unwrap()
                .freed,
            ["f2"]
        );
        let u = UploadRow {
            id: "u1".into(),
            bucket: "b".into(),
            key: "big".into(),
            content_type: None,
            metadata: vec![],
            attrs: ObjectAttrs::default(),
        };
        s.create_upload(&u).await.unwrap();
        let part = |n, f: &str| PartRow {
            part_number: n,
            file: f.into(),
            size: 5,
            etag: "x".into(),
            checksum: None,
        };
        assert_eq!(s.put_part("u1", &part(2, "p2")).await.unwrap(), None);
        s.delete_object("b", "dir/x", None, &[], false)
            .await
            .unwrap();
        assert!(
            !s.delete_bucket("b").await.unwrap(),
            "an upload in progress keeps the bucket"
        );
        assert_eq!(s.put_part("u1", &part(1, "p1")).await.unwrap(), None);
        assert_eq!(
            s.put_part("u1", &part(1, "p1b")).await.unwrap(),
            Some("p1".into())
        );
        let parts = s.parts("u1").await.unwrap();
        assert_eq!(
            parts.iter().map(|p| p.file.as_str()).collect::<Vec<_>>(),
            ["p1b", "p2"]
        );
        assert_eq!(s.delete_upload("u1").await.unwrap().len(), 2);
        assert!(s.upload("u1").await.unwrap().is_none());
        assert!(s.delete_bucket("b").await.unwrap(), "empty now");
    }

    #[test]
    fn the_end_of_a_prefix_sorts_after_all_its_keys() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
        assert_eq!(prefix_end("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        let end = prefix_end("a/\u{10FFFF}").unwrap();
        assert!("a/\u{10FFFF}\u{10FFFF}x" < end.as_str());
    }

    /// Keys with U+10FFFF in them are listed under their prefix, in key
    /// order, and a read past a prefix ending in U+10FFFF moves on.
    #[tokio::test]
    async fn listing_reaches_keys_with_the_last_code_point() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.create_bucket("b", "app").await.unwrap().unwrap();
        for k in ["a/\u{10FFFF}x", "a/\u{10FFFF}", "a/z", "\u{10FFFF}", "b"] {
            s.put_object(&obj(k, k), &[]).await.unwrap();
        }
        let keys = |l: Vec<ObjectRow>| l.into_iter().map(|o| o.key).collect::<Vec<_>>();
        let all = keys(
            s.list_objects("b", "a/", &ListFrom::After(String::new()), 10)
                .await
                .unwrap(),
        );
        assert_eq!(all, ["a/z", "a/\u{10FFFF}", "a/\u{10FFFF}x"]);
        let past = prefix_end("a/\u{10FFFF}").unwrap();
        let rest = keys(
            s.list_objects("b", "", &ListFrom::At(past), 10)
                .await
                .unwrap(),
        );
        assert_eq!(rest, ["b", "\u{10FFFF}"]);
        let top = keys(
            s.list_objects("b", "", &ListFrom::After("b".into()), 10)
                .await
                .unwrap(),
        );
        assert_eq!(top, ["\u{10FFFF}"]);
    }

    /// A bucket deleted while an object is written into it: either the
    /// deletion sees the object and refuses, or the write sees no bucket
    /// and fails; never an object left in a bucket that is gone. Raced
    /// many times over (on PostgreSQL when the suite runs there, where
    /// the two transactions really run at once).
    #[tokio::test]
    async fn deleting_a_bucket_races_no_write_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        for i in 0..100 {
            let bucket = format!("race-{i}");
            s.create_bucket(&bucket, "app").await.unwrap().unwrap();
            let o = ObjectRow {
                bucket: bucket.clone(),
                ..obj("k", &format!("f{i}"))
            };
            let (deleted, put) = tokio::join!(s.delete_bucket(&bucket), s.put_object(&o, &[]));
            let orphan = s.object(&bucket, "k").await.unwrap().is_some()
                && s.bucket_owner(&bucket).await.unwrap().is_none();
            assert!(!orphan, "round {i}: an object outlived its bucket");
            match (deleted.unwrap(), put) {
                (true, Err(StoreError::NotFound(m))) => assert!(m.contains("create it"), "{m}"),
                (false, Ok(w)) if w.freed.is_empty() => {}
                other => panic!("round {i}: {other:?}"),
            }
        }
        let missing = s
            .create_upload(&UploadRow {
                id: "u".into(),
                bucket: "race-0-gone".into(),
                key: "k".into(),
                content_type: None,
                metadata: vec![],
                attrs: ObjectAttrs::default(),
            })
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))));
    }
}
