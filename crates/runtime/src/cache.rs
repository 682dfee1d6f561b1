//! Compiled code: an on-disk cache of native artifacts keyed by component
//! hash and engine configuration, and a bounded in-memory LRU of pre-linked
//! components (`ProxyPre` for a WASI 0.2 handler, `ServicePre` for a 0.3
//! one) ready to instantiate.
//!
//! A cache file is `HASH-ENGINEKEY.cwasm`; its last 32 bytes are the
//! SHA-256 of the rest, so a damaged file is recompiled, never loaded.
//! `Runtime::load` lets one load of a component run at a time: concurrent
//! first requests for a cold function wait for it instead of each
//! compiling it again.

use crate::RuntimeError;
use crate::host::Host;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// A component compiled and linked, ready for fresh instances.
pub struct Loaded {
    /// SHA-256 of the component bytes.
    pub hash: String,
    pub(crate) pre: HandlerPre,
}

impl Loaded {
    /// The WASI version of the handler it exports: `"0.2"` or `"0.3"`.
    pub fn wasi(&self) -> &'static str {
        match self.pre {
            HandlerPre::P2(_) => "0.2",
            HandlerPre::P3(_) => "0.3",
        }
    }
}

/// The handler a component exports, pre-linked.
pub(crate) enum HandlerPre {
    /// `wasi:http/incoming-handler@0.2`: called once, answers through its
    /// response outparam.
    P2(ProxyPre<Host>),
    /// `wasi:http/handler@0.3.0`: an async function returning the response,
    /// run inside the store's event loop.
    P3(ServicePre<Host>),
}

/// The 0.3 handler's export; 0.x lookups ignore the patch version.
const P3_HANDLER: &str = "wasi:http/handler@0.3.0";

/// Where a [`Loaded`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// It was already in memory.
    Memory,
    /// Native code was read back from the disk cache (no compilation).
    DiskCache,
    /// It was compiled now, taking this long.
    Compiled(Duration),
}

impl LoadSource {
    /// Short word for progress output.
    pub fn describe(&self) -> String {
        match self {
            LoadSource::Memory => "loaded (in memory)".into(),
            LoadSource::DiskCache => "loaded (compile cache)".into(),
            LoadSource::Compiled(d) => format!("compiled in {} ms", d.as_millis()),
        }
    }
}

pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_key: String,
    lru: parking_lot::Mutex<lru::LruCache<String, Arc<Loaded>>>,
}

impl CodeCache {
    pub(crate) fn new(
        engine: &Engine,
        dir: &Path,
        capacity: usize,
    ) -> Result<CodeCache, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            RuntimeError::Io(format!("creating compile cache {}: {e}", dir.display()))
        })?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", h.finish()),
            lru: parking_lot::Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(capacity.max(1)).unwrap(),
            )),
        })
    }

    pub(crate) fn get(&self, hash: &str) -> Option<Arc<Loaded>> {
        self.lru.lock().get(hash).cloned()
    }

    fn artifact_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// Loads from memory, else the disk cache, else compiles `bytes()`.
    /// Blocking: call from a blocking thread.
    pub(crate) fn load_blocking(
        &self,
        engine: &Engine,
        linker: &Linker<Host>,
        hash: &str,
        bytes: impl FnOnce() -> Result<Vec<u8>, RuntimeError>,
    ) -> Result<(Arc<Loaded>, LoadSource), RuntimeError> {
        if let Some(l) = self.get(hash) {
            return Ok((l, LoadSource::Memory));
        }
        let path = self.artifact_path(hash);
        let mut source = LoadSource::DiskCache;
        let component = match read_artifact(engine, &path) {
            Some(c) => c,
            None => {
                let (component, took) = self.compile_to_disk(engine, hash, &path, bytes)?;
                source = LoadSource::Compiled(took);
                component
            }
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let not_a_handler = |e: wasmtime::Error| RuntimeError::NotAHandler(format!("{e:#}"));
        let pre = if component.get_export_index(None, P3_HANDLER).is_some() {
            HandlerPre::P3(ServicePre::new(pre).map_err(not_a_handler)?)
        } else {
            HandlerPre::P2(ProxyPre::new(pre).map_err(not_a_handler)?)
        };
        let loaded = Arc::new(Loaded {
            hash: hash.to_string(),
            pre,
        });
        self.lru.lock().put(hash.to_string(), loaded.clone());
        Ok((loaded, source))
    }

    /// Makes sure the disk cache holds native code for `hash`, compiling
    /// `bytes()` if it does not, without taking room in memory: for
    /// functions past the in-memory capacity, so that their first request
    /// reads code back instead of compiling. Blocking: call from a
    /// blocking thread. (A file that is present is checked when it is
    /// loaded, as always.)
    pub(crate) fn precompile_blocking(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: impl FnOnce() -> Result<Vec<u8>, RuntimeError>,
    ) -> Result<LoadSource, RuntimeError> {
        if self.get(hash).is_some() {
            return Ok(LoadSource::Memory);
        }
        let path = self.artifact_path(hash);
        if path.is_file() {
            return Ok(LoadSource::DiskCache);
        }
        let (_, took) = self.compile_to_disk(engine, hash, &path, bytes)?;
        Ok(LoadSource::Compiled(took))
    }

    /// Compiles `bytes()` and writes the native code to `path`; returns
    /// the component and how long the compilation took. A cache that
    /// cannot be written is only a warning: it costs a compile at the next
    /// load, it breaks nothing.
    fn compile_to_disk(
        &self,
        engine: &Engine,
        hash: &str,
        path: &Path,
        bytes: impl FnOnce() -> Result<Vec<u8>, RuntimeError>,
    ) -> Result<(Component, Duration), RuntimeError> {
        let bytes = bytes()?;
        let start = Instant::now();
        let component = compile(engine, &bytes)?;
        let took = start.elapsed();
        let written = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("serializing native code: {e:#}")))
            .and_then(|art| write_artifact(&self.dir, hash, path, &art));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not write compile cache entry");
        }
        Ok((component, took))
    }

    pub(crate) fn len(&self) -> usize {
        self.lru.lock().len()
    }
}

/// Bytes of the SHA-256 that ends every cache file.
const DIGEST: usize = 32;

/// The native code cached at `path`, if there is a whole and unaltered
/// file: its last 32 bytes are the SHA-256 of the rest, so a file cut
/// short or damaged on disk (a crash, a full disk, a bad sector) is
/// recompiled, never loaded. One that does not check is removed.
fn read_artifact(engine: &Engine, path: &Path) -> Option<Component> {
    use sha2::Digest;
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read compile cache entry; recompiling");
            return None;
        }
    };
    let intact = data.len() > DIGEST && {
        let (art, digest) = data.split_at(data.len() - DIGEST);
        sha2::Sha256::digest(art).as_slice() == digest
    };
    if !intact {
        tracing::warn!(path = %path.display(), "compile cache entry is damaged; recompiling");
        let _ = std::fs::remove_file(path);
        return None;
    }
    // SAFETY: the artifact was written by `Component::serialize` of an
    // engine with the same compatibility hash (it is in the file name),
    // into a directory only Nimbus writes, and its checksum matches what
    // was written; wasmtime re-checks the header.
    unsafe { Component::deserialize(engine, &data[..data.len() - DIGEST]) }.ok()
}

/// Writes native code and its checksum to a temporary file, fsyncs it,
/// renames it to `path` and fsyncs the directory.
fn write_artifact(dir: &Path, hash: &str, path: &Path, art: &[u8]) -> std::io::Result<()> {
    use sha2::Digest;
    use std::io::Write;
    let tmp = dir.join(format!(".{hash}-{}.tmp", uuid::Uuid::now_v7()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(art)?;
        f.write_all(&sha2::Sha256::digest(art))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, RuntimeError> {
    if is_core_module(bytes) {
        return Err(RuntimeError::InvalidComponent(
            "this is a core WebAssembly module, not a component: build for the wasm32-wasip2 target, or wrap it with `wasm-tools component new`".into(),
        ));
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(RuntimeError::InvalidComponent(
            "this file is not WebAssembly (it does not start with \\0asm): point `component` at the .wasm file your build produces".into(),
        ));
    }
    Component::new(engine, bytes).map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))
}

/// A core module has version 1 and layer 0 in its preamble; a component has layer 1.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[4..8] == [1, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty component: enough to compile, serialize and read back.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_damaged_cache_file_is_recompiled_never_loaded() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cwasm");
        let art = Component::new(&engine, EMPTY).unwrap().serialize().unwrap();
        write_artifact(dir.path(), "x", &path, &art).unwrap();
        assert!(
            read_artifact(&engine, &path).is_some(),
            "a whole file loads"
        );
        let whole = std::fs::read(&path).unwrap();

        // Cut short (a crash mid-write without the rename's guarantees).
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        assert!(read_artifact(&engine, &path).is_none());
        assert!(!path.exists(), "a damaged entry is removed");

        // One byte altered in the code.
        let mut bad = whole.clone();
        bad[whole.len() / 3] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        assert!(read_artifact(&engine, &path).is_none());

        // Empty, and missing.
        std::fs::write(&path, b"").unwrap();
        assert!(read_artifact(&engine, &path).is_none());
        assert!(read_artifact(&engine, &path).is_none());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary file stays behind");
    }
}
