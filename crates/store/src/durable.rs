//! The one way the store writes a streamed file: to a temporary file,
//! hashed and size-checked on the way, fsynced, then renamed into place and
//! its directory synced. A crash leaves either nothing or the whole file
//! under its final name. Directories it creates have their parents synced,
//! and a failed sync fails the write. Components and object bodies both
//! use it.

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
/// A sync that fails fails the write: nothing is acknowledged that a
/// power loss could take back.
pub(crate) async fn publish(tmp: &Path, dest: &Path) -> Result<(), StoreError> {
    let dir = dest.parent().expect("a stored file has a directory");
    create_dirs(dir).await?;
    tokio::fs::rename(tmp, dest)
        .await
        .map_err(StoreError::io(format!(
            "moving a file to {}",
            dest.display()
        )))?;
    sync_dir(dir).await
}

/// Creates `dir` and any missing parents, syncing the parent of each one
/// it creates, so that the new directories survive a power loss.
pub(crate) async fn create_dirs(dir: &Path) -> Result<(), StoreError> {
    if tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if tokio::fs::metadata(d).await.is_ok() {
            break;
        }
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(StoreError::io(format!("creating {}", dir.display())))?;
    for d in missing {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).await?;
        }
    }
    Ok(())
}

/// fsyncs a directory (its entries: names created, renamed or removed).
pub(crate) async fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d)?.sync_all())
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(StoreError::io(format!("syncing {}", dir.display())))
}

/// Removes a temporary file (missing is fine).
pub(crate) async fn discard(tmp: &Path) {
    let _ = tokio::fs::remove_file(tmp).await;
}
