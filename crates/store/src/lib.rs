//! Nimbus's durable state.
//!
//! * [`Store`]: apps, immutable numbered revisions and which one is active,
//!   data, events, identity and object metadata, invocation records and
//!   guest logs, in SQL: the embedded SQLite (one file in the data dir, one
//!   node) or PostgreSQL (shared by a cluster's nodes), both through
//!   `sqlx`'s `Any` driver with run-time queries. One set of statements
//!   (`$n` placeholders, portable types such as BIGINT and TEXT), one set
//!   of migrations per backend (`migrations/sqlite`, `migrations/postgres`),
//!   and a [`Backend`] switch in the few places the dialects differ (JSON
//!   documents, the counter increment, `BEGIN IMMEDIATE` against row
//!   locks, `SKIP LOCKED`, advisory locks, query plans). No feature exists
//!   on one backend only.
//! * [`ComponentStore`]: component bytes, content-addressed by SHA-256, as
//!   files under the data dir. Uploads stream to a temporary file that is
//!   hashed, fsynced and renamed into place: a crash never leaves a partial
//!   component visible.
//! * [`RecordWriter`]: the background task that batches invocation records
//!   into the database, so the request path never waits on a write.
//!
//! Durability: the embedded SQLite commits with `synchronous = FULL`, so a
//! commit is on disk before it returns, and so is anything acknowledged
//! after it (docs/DURABILITY.md; [`fault_point`] is the crash tests' hook).
//!
//! Storage quotas are kept by SQL triggers on `kv`, `docs`, `objects` and
//! `upload_parts` (the `storage_quotas` migrations), not by Rust
//! bookkeeping: every row change adds its byte delta to its app's
//! `storage_usage` in the same statement, and a growing change past the
//! kind's `storage_quotas` row aborts with `nimbus storage quota exceeded:
//! KIND`, which `From<sqlx::Error>` turns into [`StoreError::QuotaExceeded`].
//! No write path (a guest's batch, the REST API, S3, expiry, `delete_app`)
//! can forget them, and the count is exact and transactional.
//!
//! Invariants: nothing here knows about HTTP or wasm; the store holds bytes
//! and rows, and the callers give them meaning. Field paths are validated
//! before they are written into SQL text, and every value is bound.

mod apps;
mod blobs;
mod builder;
mod changes;
mod cluster;
mod components;
mod docs;
mod durable;
mod events;
mod identity;
mod kv;
mod lock;
mod metering;
mod objects;
mod records;
mod sockets;
mod tags;
mod versions;

pub use apps::{AppRow, RevisionRow};
pub use blobs::{BlobError, BlobFiles, BlobInfo};
pub use cluster::{CLUSTER_CHANNEL, NODE_LIVE_FOR, NodeRow};
pub use components::{ComponentStore, PutError};
pub use docs::{DocError, DocPage, DocQuery, Document, MAX_OFFSET, MAX_PAGE, MAX_PAGE_BYTES, Op};
pub use events::{
    ChannelDepth, Enqueued, EventOp, EventResult, Leased, MessageRow, NewMessage, Settlement,
};
pub use identity::{ApiKeyRow, RefreshUse, SigningKeyRow, TokenRevocation, UserRow};
pub use kv::{ConfigRow, KeyPage, KvError};
pub use lock::{LockMode, ObjectLock, Period, Retention};
pub use metering::{StorageRow, StoredBytes, spawn_storage_sampler};
pub use objects::{
    ListFrom, NULL_VERSION, ObjectAttrs, ObjectChecksum, ObjectRow, PartRow, S3KeyRow, UploadRow,
    prefix_end,
};
pub use records::{
    CLIENT_OPS, InvocationRow, LogQuery, OpSpanRow, RecordWriter, RecordWriterConfig, SocketUsage,
    UsageBy, UsageRow, WEBSOCKETS,
};
pub use sockets::{MAX_INLINE_PAYLOAD, RELAY_CHANNEL, RELAY_KEEP, SocketRow};
pub use tags::{BucketAccess, CorsRule, PublicAccessBlock, Tags};
pub use versions::{Removed, VersionFrom, VersionRow, Versioning, Written};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Errors of the store. Messages say what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// The write would take its app past a storage quota; nothing was
    /// written.
    #[error("{}", .0.refusal())]
    QuotaExceeded(StorageKind),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Object Lock forbids the change (a retained or held version, a
    /// locked bucket's versioning); nothing changed.
    #[error("{0}")]
    Locked(String),
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database is not one Nimbus can use, or not reachable.
    #[error("{0}")]
    Config(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // The quota triggers refuse with this message (see the
        // storage_quotas migrations).
        if let sqlx::Error::Database(db) = &e
            && let Some(kind) = db.message().strip_prefix(QUOTA_REFUSAL)
            && let Some(kind) = StorageKind::named(kind)
        {
            return StoreError::QuotaExceeded(kind);
        }
        StoreError::Db(e)
    }
}

/// How the storage quota triggers start their error.
const QUOTA_REFUSAL: &str = "nimbus storage quota exceeded: ";

/// What an app stores, as quotas count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// Keys and values of KV entries.
    Kv,
    /// Document bodies (their JSON text).
    Docs,
    /// Object bodies, with the parts of unfinished multipart uploads.
    Objects,
}

impl StorageKind {
    /// Every kind.
    pub const ALL: [StorageKind; 3] = [StorageKind::Kv, StorageKind::Docs, StorageKind::Objects];

    /// Its name in the database and in `nimbus up --quota-NAME-mb`.
    pub fn name(self) -> &'static str {
        match self {
            StorageKind::Kv => "kv",
            StorageKind::Docs => "docs",
            StorageKind::Objects => "objects",
        }
    }

    /// The kind of this [`StorageKind::name`].
    pub fn named(name: &str) -> Option<StorageKind> {
        StorageKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The message of a write refused by this kind's quota.
    fn refusal(self) -> String {
        let (what, things) = match self {
            StorageKind::Kv => ("key-value", "keys"),
            StorageKind::Docs => ("document", "documents"),
            StorageKind::Objects => ("object", "objects or abort unfinished multipart uploads"),
        };
        format!(
            "the app is at its {what} storage quota, so this write was refused and nothing was changed: delete {things} to make room, or ask the operator to raise it (nimbus up --quota-{}-mb)",
            self.name()
        )
    }
}

/// Per-app storage quotas in bytes, by kind; `None`: no quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageQuotas {
    /// KV keys and values.
    pub kv: Option<u64>,
    /// Document bodies.
    pub docs: Option<u64>,
    /// Object bodies and unfinished uploads' parts.
    pub objects: Option<u64>,
}

impl StorageQuotas {
    /// The quota of one kind.
    pub fn of(&self, kind: StorageKind) -> Option<u64> {
        match kind {
            StorageKind::Kv => self.kv,
            StorageKind::Docs => self.docs,
            StorageKind::Objects => self.objects,
        }
    }
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

/// A test-only crash point: when the environment variable
/// `NIMBUS_FAULT_POINT` names `name`, the process aborts here at once (as
/// a `kill -9` or a power cut would stop it: no destructor, no flush). The
/// crash tests use it to stop a node between a commit and what follows.
/// Unset (always, outside those tests), it costs one load of a static.
pub fn fault_point(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var("NIMBUS_FAULT_POINT").ok());
    if point.as_deref() == Some(name) {
        eprintln!("nimbus: fault point {name}: aborting");
        std::process::abort();
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which SQL engine holds the state. The statements are shared; the few
/// that differ (JSON documents, counters, row locks) pick by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one SQLite file in the data dir, one node.
    Sqlite,
    /// A PostgreSQL server shared by any number of nodes.
    Postgres,
}

impl Backend {
    /// The backend a connection talks to.
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Handle to the SQL database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The PostgreSQL URL (for LISTEN connections), if that is the backend.
    url: Option<std::sync::Arc<str>>,
    /// Readers waiting for documents to change.
    changes: std::sync::Arc<changes::DocChanges>,
    /// This node's id: the owner of the leases it takes.
    node: std::sync::Arc<str>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Opens (creating if needed) the embedded SQLite database in `data_dir`
    /// and brings its schema up to date.
    pub async fn open_embedded(data_dir: &Path) -> Result<Store> {
        let store = Store::connect_embedded(data_dir).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens (creating if needed) the embedded SQLite database in `data_dir`
    /// without looking at its schema (`nimbus migrate`; everything else
    /// uses [`Store::open_embedded`]).
    pub async fn connect_embedded(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(StoreError::io(format!(
            "creating data dir {}",
            data_dir.display()
        )))?;
        sqlx::any::install_default_drivers();
        let path: PathBuf = data_dir.join("nimbus.db");
        let opts = AnyConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", path.display()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers never wait for the writer. 64 MiB of page
                    // cache per connection (SQLite's default is 2 MiB): the
                    // record writer's index inserts (trace ids are random)
                    // would otherwise read pages back from the OS on every
                    // batch.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;
                         PRAGMA cache_size = -65536;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        Ok(Store {
            pool,
            backend: Backend::Sqlite,
            url: None,
            changes: Default::default(),
            node: "local".into(),
        })
    }

    /// Connects to a PostgreSQL database shared by every node
    /// (`postgres://user:password@host:port/database`). With `migrate`,
    /// brings its schema up to date first (nodes starting at once take
    /// turns: the migrator holds an advisory lock); without, refuses a
    /// database whose schema is behind this binary.
    pub async fn open_postgres(url: &str, migrate: bool, max_connections: u32) -> Result<Store> {
        let store = Store::connect_postgres(url, max_connections).await?;
        if migrate {
            store.migrate().await?;
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }

    /// For tests: the database of [`test_database_url`] if there is one,
    /// else the embedded database in `data_dir`.
    #[doc(hidden)]
    pub async fn open_for_test(data_dir: &Path) -> Result<Store> {
        match test_database_url(data_dir).await? {
            Some(url) => Store::open_postgres(&url, true, 8).await,
            None => Store::open_embedded(data_dir).await,
        }
    }

    /// Connects to a PostgreSQL database without looking at its schema
    /// (`nimbus migrate`; everything else uses [`Store::open_postgres`]).
    pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<Store> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Config(format!(
                "{url:?} is not a PostgreSQL URL: use postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            )));
        }
        let unreachable = |e: sqlx::Error| {
            StoreError::Config(format!(
                "cannot connect to PostgreSQL at {}: {e}; check that the server runs and the URL, user and password are right",
                redact_url(url)
            ))
        };
        // One attempt first: an unreachable server is reported at once,
        // not after the pool's retries.
        {
            use sqlx::Connection;
            sqlx::PgConnection::connect(url)
                .await
                .map_err(unreachable)?
                .close()
                .await
                .map_err(unreachable)?;
        }
        sqlx::any::install_default_drivers();
        let opts = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(unreachable)?;
        let changes: std::sync::Arc<changes::DocChanges> = Default::default();
        let url: std::sync::Arc<str> = url.into();
        changes.start_cluster(pool.clone(), url.clone());
        Ok(Store {
            pool,
            backend: Backend::Postgres,
            url: Some(url),
            changes,
            node: "local".into(),
        })
    }

    /// Brings the schema up to date; the migrations applied now.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        if self.migrations_as_recorded().await {
            // Nothing pending, nothing the migrator would refuse: skip its
            // second connection, lock and table checks (a node's restart
            // is a few ms faster).
            return Ok(Vec::new());
        }
        let pending = self.pending_migrations().await;
        self.migrator().run(&self.pool).await?;
        Ok(pending)
    }

    /// Whether the database recorded exactly this binary's migrations, each
    /// applied successfully with the same checksum: then the migrator has
    /// nothing to do and nothing to refuse (it refuses a failed migration,
    /// a changed one, or one this binary does not know).
    async fn migrations_as_recorded(&self) -> bool {
        let (Ok(succeeded), Ok(rows)) = (
            sqlx::query_as::<_, (i64, Vec<u8>)>(
                "SELECT version, checksum FROM _sqlx_migrations WHERE success = TRUE",
            )
            .fetch_all(&self.pool)
            .await,
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(&self.pool)
                .await,
        ) else {
            return false;
        };
        let known: Vec<_> = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .collect();
        rows == known.len() as i64
            && succeeded.len() == known.len()
            && succeeded.iter().all(|(version, checksum)| {
                known
                    .iter()
                    .any(|m| m.version == *version && *m.checksum == checksum[..])
            })
    }

    /// Fails if migrations this binary knows are not applied yet.
    pub async fn check_schema(&self) -> Result<()> {
        let missing = self.pending_migrations().await;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Config(format!(
                "the database schema is behind this version of Nimbus (missing: {}); run `nimbus migrate --database URL` first",
                missing.join(", ")
            )))
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The migrations this binary knows that the database lacks ("VERSION
    /// DESCRIPTION"); all of them for a new database, which has no
    /// migrations table yet.
    async fn pending_migrations(&self) -> Vec<String> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        self.migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect()
    }

    /// The same store, for the node with this id (a stable id per node:
    /// the leases it takes are marked with it).
    pub fn with_node_id(mut self, id: &str) -> Store {
        self.node = id.into();
        self
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The PostgreSQL URL, if that is the backend.
    pub fn database_url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The underlying pool, for crates that add their own tables.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that is going to write after reading. SQLite: takes
    /// the write lock at once (`BEGIN IMMEDIATE`), so a concurrent writer
    /// makes it wait (busy timeout) rather than fail with
    /// SQLITE_BUSY_SNAPSHOT later. PostgreSQL: a plain transaction; the
    /// statements lock the rows they change.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Within a write transaction, waits until no other transaction holds
    /// `name` (PostgreSQL: a transaction-scoped advisory lock on its hash).
    /// For a read-then-write that must not interleave with another node's
    /// on the same thing. SQLite's write transaction already excludes all
    /// other writers.
    pub(crate) async fn lock_name(&self, conn: &mut sqlx::AnyConnection, name: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query(
                "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS l",
            )
            .bind(name)
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// For tests: the PostgreSQL database of the data dir `data_dir`, if it
/// has one — the one named in its `test-database-url` file (the same one
/// when it is opened again; a test cluster's nodes share one), else, when
/// the environment variable `NIMBUS_TEST_DATABASE` names a PostgreSQL
/// server, a new one on it, recorded in that file.
#[doc(hidden)]
pub async fn test_database_url(data_dir: &Path) -> Result<Option<String>> {
    let marker = data_dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Ok(Some(url));
    }
    let admin = match std::env::var("NIMBUS_TEST_DATABASE") {
        Ok(admin) if !admin.is_empty() => admin,
        _ => return Ok(None),
    };
    let url = create_test_database(&admin).await?;
    std::fs::create_dir_all(data_dir)
        .and_then(|_| std::fs::write(&marker, &url))
        .map_err(StoreError::io("writing the test database's URL"))?;
    Ok(Some(url))
}

/// Creates a new, empty database on the PostgreSQL server of `admin_url`
/// (a URL whose user may create databases) and returns its URL. For tests
/// and benchmarks: each gets a database of its own.
#[doc(hidden)]
pub async fn create_test_database(admin_url: &str) -> Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await.map_err(|e| {
        StoreError::Config(format!(
            "cannot connect to the test PostgreSQL server at {}: {e}",
            redact_url(admin_url)
        ))
    })?;
    let name = format!("nimbus_t_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    let base = match admin_url.find('?') {
        Some(q) => &admin_url[..q],
        None => admin_url,
    };
    let slash = base
        .rfind('/')
        .filter(|&i| i > base.find("://").map_or(0, |s| s + 2));
    Ok(match slash {
        Some(i) => format!("{}/{name}{}", &base[..i], &admin_url[base.len()..]),
        None => format!("{base}/{name}{}", &admin_url[base.len()..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrating_says_what_it_applied() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::connect_embedded(dir.path()).await.unwrap();
        assert!(
            s.check_schema().await.is_err(),
            "a new database lacks the schema"
        );
        let applied = s.migrate().await.unwrap();
        assert_eq!(applied.len(), SQLITE_MIGRATIONS.iter().count());
        assert!(applied[0].starts_with("1 "), "{applied:?}");
        s.check_schema().await.unwrap();
        assert!(
            s.migrate().await.unwrap().is_empty(),
            "nothing left to apply"
        );
    }

    #[tokio::test]
    async fn an_up_to_date_start_still_refuses_what_the_migrator_refuses() {
        // The start skips the migrator when the database recorded exactly
        // this binary's migrations; anything else still reaches it.
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_embedded(dir.path()).await.unwrap();
        assert!(s.migrations_as_recorded().await);
        assert!(s.migrate().await.unwrap().is_empty());
        let tamper = |sql: &'static str| {
            let pool = s.pool.clone();
            async move { sqlx::query(sql).execute(&pool).await.unwrap() }
        };
        // A migration changed since it was applied.
        tamper("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 1").await;
        assert!(!s.migrations_as_recorded().await);
        let e = s.migrate().await.unwrap_err().to_string();
        assert!(
            e.contains("migration 1 was previously applied but has been modified"),
            "{e}"
        );
        // One that failed half-way.
        let original = SQLITE_MIGRATIONS.iter().next().unwrap().checksum.to_vec();
        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1")
            .bind(original)
            .execute(&s.pool)
            .await
            .unwrap();
        assert!(s.migrations_as_recorded().await);
        tamper("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 1").await;
        assert!(!s.migrations_as_recorded().await);
        assert!(s.migrate().await.is_err(), "a dirty migration is refused");
        tamper("UPDATE _sqlx_migrations SET success = TRUE WHERE version = 1").await;
        // One a newer binary applied.
        tamper(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (999999, 'from the future', TRUE, X'00', 0)",
        )
        .await;
        assert!(!s.migrations_as_recorded().await);
        assert!(
            s.migrate().await.is_err(),
            "an unknown migration is refused"
        );
    }

    #[tokio::test]
    async fn the_embedded_database_is_tuned_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_embedded(dir.path()).await.unwrap();
        // Every pooled connection, not only the first.
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(s.pool.acquire().await.unwrap());
        }
        for c in &mut conns {
            let get = |p: &'static str| format!("PRAGMA {p}");
            let mode: String = sqlx::query_scalar(&get("journal_mode"))
                .fetch_one(&mut **c)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            for (pragma, want) in [
                ("synchronous", 2i64),
                ("foreign_keys", 1),
                ("busy_timeout", 10_000),
                ("cache_size", -65_536),
            ] {
                let v: i64 = sqlx::query_scalar(&get(pragma))
                    .fetch_one(&mut **c)
                    .await
                    .unwrap();
                assert_eq!(v, want, "PRAGMA {pragma}");
            }
        }
    }
}
