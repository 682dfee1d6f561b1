//! Apps and their revisions (the active one is marked in the transaction
//! that stores it), and deleting an app: [`Store::delete_app`] removes, in
//! one transaction, its rows in every table with an `app` column (found in
//! the schema, so a new table is not forgotten; usage totals aside), the
//! objects, uploads and parts of its buckets, and the spans of its
//! invocations, and returns the body files to delete after the commit.
//! [`Store::app_footprint`] counts what is left (the tests' proof).

use crate::{Result, Store, StoreError, now_us};
use nimbus_core::AppSpec;
use serde_json::from_str;
use sqlx::Row;
use std::collections::BTreeMap;

/// Tables with an `app` column whose rows outlive the app: usage totals,
/// for billing. Every other table with an `app` column is emptied of the
/// app's rows when it is deleted ([`Store::delete_app`]).
pub(crate) const KEPT_TABLES: &[&str] = &["usage_hourly", "storage_hourly"];

/// The tables whose rows belong to an app by their `app` column, from the
/// schema itself (so a table added later is not forgotten), less
/// [`KEPT_TABLES`].
async fn app_tables(conn: &mut sqlx::AnyConnection) -> Result<Vec<String>> {
    let sql = match crate::Backend::of(conn) {
        crate::Backend::Sqlite => {
            "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND p.name = 'app' ORDER BY m.name"
        }
        crate::Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.columns
             WHERE column_name = 'app' AND table_schema = current_schema() ORDER BY 1"
        }
    };
    let tables: Vec<String> = sqlx::query_scalar(sql).fetch_all(conn).await?;
    Ok(tables
        .into_iter()
        .filter(|t| !KEPT_TABLES.contains(&t.as_str()))
        .collect())
}

/// An app and its active revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    /// App name.
    pub name: String,
    /// Active revision number, if any.
    pub active_revision: Option<i64>,
    /// Creation time (µs since epoch).
    pub created_at_us: i64,
    /// Last activation time (µs since epoch).
    pub updated_at_us: i64,
}

/// One immutable revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRow {
    /// App name.
    pub app: String,
    /// Revision number, from 1.
    pub number: i64,
    /// What the revision runs.
    pub spec: AppSpec,
    /// The manifest text it was deployed from.
    pub manifest: String,
    /// Creation time (µs since epoch).
    pub created_at_us: i64,
}

fn revision_from(row: &sqlx::any::AnyRow) -> Result<RevisionRow> {
    let spec: String = row.try_get("spec")?;
    let app: String = row.try_get("app")?;
    let number: i64 = row.try_get("number")?;
    Ok(RevisionRow {
        spec: from_str(&spec)
            .map_err(|e| StoreError::Corrupt(format!("revision {number} of app {app}: {e}")))?,
        app,
        number,
        manifest: row.try_get("manifest")?,
        created_at_us: row.try_get("created_at")?,
    })
}

fn app_from(row: &sqlx::any::AnyRow) -> Result<AppRow> {
    Ok(AppRow {
        name: row.try_get("name")?,
        active_revision: row.try_get("active_revision")?,
        created_at_us: row.try_get("created_at")?,
        updated_at_us: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Stores a new revision of `spec.name` and makes it active, in one
    /// transaction. Returns the new revision number.
    pub async fn create_and_activate_revision(
        &self,
        spec: &AppSpec,
        manifest: &str,
    ) -> Result<i64> {
        let now = now_us();
        let spec_json = serde_json::to_string(spec).expect("AppSpec serializes");
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO apps (name, active_revision, created_at, updated_at) VALUES ($1, NULL, $2, $2)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&spec.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Two nodes deploying the app at once number their revisions in turn.
        self.lock_name(&mut tx, &format!("app/{}", spec.name))
            .await?;
        let next: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM revisions WHERE app = $1")
                .bind(&spec.name)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query("INSERT INTO revisions (app, number, spec, manifest, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&spec.name)
            .bind(next)
            .bind(&spec_json)
            .bind(manifest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE apps SET active_revision = $1, updated_at = $2 WHERE name = $3")
            .bind(next)
            .bind(now)
            .bind(&spec.name)
            .execute(&mut *tx)
            .await?;
        self.cluster_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Makes an existing revision the active one.
    pub async fn activate_revision(&self, app: &str, number: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE apps SET active_revision = $1, updated_at = $2
             WHERE name = $3 AND EXISTS (SELECT 1 FROM revisions WHERE app = $3 AND number = $1)",
        )
        .bind(number)
        .bind(now_us())
        .bind(app)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "app {app:?} has no revision {number}: see `nimbus revisions {app}`"
            )));
        }
        self.cluster_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// All apps, by name.
    pub async fn apps(&self) -> Result<Vec<AppRow>> {
        let rows = sqlx::query(
            "SELECT name, active_revision, created_at, updated_at FROM apps ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(app_from).collect()
    }

    /// One app.
    pub async fn app(&self, name: &str) -> Result<AppRow> {
        let row = sqlx::query(
            "SELECT name, active_revision, created_at, updated_at FROM apps WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no app named {name:?}: see `nimbus apps`")))?;
        app_from(&row)
    }

    /// Deletes an app and everything it owns, in one transaction: its
    /// revisions, its rows in every table with an `app` column (data,
    /// configuration and secrets, events, identity, S3 keys, records, logs
    /// and kept inputs),
    /// its buckets with their objects (every version), multipart uploads and
    /// parts, and the
    /// operation spans of its invocations; only the usage totals of
    /// [`KEPT_TABLES`] stay, for billing. Announced to the cluster in the
    /// same transaction. Returns the body files of the deleted objects and
    /// parts, for the caller to delete once this has returned (a file left
    /// behind by a crash is one no row points at: unreachable).
    ///
    /// On PostgreSQL the app's buckets are locked first, so a write into
    /// one that is under way finishes before they are emptied, and one that
    /// comes later finds its bucket gone (as with [`Store::delete_bucket`]).
    pub async fn delete_app(&self, name: &str) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        self.lock_name(&mut tx, &format!("app/{name}")).await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM apps WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!(
                "no app named {name:?}: see `nimbus apps`"
            )));
        }
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("SELECT name FROM buckets WHERE app = $1 FOR UPDATE")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        const BUCKETS: &str = "SELECT name FROM buckets WHERE app = $1";
        let mut files: Vec<String> = sqlx::query_scalar(&format!(
            "DELETE FROM objects WHERE bucket IN ({BUCKETS}) RETURNING file"
        ))
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let versions: Vec<String> = sqlx::query_scalar(&format!(
            "DELETE FROM object_versions WHERE bucket IN ({BUCKETS}) RETURNING file"
        ))
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        // Delete markers have no body.
        files.extend(versions.into_iter().filter(|f| !f.is_empty()));
        let parts: Vec<String> = sqlx::query_scalar(&format!(
            "DELETE FROM upload_parts WHERE upload_id IN
                (SELECT id FROM uploads WHERE bucket IN ({BUCKETS})) RETURNING file"
        ))
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        files.extend(parts);
        sqlx::query(&format!("DELETE FROM uploads WHERE bucket IN ({BUCKETS})"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        // Spans name their invocation, not their app: before the records.
        sqlx::query(
            "DELETE FROM op_spans WHERE invocation_id IN (SELECT id FROM invocations WHERE app = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        for table in app_tables(&mut tx).await? {
            sqlx::query(&format!("DELETE FROM {table} WHERE app = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM apps WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        self.cluster_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(files)
    }

    /// How many rows an app owns in each table (`op_spans`: of its
    /// invocations; `objects`, `uploads`, `upload_parts`: in its buckets),
    /// and how many object, upload and part rows no bucket or upload holds
    /// any more (keys ending in `" (orphaned)"`, of every app: rows nothing
    /// reaches, that a new bucket of the same name would). Diagnostics, and
    /// the tests' proof that deleting an app leaves nothing.
    #[doc(hidden)]
    pub async fn app_footprint(&self, app: &str) -> Result<BTreeMap<String, i64>> {
        const BUCKETS: &str = "(SELECT name FROM buckets WHERE app = $1)";
        let mut conn = self.pool.acquire().await?;
        let mut counts: Vec<(String, String)> = app_tables(&mut conn)
            .await?
            .into_iter()
            .map(|t| {
                let sql = format!("SELECT COUNT(*) FROM {t} WHERE app = $1");
                (t, sql)
            })
            .collect();
        counts.extend([
            (
                "apps".into(),
                "SELECT COUNT(*) FROM apps WHERE name = $1".into(),
            ),
            (
                "op_spans".into(),
                "SELECT COUNT(*) FROM op_spans WHERE invocation_id IN
                    (SELECT id FROM invocations WHERE app = $1)"
                    .into(),
            ),
            (
                "objects".into(),
                format!("SELECT COUNT(*) FROM objects WHERE bucket IN {BUCKETS}"),
            ),
            (
                "object_versions".into(),
                format!("SELECT COUNT(*) FROM object_versions WHERE bucket IN {BUCKETS}"),
            ),
            (
                "uploads".into(),
                format!("SELECT COUNT(*) FROM uploads WHERE bucket IN {BUCKETS}"),
            ),
            (
                "upload_parts".into(),
                format!(
                    "SELECT COUNT(*) FROM upload_parts WHERE upload_id IN
                        (SELECT id FROM uploads WHERE bucket IN {BUCKETS})"
                ),
            ),
        ]);
        let mut out = BTreeMap::new();
        for (what, sql) in counts {
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(app)
                .fetch_one(&mut *conn)
                .await?;
            out.insert(what, n);
        }
        for (what, sql) in [
            (
                "objects (orphaned)",
                "SELECT COUNT(*) FROM objects WHERE bucket NOT IN (SELECT name FROM buckets)",
            ),
            (
                "object_versions (orphaned)",
                "SELECT COUNT(*) FROM object_versions WHERE bucket NOT IN (SELECT name FROM buckets)",
            ),
            (
                "uploads (orphaned)",
                "SELECT COUNT(*) FROM uploads WHERE bucket NOT IN (SELECT name FROM buckets)",
            ),
            (
                "upload_parts (orphaned)",
                "SELECT COUNT(*) FROM upload_parts WHERE upload_id NOT IN (SELECT id FROM uploads)",
            ),
        ] {
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
            out.insert(what.to_string(), n);
        }
        Ok(out)
    }

    /// One revision.
    pub async fn revision(&self, app: &str, number: i64) -> Result<RevisionRow> {
        let row = sqlx::query("SELECT app, number, spec, manifest, created_at FROM revisions WHERE app = $1 AND number = $2")
            .bind(app)
            .bind(number)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("app {app:?} has no revision {number}: see `nimbus revisions {app}`"))
            })?;
        revision_from(&row)
    }

    /// Revisions of an app, newest first.
    pub async fn revisions(&self, app: &str) -> Result<Vec<RevisionRow>> {
        let rows = sqlx::query(
            "SELECT app, number, spec, manifest, created_at FROM revisions WHERE app = $1 ORDER BY number DESC",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revision_from).collect()
    }

    /// The active revision of every app that has one.
    pub async fn active_revisions(&self) -> Result<Vec<RevisionRow>> {
        let rows = sqlx::query(
            "SELECT r.app, r.number, r.spec, r.manifest, r.created_at FROM revisions r
             JOIN apps a ON a.name = r.app AND a.active_revision = r.number ORDER BY r.app",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revision_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::{FunctionSpec, Limits};

    fn spec(name: &str, comp: &str) -> AppSpec {
        AppSpec {
            name: name.into(),
            host: None,
            functions: [(
                "f".to_string(),
                FunctionSpec {
                    component: comp.repeat(64),
                    limits: Limits::default(),
                    env: Default::default(),
                    allowed_outbound_hosts: vec![],
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn revisions_are_numbered_and_activated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_test(dir.path()).await.unwrap();
        assert_eq!(
            store
                .create_and_activate_revision(&spec("a", "1"), "m1")
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .create_and_activate_revision(&spec("a", "2"), "m2")
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .create_and_activate_revision(&spec("b", "3"), "m3")
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.app("a").await.unwrap().active_revision, Some(2));
        store.activate_revision("a", 1).await.unwrap();
        let active = store.active_revisions().await.unwrap();
        assert_eq!(active.len(), 2);
        assert_eq!(active[0].number, 1);
        assert_eq!(active[0].spec, spec("a", "1"));
        assert!(matches!(
            store.activate_revision("a", 9).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.revisions("a").await.unwrap().len(), 2);
        drop(store);
        // State survives reopening.
        let store = Store::open_for_test(dir.path()).await.unwrap();
        assert_eq!(store.app("a").await.unwrap().active_revision, Some(1));
        store.delete_app("a").await.unwrap();
        assert!(store.app("a").await.is_err());
        assert!(store.revisions("a").await.unwrap().is_empty());
    }

    /// Everything an app owns goes with it, in every table; another app's
    /// rows and the usage totals stay; the body files come back to delete.
    #[tokio::test]
    async fn deleting_an_app_deletes_all_it_owns() {
        use crate::{ApiKeyRow, ObjectRow, PartRow, UploadRow, UserRow};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        for app in ["shop", "other"] {
            s.create_and_activate_revision(&spec(app, "1"), "m")
                .await
                .unwrap();
            s.kv_set(app, "carts", "c1", b"v", None).await.unwrap();
            s.doc_put(app, "orders", "o1", r#"{"a":1}"#, None)
                .await
                .unwrap();
            s.config_set(app, "", "K", "v", false).await.unwrap();
            s.insert_s3_key(&format!("NK{app}"), app, "sealed")
                .await
                .unwrap();
            s.insert_api_key(&ApiKeyRow {
                id: format!("key_{app}"),
                name: format!("ci-{app}"),
                hash: format!("h-{app}"),
                app: Some(app.into()),
                scopes: "data".into(),
                created_at_us: 1,
                revoked_at_us: None,
            })
            .await
            .unwrap();
            s.insert_user(&UserRow {
                app: app.into(),
                id: "u1".into(),
                email: "x@y".into(),
                password: "p".into(),
                roles: vec![],
                created_at_us: 1,
                updated_at_us: 1,
            })
            .await
            .unwrap();
            let bucket = format!("{app}-data");
            s.create_bucket(&bucket, app).await.unwrap().unwrap();
            // Two versions: one current, one noncurrent.
            s.set_bucket_versioning(&bucket, true).await.unwrap();
            for (n, file) in [(1, "object"), (2, "object-2")] {
                s.put_object(
                    &ObjectRow {
                        bucket: bucket.clone(),
                        key: "k".into(),
                        file: format!("{app}-{file}"),
                        size: 1,
                        etag: "e".into(),
                        content_type: None,
                        metadata: vec![],
                        last_modified_us: n,
                        version_id: String::new(),
                        attrs: Default::default(),
                    },
                    &[],
                )
                .await
                .unwrap();
            }
            let upload = format!("{app}-upload");
            s.create_upload(&UploadRow {
                id: upload.clone(),
                bucket,
                key: "big".into(),
                content_type: None,
                metadata: vec![],
                attrs: Default::default(),
            })
            .await
            .unwrap();
            s.put_part(
                &upload,
                &PartRow {
                    part_number: 1,
                    file: format!("{app}-part"),
                    size: 1,
                    etag: "e".into(),
                    checksum: None,
                },
            )
            .await
            .unwrap();
        }
        let before = s.app_footprint("shop").await.unwrap();
        for table in [
            "apps",
            "revisions",
            "kv",
            "docs",
            "config",
            "s3_keys",
            "api_keys",
            "users",
            "buckets",
            "objects",
            "object_versions",
            "uploads",
            "upload_parts",
        ] {
            assert_eq!(before[table], 1, "{table}: {before:?}");
        }
        let g = s.generation().await.unwrap();
        let mut files = s.delete_app("shop").await.unwrap();
        files.sort();
        assert_eq!(files, ["shop-object", "shop-object-2", "shop-part"]);
        assert!(
            s.generation().await.unwrap() > g,
            "announced to the cluster"
        );
        let after = s.app_footprint("shop").await.unwrap();
        assert!(after.values().all(|n| *n == 0), "{after:?}");
        assert_eq!(s.app_footprint("other").await.unwrap(), before, "other app");
        assert!(s.s3_key("NKshop").await.unwrap().is_none());
        assert!(s.bucket_owner("shop-data").await.unwrap().is_none());
        assert!(matches!(
            s.delete_app("shop").await,
            Err(StoreError::NotFound(_))
        ));
    }

    /// The tables deletion empties are found in the schema: every table
    /// with an `app` column, the kept usage totals aside.
    #[tokio::test]
    async fn every_table_of_apps_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        let mut conn = s.pool.acquire().await.unwrap();
        let tables = app_tables(&mut conn).await.unwrap();
        for t in [
            "revisions",
            "messages",
            "message_keys",
            "schedules",
            "kv",
            "docs",
            "config",
            "users",
            "refresh_tokens",
            "reset_tokens",
            "signing_keys",
            "api_keys",
            "s3_keys",
            "buckets",
            "invocations",
            "logs",
            "failed_inputs",
        ] {
            assert!(tables.iter().any(|x| x == t), "{t} not in {tables:?}");
        }
        for t in KEPT_TABLES {
            assert!(!tables.iter().any(|x| x == t), "{t} would be deleted");
        }
    }
}
