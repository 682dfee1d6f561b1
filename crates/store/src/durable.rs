//! The one way the store writes a streamed file: to a temporary file,
//! hashed and size-checked on the way, fsynced, then renamed into place and
//! its directory synced. A crash leaves either nothing or the whole file
//! under its final name. Components and object bodies both use it.

use crate::StoreError;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::Digest;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Why a stream could not be written.
pub(crate) enum WriteError {
    /// More than `limit` bytes.
    TooLarge,
    /// The body stream failed.
    Body(String),
    /// Disk.
    Store(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

/// Streams `body` into a new file at `tmp`, feeding every chunk to
/// `hasher`, and fsyncs it. On error the temporary file is removed.
/// Returns the size.
pub(crate) async fn write_temp<S, E, H>(
    tmp: &Path,
    limit: u64,
    mut body: S,
    hasher: &mut H,
) -> Result<u64, WriteError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
    H: Digest,
{
    let result = async {
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(StoreError::io(format!("creating {}", tmp.display())))?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| WriteError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(WriteError::TooLarge);
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(StoreError::io(format!("writing {}", tmp.display())))?;
        }
        file.sync_all()
            .await
            .map_err(StoreError::io(format!("syncing {}", tmp.display())))?;
        Ok(size)
    }
    .await;
    if result.is_err() {
        discard(tmp).await;
    }
    result
}

/// Moves a complete, synced temporary file to `dest` (creating its
/// directory) and syncs that directory, so the rename itself is durable.
pub(crate) async fn publish(tmp: &Path, dest: &Path) -> Result<(), StoreError> {
    let dir = dest.parent().expect("a stored file has a directory");
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(StoreError::io(format!("creating {}", dir.display())))?;
    tokio::fs::rename(tmp, dest)
        .await
        .map_err(StoreError::io(format!(
            "moving a file to {}",
            dest.display()
        )))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes a temporary file (missing is fine).
pub(crate) async fn discard(tmp: &Path) {
    let _ = tokio::fs::remove_file(tmp).await;
}
