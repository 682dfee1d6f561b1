//! Compiled code: an on-disk cache of native artifacts keyed by component
//! hash and engine configuration, and a bounded in-memory LRU of pre-linked
//! components ready to instantiate.

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

/// A component compiled and linked, ready for fresh instances.
pub struct Loaded {
    /// SHA-256 of the component bytes.
    pub hash: String,
    pub(crate) pre: ProxyPre<Host>,
}

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
        // SAFETY: the artifact was written by `Component::serialize` of an
        // engine with the same compatibility hash (it is in the file name),
        // into a directory only Nimbus writes; wasmtime re-checks the header.
        let cached = if path.is_file() {
            unsafe { Component::deserialize_file(engine, &path) }.ok()
        } else {
            None
        };
        let component = match cached {
            Some(c) => c,
            None => {
                let bytes = bytes()?;
                let start = Instant::now();
                let component = compile(engine, &bytes)?;
                source = LoadSource::Compiled(start.elapsed());
                if let Ok(art) = component.serialize() {
                    let tmp = self
                        .dir
                        .join(format!(".{hash}-{}.tmp", uuid::Uuid::now_v7()));
                    if std::fs::write(&tmp, art)
                        .and_then(|_| std::fs::rename(&tmp, &path))
                        .is_err()
                    {
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!(path = %path.display(), "could not write compile cache entry");
                    }
                }
                component
            }
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let pre = ProxyPre::new(pre).map_err(|e| RuntimeError::NotAHandler(format!("{e:#}")))?;
        let loaded = Arc::new(Loaded {
            hash: hash.to_string(),
            pre,
        });
        self.lru.lock().put(hash.to_string(), loaded.clone());
        Ok((loaded, source))
    }

    pub(crate) fn len(&self) -> usize {
        self.lru.lock().len()
    }
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
