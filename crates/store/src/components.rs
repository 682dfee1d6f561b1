//! Content-addressed component files: component bytes under
//! `DIR/components`, named by their SHA-256 (the data dir, or the shared
//! dir of a cluster). An upload streams through `durable.rs` (hashed and
//! size-checked on the way, temp → fsync → rename) and is refused if its
//! hash is not the one it was uploaded as, so a crash never exposes a
//! partial file and nodes never see one.

use crate::StoreError;
use crate::durable::{self, WriteError};
use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The body was larger than allowed.
    #[error(
        "component is larger than the upload limit of {limit} bytes: build it in release mode, or raise the server's --max-component-mb"
    )]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The bytes did not hash to the name they were uploaded under.
    #[error("upload was corrupted: expected SHA-256 {expected}, got {actual}; retry the upload")]
    HashMismatch {
        /// Hash the client announced.
        expected: String,
        /// Hash of the bytes received.
        actual: String,
    },
    /// The client's body stream failed.
    #[error("upload interrupted: {0}")]
    Body(String),
    /// Writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Component bytes on disk, named by their SHA-256.
#[derive(Debug, Clone)]
pub struct ComponentStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl ComponentStore {
    /// Opens (creating) the component directory under `data_dir`.
    pub fn open(data_dir: &Path) -> crate::Result<ComponentStore> {
        let root = data_dir.join("components");
        let tmp = data_dir.join("tmp");
        for d in [&root, &tmp] {
            std::fs::create_dir_all(d)
                .map_err(StoreError::io(format!("creating {}", d.display())))?;
        }
        Ok(ComponentStore { root, tmp })
    }

    /// Where the component with this hash lives (whether or not it exists).
    /// `hash` must be validated hex: it becomes part of a path.
    pub fn path(&self, hash: &str) -> PathBuf {
        assert!(
            nimbus_core::names::is_sha256_hex(hash),
            "component hash must be validated"
        );
        self.root.join(&hash[..2]).join(format!("{hash}.wasm"))
    }

    /// Whether the component is stored.
    pub fn contains(&self, hash: &str) -> bool {
        self.path(hash).is_file()
    }

    /// Reads a whole component.
    pub async fn read(&self, hash: &str) -> crate::Result<Vec<u8>> {
        let path = self.path(hash);
        tokio::fs::read(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound(format!(
                    "component {hash} is not stored: upload it again with `nimbus deploy`"
                ))
            } else {
                StoreError::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                }
            }
        })
    }

    /// Streams a component to disk, checking its size and hash. It becomes
    /// visible only complete and verified (temp file, fsync, rename).
    /// Returns the number of bytes stored.
    pub async fn put_stream<S, E>(
        &self,
        expected: &str,
        limit: u64,
        body: S,
    ) -> Result<u64, PutError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let final_path = self.path(expected);
        let tmp_path = self.tmp.join(format!("upload-{}", uuid::Uuid::now_v7()));
        let mut hasher = Sha256::new();
        let size = durable::write_temp(&tmp_path, limit, body, &mut hasher)
            .await
            .map_err(|e| match e {
                WriteError::TooLarge => PutError::TooLarge { limit },
                WriteError::Body(m) => PutError::Body(m),
                WriteError::Store(e) => PutError::Store(e),
            })?;
        let actual = hex::encode(hasher.finalize());
        if actual != expected {
            durable::discard(&tmp_path).await;
            return Err(PutError::HashMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        if let Err(e) = durable::publish(&tmp_path, &final_path).await {
            durable::discard(&tmp_path).await;
            return Err(e.into());
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn put_verifies_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = ComponentStore::open(dir.path()).unwrap();
        let hash = hex::encode(Sha256::digest(b"hello world"));
        assert!(!store.contains(&hash));
        let n = store
            .put_stream(&hash, 100, chunks(&[b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(n, 11);
        assert_eq!(store.read(&hash).await.unwrap(), b"hello world");

        let other = hex::encode(Sha256::digest(b"x"));
        let e = store
            .put_stream(&other, 100, chunks(&[b"y"]))
            .await
            .unwrap_err();
        assert!(matches!(e, PutError::HashMismatch { .. }), "{e}");
        assert!(!store.contains(&other));
        let e = store
            .put_stream(&other, 3, chunks(&[b"xx", b"xx"]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("upload limit of 3 bytes"), "{e}");
        // Nothing partial is left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
