//! Object bodies on the local filesystem.
//!
//! A body streams to a temporary file while its MD5 (the S3 ETag) and size
//! are computed; it is fsynced and renamed to its final name (a fresh id)
//! before its metadata row is committed, so a crash never makes a partial
//! body visible. Temporary files of uploads cut short are removed by
//! [`BlobFiles::open`] at start-up; a body renamed into place whose row was
//! never committed stays on disk, unreferenced and unreachable. Multipart
//! uploads are concatenated here ([`BlobFiles::concat`]). Memory use is one
//! chunk, whatever the size.

use crate::StoreError;
use crate::durable::{self, WriteError};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use tokio::io::AsyncSeekExt;

/// A stored body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// File id (relative name under the blob root).
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// MD5 of the bytes, hex.
    pub md5: String,
}

/// Why a body could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Larger than allowed.
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// The client's stream failed.
    #[error("the upload was interrupted: {0}")]
    Body(String),
    /// Disk.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Object bodies under `DATA_DIR/objects`.
#[derive(Debug, Clone)]
pub struct BlobFiles {
    root: PathBuf,
    tmp: PathBuf,
}

impl BlobFiles {
    /// Opens (creating) the directories.
    pub fn open(data_dir: &Path) -> crate::Result<BlobFiles> {
        let root = data_dir.join("objects");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(StoreError::io(format!("creating {}", tmp.display())))?;
        // Uploads cut short by a crash: never visible, now removed.
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(BlobFiles { root, tmp })
    }

    /// The path of a stored file. `file` comes from [`BlobInfo::file`]
    /// (a UUID, so safe in a path).
    pub fn path(&self, file: &str) -> PathBuf {
        debug_assert!(file.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
        // UUIDv7s share their leading (time) digits: fan out on the last two.
        self.root.join(&file[file.len() - 2..]).join(file)
    }

    /// Streams a body to disk; it becomes visible under its id only once
    /// complete and durable.
    pub async fn put_stream<S, E>(&self, limit: u64, body: S) -> Result<BlobInfo, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let tmp_path = self.tmp.join(&id);
        let mut md5 = Md5::new();
        let size = durable::write_temp(&tmp_path, limit, body, &mut md5)
            .await
            .map_err(|e| match e {
                WriteError::TooLarge => BlobError::TooLarge(limit),
                WriteError::Body(m) => BlobError::Body(m),
                WriteError::Store(e) => BlobError::Store(e),
            })?;
        let md5 = hex::encode(md5.finalize());
        if let Err(e) = durable::publish(&tmp_path, &self.path(&id)).await {
            durable::discard(&tmp_path).await;
            return Err(e.into());
        }
        Ok(BlobInfo {
            file: id,
            size,
            md5,
        })
    }

    /// Opens a stored body at `offset`, for reading `len` bytes.
    pub async fn open_range(&self, file: &str, offset: u64) -> crate::Result<tokio::fs::File> {
        let path = self.path(file);
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        if offset > 0 {
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(StoreError::io("seeking in an object body"))?;
        }
        Ok(f)
    }

    /// Joins stored parts into a new body (multipart completion); the parts
    /// stay until their rows are gone.
    pub async fn concat(&self, parts: &[String]) -> Result<BlobInfo, BlobError> {
        let mut files = Vec::with_capacity(parts.len());
        for p in parts {
            files.push(self.open_range(p, 0).await?);
        }
        let stream = futures::stream::iter(files)
            .flat_map(|f| tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
        self.put_stream(u64::MAX, Box::pin(stream)).await
    }

    /// Deletes a stored body (missing is fine).
    pub async fn delete(&self, file: &str) {
        let _ = tokio::fs::remove_file(self.path(file)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn put_read_concat() {
        let dir = tempfile::tempdir().unwrap();
        let b = BlobFiles::open(dir.path()).unwrap();
        let one = b
            .put_stream(100, chunks(&[b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(one.size, 11);
        assert_eq!(one.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let mut f = b.open_range(&one.file, 6).await.unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "world");
        let two = b.put_stream(100, chunks(&[b"!"])).await.unwrap();
        let joined = b
            .concat(&[one.file.clone(), two.file.clone()])
            .await
            .unwrap();
        assert_eq!(joined.size, 12);
        assert!(matches!(
            b.put_stream(3, chunks(&[b"toolong"])).await,
            Err(BlobError::TooLarge(3))
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects/tmp"))
                .unwrap()
                .count(),
            0,
            "no temp file left"
        );
        b.delete(&one.file).await;
        assert!(b.open_range(&one.file, 0).await.is_err());
    }
}
