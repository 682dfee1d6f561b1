//! Apps and their revisions.

use crate::{Result, Store, StoreError, now_us};
use nimbus_core::AppSpec;
use serde_json::from_str;
use sqlx::Row;

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

    /// Deletes an app with all its revisions.
    pub async fn delete_app(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM revisions WHERE app = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM apps WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no app named {name:?}: see `nimbus apps`"
            )));
        }
        self.cluster_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(())
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
}
