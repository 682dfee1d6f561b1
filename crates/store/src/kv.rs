//! Key-value stores and configuration rows.
//!
//! Every key-value operation is one statement (no read-modify-write
//! transaction), so concurrent writers never conflict: increments and
//! compare-and-swap are decided inside the database (SQLite or
//! PostgreSQL). Expired values (TTL) are invisible at once and deleted by
//! [`Store::purge_expired_kv`]. Listings are prefix pages.

use crate::{Backend, Result, Store, StoreError, now_us};
use sqlx::Row;

/// Why a key-value write was refused.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The stored value is not a decimal integer (increment).
    #[error("the value of key {0:?} is not an integer, so it cannot be incremented")]
    NotANumber(String),
    /// The result would not fit in a signed 64-bit integer.
    #[error("incrementing key {0:?} would overflow a 64-bit integer; nothing was changed")]
    Overflow(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for KvError {
    fn from(e: sqlx::Error) -> Self {
        KvError::Store(e.into())
    }
}

/// A page of keys (the type is the API's).
pub use nimbus_api::KeyPage;

/// One configuration row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigRow {
    /// `""` for app-wide values, else the function.
    pub function: String,
    /// Name.
    pub key: String,
    /// Value (for secrets: the sealed form; never shown).
    pub value: String,
    /// Whether it is a secret.
    pub secret: bool,
    /// Last change (µs).
    pub updated_at_us: i64,
}

/// Everything after `prefix` in key order starts below this bound.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Adds `$4` to the decimal integer in a value (absent or expired: 0) in
/// one statement, refusing (no row) a value that is not a canonical
/// decimal i64 or a sum that would overflow.
const INCREMENT_SQLITE: &str = "INSERT INTO kv (app, store, key, value, expires_at, updated_at)
     VALUES ($1, $2, $3, CAST(CAST($4 AS TEXT) AS BLOB), NULL, $5)
     ON CONFLICT (app, store, key) DO UPDATE
     SET value = CAST(CAST(
            CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= $5 THEN 0
                 ELSE CAST(CAST(kv.value AS TEXT) AS INTEGER) END + $4 AS TEXT) AS BLOB),
         expires_at = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= $5
                           THEN NULL ELSE kv.expires_at END,
         updated_at = $5
     WHERE (kv.expires_at IS NOT NULL AND kv.expires_at <= $5)
        OR (length(kv.value) BETWEEN 1 AND 20
            AND CAST(kv.value AS TEXT) NOT GLOB '*[^0-9-]*'
            AND CAST(CAST(CAST(kv.value AS TEXT) AS INTEGER) AS TEXT) = CAST(kv.value AS TEXT)
            AND CASE WHEN $4 >= 0
                     THEN CAST(CAST(kv.value AS TEXT) AS INTEGER) <= 9223372036854775807 - $4
                     ELSE CAST(CAST(kv.value AS TEXT) AS INTEGER) >= -9223372036854775808 - $4 END)
     RETURNING CAST(value AS TEXT)";

/// The same on PostgreSQL: the value's bytes read as text with
/// `encode(.., 'escape')` (never fails; non-ASCII bytes become escapes that
/// are not digits), the sum in NUMERIC so an overflow is a refusal, not an
/// error. CASE guards every cast.
const INCREMENT_POSTGRES: &str = "INSERT INTO kv (app, store, key, value, expires_at, updated_at)
     VALUES ($1, $2, $3, convert_to(CAST($4 AS TEXT), 'UTF8'), NULL, $5)
     ON CONFLICT (app, store, key) DO UPDATE
     SET value = convert_to(CAST(
            CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= $5 THEN CAST($4 AS NUMERIC)
                 WHEN encode(kv.value, 'escape') ~ '^-?[0-9]{1,19}$'
                 THEN CAST(encode(kv.value, 'escape') AS NUMERIC) + $4 END AS TEXT), 'UTF8'),
         expires_at = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= $5
                           THEN NULL ELSE kv.expires_at END,
         updated_at = $5
     WHERE (kv.expires_at IS NOT NULL AND kv.expires_at <= $5)
        OR CASE WHEN encode(kv.value, 'escape') ~ '^-?[0-9]{1,19}$'
                THEN CAST(CAST(encode(kv.value, 'escape') AS NUMERIC) AS TEXT) = encode(kv.value, 'escape')
                     AND CAST(encode(kv.value, 'escape') AS NUMERIC) + $4
                         BETWEEN -9223372036854775808 AND 9223372036854775807
                ELSE FALSE END
     RETURNING convert_from(value, 'UTF8')";

impl Store {
    /// A live value.
    pub async fn kv_get(&self, app: &str, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM kv WHERE app = $1 AND store = $2 AND key = $3
               AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(app)
        .bind(store)
        .bind(key)
        .bind(now_us())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Sets a value, expiring after `ttl_ms` if given.
    pub async fn kv_set(
        &self,
        app: &str,
        store: &str,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<()> {
        let now = now_us();
        sqlx::query(
            "INSERT INTO kv (app, store, key, value, expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (app, store, key) DO UPDATE
             SET value = excluded.value, expires_at = excluded.expires_at,
                 updated_at = excluded.updated_at",
        )
        .bind(app)
        .bind(store)
        .bind(key)
        .bind(value)
        // A TTL too long to represent means: never expires.
        .bind(ttl_ms.and_then(|t| {
            i64::try_from(t)
                .ok()
                .and_then(|t| t.checked_mul(1000))
                .and_then(|t| now.checked_add(t))
        }))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes a key; whether a live value was there.
    pub async fn kv_delete(&self, app: &str, store: &str, key: &str) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM kv WHERE app = $1 AND store = $2 AND key = $3
             RETURNING CASE WHEN expires_at IS NULL OR expires_at > $4 THEN 1 ELSE 0 END AS live",
        )
        .bind(app)
        .bind(store)
        .bind(key)
        .bind(now_us())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match r {
            Some(row) => row.try_get::<i64, _>("live")? == 1,
            None => false,
        })
    }

    /// Keys starting with `prefix`, after `after`, at most `limit`.
    pub async fn kv_list(
        &self,
        app: &str,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage> {
        let lower = match after {
            Some(a) if a >= prefix => a.to_string(),
            _ => String::new(),
        };
        let mut keys: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM kv WHERE app = $1 AND store = $2
               AND key >= $3 AND key < $4 AND key > $5
               AND (expires_at IS NULL OR expires_at > $6)
             ORDER BY key LIMIT $7",
        )
        .bind(app)
        .bind(store)
        .bind(prefix)
        .bind(prefix_end(prefix))
        .bind(lower)
        .bind(now_us())
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = keys.len() > limit as usize;
        keys.truncate(limit as usize);
        Ok(KeyPage {
            cursor: if more { keys.last().cloned() } else { None },
            keys,
        })
    }

    /// Adds `delta` to a decimal integer value (absent or expired counts as
    /// 0) in one statement; the new value.
    pub async fn kv_increment(
        &self,
        app: &str,
        store: &str,
        key: &str,
        delta: i64,
    ) -> Result<i64, KvError> {
        let now = now_us();
        let sql = match self.backend {
            Backend::Sqlite => INCREMENT_SQLITE,
            Backend::Postgres => INCREMENT_POSTGRES,
        };
        let row: Option<String> = sqlx::query_scalar(sql)
            .bind(app)
            .bind(store)
            .bind(key)
            .bind(delta)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(v) => v
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("counter {key:?} holds {v:?}")).into()),
            None => {
                // Refused: either not a number, or the sum would overflow.
                let current = self.kv_get(app, store, key).await?;
                let numeric = current
                    .as_deref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .is_some_and(|v| v.parse::<i64>().is_ok());
                Err(if numeric {
                    KvError::Overflow(key.to_string())
                } else {
                    KvError::NotANumber(key.to_string())
                })
            }
        }
    }

    /// Sets `key` to `new` if its live value is `expected` (`None`: absent);
    /// whether it did.
    pub async fn kv_compare_and_swap(
        &self,
        app: &str,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool> {
        let now = now_us();
        let r = match expected {
            None => {
                sqlx::query(
                    "INSERT INTO kv (app, store, key, value, expires_at, updated_at)
                 VALUES ($1, $2, $3, $4, NULL, $5)
                 ON CONFLICT (app, store, key) DO UPDATE
                 SET value = excluded.value, expires_at = NULL, updated_at = excluded.updated_at
                 WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= $5",
                )
                .bind(app)
                .bind(store)
                .bind(key)
                .bind(new)
                .bind(now)
                .execute(&self.pool)
                .await?
            }
            Some(old) => {
                sqlx::query(
                    "UPDATE kv SET value = $4, expires_at = NULL, updated_at = $6
                 WHERE app = $1 AND store = $2 AND key = $3 AND value = $5
                   AND (expires_at IS NULL OR expires_at > $6)",
                )
                .bind(app)
                .bind(store)
                .bind(key)
                .bind(new)
                .bind(old)
                .bind(now)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(r.rows_affected() == 1)
    }

    /// Deletes expired values; how many.
    pub async fn purge_expired_kv(&self) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= $1")
                .bind(now_us())
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Sets a configuration value (`function` `""`: app-wide).
    pub async fn config_set(
        &self,
        app: &str,
        function: &str,
        key: &str,
        value: &str,
        secret: bool,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO config (app, function, key, value, secret, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (app, function, key) DO UPDATE
             SET value = excluded.value, secret = excluded.secret, updated_at = excluded.updated_at",
        )
        .bind(app)
        .bind(function)
        .bind(key)
        .bind(value)
        .bind(i64::from(secret))
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
        self.cluster_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a configuration value; whether it existed.
    pub async fn config_unset(&self, app: &str, function: &str, key: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let removed =
            sqlx::query("DELETE FROM config WHERE app = $1 AND function = $2 AND key = $3")
                .bind(app)
                .bind(function)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if removed {
            self.cluster_changed(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Every configuration row of an app.
    pub async fn config_rows(&self, app: &str) -> Result<Vec<ConfigRow>> {
        let rows = sqlx::query(
            "SELECT function, key, value, secret, updated_at FROM config WHERE app = $1
             ORDER BY function, key",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ConfigRow {
                    function: r.try_get("function")?,
                    key: r.try_get("key")?,
                    value: r.try_get("value")?,
                    secret: r.try_get::<i64, _>("secret")? != 0,
                    updated_at_us: r.try_get("updated_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kv_operations() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_test(dir.path()).await.unwrap();
        s.kv_set("a", "s", "k1", b"v1", None).await.unwrap();
        assert_eq!(
            s.kv_get("a", "s", "k1").await.unwrap(),
            Some(b"v1".to_vec())
        );
        assert_eq!(
            s.kv_get("b", "s", "k1").await.unwrap(),
            None,
            "apps are apart"
        );
        // TTL
        s.kv_set("a", "s", "tmp", b"x", Some(1)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(s.kv_get("a", "s", "tmp").await.unwrap(), None);
        assert!(!s.kv_delete("a", "s", "tmp").await.unwrap());
        // Counters
        assert_eq!(s.kv_increment("a", "s", "n", 5).await.unwrap(), 5);
        assert_eq!(s.kv_increment("a", "s", "n", -2).await.unwrap(), 3);
        assert_eq!(s.kv_get("a", "s", "n").await.unwrap(), Some(b"3".to_vec()));
        assert!(matches!(
            s.kv_increment("a", "s", "k1", 1).await,
            Err(KvError::NotANumber(_))
        ));
        assert_eq!(
            s.kv_increment("a", "s", "big", i64::MAX).await.unwrap(),
            i64::MAX
        );
        assert!(matches!(
            s.kv_increment("a", "s", "big", 1).await,
            Err(KvError::Overflow(_))
        ));
        assert_eq!(
            s.kv_increment("a", "s", "big", -1).await.unwrap(),
            i64::MAX - 1
        );
        s.kv_set("a", "s", "forever", b"x", Some(u64::MAX))
            .await
            .unwrap();
        assert_eq!(
            s.kv_get("a", "s", "forever").await.unwrap(),
            Some(b"x".to_vec())
        );
        // CAS
        assert!(
            s.kv_compare_and_swap("a", "s", "c", None, b"1")
                .await
                .unwrap()
        );
        assert!(
            !s.kv_compare_and_swap("a", "s", "c", None, b"2")
                .await
                .unwrap()
        );
        assert!(
            !s.kv_compare_and_swap("a", "s", "c", Some(b"9"), b"2")
                .await
                .unwrap()
        );
        assert!(
            s.kv_compare_and_swap("a", "s", "c", Some(b"1"), b"2")
                .await
                .unwrap()
        );
        // Prefix pages
        for i in 0..25 {
            s.kv_set("a", "p", &format!("user:{i:02}"), b"", None)
                .await
                .unwrap();
        }
        s.kv_set("a", "p", "other", b"", None).await.unwrap();
        let p1 = s.kv_list("a", "p", "user:", None, 10).await.unwrap();
        assert_eq!(p1.keys.len(), 10);
        assert_eq!(p1.keys[0], "user:00");
        let p3 = s
            .kv_list("a", "p", "user:", Some("user:19"), 10)
            .await
            .unwrap();
        assert_eq!(
            p3.keys,
            ["user:20", "user:21", "user:22", "user:23", "user:24"]
        );
        assert_eq!(p3.cursor, None);
        assert_eq!(p1.cursor.as_deref(), Some("user:09"));
    }
}
