//! Nimbus's durable state.
//!
//! * [`Store`]: apps, immutable numbered revisions and which one is active,
//!   invocation records and guest logs, in SQL (SQLite through `sqlx` by
//!   default; statements use `$n` placeholders and portable types so a
//!   PostgreSQL backend can run the same SQL).
//! * [`ComponentStore`]: component bytes, content-addressed by SHA-256, as
//!   files under the data dir. Uploads stream to a temporary file that is
//!   hashed, fsynced and renamed into place: a crash never leaves a partial
//!   component visible.
//! * [`RecordWriter`]: the background task that batches invocation records
//!   into the database, so the request path never waits on a write.
//!
//! Invariant: nothing here knows about HTTP or wasm; the store holds bytes
//! and rows, and the callers give them meaning.

mod apps;
mod blobs;
mod changes;
mod components;
mod docs;
mod durable;
mod events;
mod identity;
mod kv;
mod metering;
mod objects;
mod records;

pub use apps::{AppRow, RevisionRow};
pub use blobs::{BlobError, BlobFiles, BlobInfo};
pub use components::{ComponentStore, PutError};
pub use docs::{DocError, DocQuery, Document, Op};
pub use events::{
    ChannelDepth, Enqueued, EventOp, EventResult, Leased, MessageRow, NewMessage, Settlement,
};
pub use identity::{ApiKeyRow, RefreshUse, SigningKeyRow, UserRow};
pub use kv::{ConfigRow, KeyPage, KvError};
pub use metering::{StorageRow, StoredBytes, spawn_storage_sampler};
pub use objects::{ObjectRow, PartRow, UploadRow};
pub use records::{
    CLIENT_OPS, InvocationRow, LogQuery, OpSpanRow, RecordWriter, RecordWriterConfig, UsageBy,
    UsageRow,
};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Errors of the store. Messages say what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
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
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the SQL database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Readers waiting for documents to change.
    changes: std::sync::Arc<changes::DocChanges>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the embedded SQLite database in `data_dir`
    /// and brings its schema up to date.
    pub async fn open_embedded(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(StoreError::io(format!(
            "creating data dir {}",
            data_dir.display()
        )))?;
        let path: PathBuf = data_dir.join("nimbus.db");
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // 64 MiB of page cache per connection (SQLite's default is 2 MiB):
            // the record writer's index inserts (trace ids are random) would
            // otherwise read pages back from the OS on every batch.
            .pragma("cache_size", "-65536");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Store {
            pool,
            changes: Default::default(),
        })
    }

    /// The underlying pool, for crates that add their own tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Deletes an app's rows from `tables` (each has an `app` column), in
    /// one transaction. Table names are constants of this crate.
    pub(crate) async fn delete_app_rows(&self, app: &str, tables: &[&str]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for table in tables {
            sqlx::query(&format!("DELETE FROM {table} WHERE app = $1"))
                .bind(app)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
