//! Data services for guests, as host functions (no network hop):
//! `wasi:keyvalue` (store, atomics, batch) and `nimbus:data/kv-extras` on
//! the app's KV stores, `nimbus:data/documents` on its collections,
//! `wasi:config/store` on its configuration and `nimbus:data/blobs` on its
//! buckets (see `wit/data/`).
//!
//! A guest opens only the stores, collections and buckets its function's
//! manifest grants; everything is scoped to its app. A guest's object
//! writes store no storage events (only the S3 endpoint's do). Writes
//! check keys and sizes with `nimbus_core::data::check_kv_write` /
//! `check_doc_write`, the rule the REST API uses too.
//!
//! Host calls bound what they make the host hold: [`MAX_BATCH_KEYS`] keys
//! per batch call, [`MAX_CALL_BYTES`] returned per call; the store's query
//! pages stop at `MAX_PAGE_BYTES` and pass documents on as stored text.
//!
//! A function's configuration is a [`ConfigSnapshot`] in an `ArcSwap` that
//! the control plane replaces when configuration changes; an invocation
//! sees one snapshot from start to end, and its captured output is
//! redacted of the snapshot's secret values.
//!
//! One module per interface: `keyvalue` (`wasi:keyvalue` and `kv-extras`),
//! `docs` (`documents`), `config` (`wasi:config/store`) and `blobs`
//! (`nimbus:data/blobs`). Each checks its grant in one place
//! (`DataBinding::open`, `collection`, `bucket`).

mod blobs;
mod config;
mod docs;
mod keyvalue;

pub use config::ConfigSnapshot;

use crate::host::Host;
use nimbus_store::Store;
use std::sync::Arc;

wasmtime::component::bindgen!({
    path: "../../wit/data",
    world: "nimbus:data/host",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
    },
});

use nimbus::data::blobs as blobs_wit;
use nimbus::data::documents as docs_wit;
use nimbus::data::kv_extras;
use wasi::config::store as config_wit;
use wasi::keyvalue::{atomics, batch, store as kv};

/// An open KV store (the `bucket` resource).
pub struct Bucket {
    name: String,
    max_value_bytes: u64,
}

/// What a function may reach.
#[derive(Debug, Default, Clone)]
pub struct DataGrants {
    /// Stores declared by the app, with their value limit.
    pub kv_declared: Vec<(String, Option<u64>)>,
    /// Stores this function may open.
    pub kv: Vec<String>,
    /// Collections declared by the app.
    pub collections_declared: Vec<String>,
    /// Collections this function may use.
    pub collections: Vec<String>,
    /// Buckets this function may use (they must also belong to its app).
    pub buckets: Vec<String>,
}

/// Per-invocation binding of the data interfaces.
#[derive(Clone)]
pub(crate) struct DataBinding {
    pub(crate) app: Arc<str>,
    pub(crate) grants: Arc<DataGrants>,
    pub(crate) config: Arc<ConfigSnapshot>,
    pub(crate) store: Option<(Store, u64)>,
    pub(crate) blobs: Option<nimbus_store::BlobFiles>,
}

/// Most bytes one host call returns to a guest (a batch read, a query
/// page): the host never holds more for one call, whatever the guest asks.
pub const MAX_CALL_BYTES: usize = 16 << 20;
/// Most keys one batch call names.
pub const MAX_BATCH_KEYS: usize = 1000;

/// Adds every data interface to a linker.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<Host>,
) -> wasmtime::Result<()> {
    type Data = wasmtime::component::HasSelf<Host>;
    kv::add_to_linker::<Host, Data>(linker, |h| h)?;
    atomics::add_to_linker::<Host, Data>(linker, |h| h)?;
    batch::add_to_linker::<Host, Data>(linker, |h| h)?;
    kv_extras::add_to_linker::<Host, Data>(linker, |h| h)?;
    docs_wit::add_to_linker::<Host, Data>(linker, |h| h)?;
    config_wit::add_to_linker::<Host, Data>(linker, |h| h)?;
    blobs_wit::add_to_linker::<Host, Data>(linker, |h| h)?;
    Ok(())
}
