//! What is set on an object version after it is written (its tags and
//! ACL, in its `attrs`), and on a bucket (tags, ACL, Public Access Block,
//! CORS rules).
//! The caller checks S3's rules; the store keeps what it is given.

use crate::objects::{ObjectAttrs, attrs_json, attrs_of};
use crate::{Result, Store, StoreError};

/// A tag set: key → value, in the order given.
pub type Tags = Vec<(String, String)>;

impl Store {
    /// Replaces the tags of an object's current version, or of the
    /// version named; the id of the version tagged, or `None` if there is
    /// no such object or version (a delete marker has no tags).
    pub async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        tags: &Tags,
    ) -> Result<Option<String>> {
        self.update_attrs(bucket, key, version, |a| {
            a.tags = tags.clone();
            Ok(())
        })
        .await
    }

    /// Makes an object's current version, or the version named, public
    /// (readable without signing) or private; as [`Store::set_object_tags`].
    pub async fn set_object_public(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        public: bool,
    ) -> Result<Option<String>> {
        self.update_attrs(bucket, key, version, |a| {
            a.public = public;
            Ok(())
        })
        .await
    }

    /// Changes the attrs of an object's current version, or of the version
    /// named, under the object's lock; an error of `change` changes
    /// nothing.
    pub(crate) async fn update_attrs(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        change: impl FnOnce(&mut ObjectAttrs) -> Result<()>,
    ) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        self.lock_name(&mut tx, &format!("object/{bucket}/{key}"))
            .await?;
        // The current version first, then (by id) a noncurrent one.
        let mut found = None;
        for table in ["objects", "object_versions"] {
            let marker = if table == "object_versions" {
                " AND delete_marker = 0"
            } else {
                ""
            };
            let mut b = crate::builder::QueryBuilder::new(
                self.backend,
                format!("SELECT version_id, attrs FROM {table} WHERE bucket = "),
            );
            b.push_bind(bucket.to_string())
                .push(" AND key = ")
                .push_bind(key.to_string())
                .push(marker);
            match version {
                Some(v) => {
                    b.push(" AND version_id = ").push_bind(v.to_string());
                }
                None if table == "object_versions" => break,
                None => {}
            }
            if let Some(row) = b.build().fetch_optional(&mut *tx).await? {
                use sqlx::Row;
                let id: String = row.try_get("version_id")?;
                let attrs = attrs_of(&row.try_get::<String, _>("attrs")?)?;
                found = Some((table, id, attrs));
                break;
            }
        }
        let Some((table, id, mut attrs)) = found else {
            return Ok(None);
        };
        change(&mut attrs)?;
        sqlx::query(&format!(
            "UPDATE {table} SET attrs = $1 WHERE bucket = $2 AND key = $3 AND version_id = $4"
        ))
        .bind(attrs_json(&attrs))
        .bind(bucket)
        .bind(key)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// A bucket's tags; `None` when it has none.
    pub async fn bucket_tags(&self, bucket: &str) -> Result<Option<Tags>> {
        let tags: Option<Option<String>> =
            sqlx::query_scalar("SELECT tags FROM buckets WHERE name = $1")
                .bind(bucket)
                .fetch_optional(&self.pool)
                .await?;
        tags.flatten()
            .map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::Corrupt(format!("bucket tags: {e}")))
            })
            .transpose()
    }

    /// Replaces a bucket's tags (`None`: removes them).
    pub async fn set_bucket_tags(&self, bucket: &str, tags: Option<&Tags>) -> Result<()> {
        let json = tags.map(|t| serde_json::to_string(t).expect("strings serialize"));
        self.update_bucket(bucket, "tags", json).await
    }
}

/// One CORS rule of a bucket, as S3 names its parts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CorsRule {
    /// Its id, if given.
    pub id: Option<String>,
    /// Origins it allows (each with at most one `*`).
    pub allowed_origins: Vec<String>,
    /// Methods it allows (GET, PUT, POST, DELETE, HEAD).
    pub allowed_methods: Vec<String>,
    /// Request headers it allows (each with at most one `*`).
    pub allowed_headers: Vec<String>,
    /// Response headers a browser may show the page.
    pub expose_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer.
    pub max_age_seconds: Option<i32>,
}

impl Store {
    /// A bucket's CORS rules; `None` when it has none.
    pub async fn bucket_cors(&self, bucket: &str) -> Result<Option<Vec<CorsRule>>> {
        let cors: Option<Option<String>> =
            sqlx::query_scalar("SELECT cors FROM buckets WHERE name = $1")
                .bind(bucket)
                .fetch_optional(&self.pool)
                .await?;
        cors.flatten()
            .map(|c| {
                serde_json::from_str(&c)
                    .map_err(|e| StoreError::Corrupt(format!("bucket CORS rules: {e}")))
            })
            .transpose()
    }

    /// Replaces a bucket's CORS rules (`None`: removes them).
    pub async fn set_bucket_cors(&self, bucket: &str, rules: Option<&[CorsRule]>) -> Result<()> {
        let json = rules.map(|r| serde_json::to_string(r).expect("strings serialize"));
        self.update_bucket(bucket, "cors", json).await
    }
}

/// A bucket's Public Access Block, as S3 names its four settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse ACLs that make the bucket or its objects public.
    pub block_public_acls: bool,
    /// Ignore public ACLs: nothing of the bucket is read without signing.
    pub ignore_public_acls: bool,
    /// Refuse public bucket policies (Nimbus has none: kept as set).
    pub block_public_policy: bool,
    /// Restrict public buckets (kept as set).
    pub restrict_public_buckets: bool,
}

/// Who owns a bucket and how public it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketAccess {
    /// The owning app.
    pub owner: String,
    /// ACL `public-read`: anyone may list it.
    pub public: bool,
    /// Its Public Access Block, if set.
    pub block: Option<PublicAccessBlock>,
}

impl Store {
    /// A bucket's owner, ACL and Public Access Block.
    pub async fn bucket_access(&self, bucket: &str) -> Result<Option<BucketAccess>> {
        use sqlx::Row;
        let row = sqlx::query("SELECT app, acl, public_access_block FROM buckets WHERE name = $1")
            .bind(bucket)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let block: Option<String> = r.try_get("public_access_block")?;
        Ok(Some(BucketAccess {
            owner: r.try_get("app")?,
            public: r.try_get::<Option<String>, _>("acl")?.as_deref() == Some("public-read"),
            block: block
                .map(|b| {
                    serde_json::from_str(&b).map_err(|e| {
                        StoreError::Corrupt(format!("bucket public access block: {e}"))
                    })
                })
                .transpose()?,
        }))
    }

    /// Makes a bucket listable without signing (`public-read`), or not.
    pub async fn set_bucket_public(&self, bucket: &str, public: bool) -> Result<()> {
        let acl = public.then_some("public-read");
        self.update_bucket(bucket, "acl", acl.map(str::to_string))
            .await
    }

    /// Sets (or, with `None`, removes) a bucket's Public Access Block.
    pub async fn set_public_access_block(
        &self,
        bucket: &str,
        block: Option<&PublicAccessBlock>,
    ) -> Result<()> {
        let json = block.map(|b| serde_json::to_string(b).expect("booleans serialize"));
        self.update_bucket(bucket, "public_access_block", json)
            .await
    }

    /// Sets one of a bucket's settings (`column`, never from a request);
    /// a missing bucket is [`StoreError::NotFound`].
    pub(crate) async fn update_bucket(
        &self,
        bucket: &str,
        column: &str,
        value: Option<String>,
    ) -> Result<()> {
        let done = sqlx::query(&format!("UPDATE buckets SET {column} = $1 WHERE name = $2"))
            .bind(value)
            .bind(bucket)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound(format!(
                "bucket {bucket:?} does not exist: create it first"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectRow;

    #[tokio::test]
    async fn tags_of_versions_and_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.create_bucket("b", "app").await.unwrap().unwrap();
        assert_eq!(s.bucket_tags("b").await.unwrap(), None);
        let t = |k: &str| vec![(k.to_string(), "v".to_string())];
        s.set_bucket_tags("b", Some(&t("env"))).await.unwrap();
        assert_eq!(s.bucket_tags("b").await.unwrap(), Some(t("env")));
        s.set_bucket_tags("b", None).await.unwrap();
        assert_eq!(s.bucket_tags("b").await.unwrap(), None);
        assert!(s.set_bucket_tags("nope", None).await.is_err());
        let rules = vec![CorsRule {
            allowed_origins: vec!["https://*.example.com".into()],
            allowed_methods: vec!["GET".into()],
            max_age_seconds: Some(60),
            ..Default::default()
        }];
        assert_eq!(s.bucket_cors("b").await.unwrap(), None);
        s.set_bucket_cors("b", Some(&rules)).await.unwrap();
        assert_eq!(s.bucket_cors("b").await.unwrap(), Some(rules));
        s.set_bucket_cors("b", None).await.unwrap();
        assert_eq!(s.bucket_cors("b").await.unwrap(), None);

        s.set_bucket_versioning("b", true).await.unwrap();
        let o = |file: &str| ObjectRow {
            bucket: "b".into(),
            key: "k".into(),
            file: file.into(),
            size: 1,
            etag: "e".into(),
            content_type: None,
            metadata: Vec::new(),
            last_modified_us: 1,
            version_id: String::new(),
            attrs: ObjectAttrs {
                headers: vec![("cache-control".into(), "no-cache".into())],
                tags: t("first"),
                public: false,
                ..Default::default()
            },
        };
        let v1 = s.put_object(&o("f1"), &[]).await.unwrap().version_id;
        let v2 = s.put_object(&o("f2"), &[]).await.unwrap().version_id;
        assert_eq!(
            s.set_object_tags("b", "k", None, &t("now")).await.unwrap(),
            Some(v2.clone())
        );
        assert_eq!(
            s.set_object_tags("b", "k", Some(&v1), &t("old"))
                .await
                .unwrap(),
            Some(v1.clone())
        );
        let cur = s.object("b", "k").await.unwrap().unwrap();
        assert_eq!(cur.attrs.tags, t("now"));
        assert_eq!(cur.attrs.headers[0].1, "no-cache", "headers are kept");
        let old = s.object_version("b", "k", &v1).await.unwrap().unwrap();
        assert_eq!(old.object.attrs.tags, t("old"));
        assert_eq!(
            s.set_object_tags("b", "nope", None, &t("x")).await.unwrap(),
            None
        );
        assert_eq!(
            s.set_object_tags("b", "k", Some("nope"), &t("x"))
                .await
                .unwrap(),
            None
        );
    }
}
