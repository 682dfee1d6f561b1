//! Data services for guests, as host functions (no network hop):
//! `wasi:keyvalue` (store, atomics, batch) and `nimbus:data/kv-extras` on
//! the app's KV stores, `nimbus:data/documents` on its collections, and
//! `wasi:config/store` on its configuration (see `wit/data/`).
//!
//! A guest opens only the stores and collections its function's manifest
//! grants; everything is scoped to its app. `nimbus:data/blobs` reaches
//! granted buckets that belong to the app; a guest's object writes store
//! no storage events (only the S3 endpoint's do). Writes check keys and
//! sizes with `nimbus_core::data::check_kv_write` / `check_doc_write`, the
//! rule the REST API uses too.
//!
//! Host calls bound what they make the host hold: [`MAX_BATCH_KEYS`] keys
//! per batch call, [`MAX_CALL_BYTES`] returned per call; the store's query
//! pages stop at `MAX_PAGE_BYTES` and pass documents on as stored text.
//!
//! A function's configuration is a [`ConfigSnapshot`] in an `ArcSwap` that
//! the control plane replaces when configuration changes; an invocation
//! sees one snapshot from start to end, and its captured output is
//! redacted of the snapshot's secret values.

use crate::host::Host;
use nimbus_core::Service;
use nimbus_store::{DocError, DocQuery, Document, KvError, Store};
use std::sync::Arc;
use wasmtime::component::Resource;

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

/// Configuration as a guest sees it: variables (secrets included, in
/// clear) and the secret values, which are redacted from captured logs.
#[derive(Debug, Default, Clone)]
pub struct ConfigSnapshot {
    /// Name → value, sorted by name.
    pub vars: Vec<(String, String)>,
    /// Values of secrets (to redact).
    pub secrets: Vec<String>,
}

impl ConfigSnapshot {
    /// Replaces every secret value in `text` with `[redacted]`.
    pub fn redact(&self, text: &mut String) {
        for s in &self.secrets {
            if s.len() >= 4 && text.contains(s.as_str()) {
                *text = text.replace(s.as_str(), "[redacted]");
            }
        }
    }
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

fn batch_size(n: usize) -> Result<(), kv::Error> {
    if n > MAX_BATCH_KEYS {
        return Err(kv_err(format!(
            "a batch call takes at most {MAX_BATCH_KEYS} keys, not {n}: split it"
        )));
    }
    Ok(())
}

fn kv_err(m: impl Into<String>) -> kv::Error {
    kv::Error::Other(m.into())
}

impl DataBinding {
    fn db(&self) -> Result<&Store, kv::Error> {
        self.store
            .as_ref()
            .map(|(s, _)| s)
            .ok_or_else(|| kv_err("this Nimbus server has no data store"))
    }

    fn open(&self, name: &str) -> Result<Bucket, kv::Error> {
        let Some((_, limit)) = self.grants.kv_declared.iter().find(|(n, _)| n == name) else {
            return Err(kv::Error::NoSuchStore);
        };
        if !self.grants.kv.iter().any(|n| n == name) {
            return Err(kv::Error::AccessDenied);
        }
        let server_limit = self.store.as_ref().map_or(u64::MAX, |(_, l)| *l);
        Ok(Bucket {
            name: name.to_string(),
            max_value_bytes: nimbus_core::data::value_limit(*limit, server_limit),
        })
    }

    fn check_value(&self, b: &Bucket, key: &str, len: usize) -> Result<(), kv::Error> {
        let place = format_args!("store {:?}", b.name);
        nimbus_core::data::check_kv_write(place, key, len, b.max_value_bytes)
            .map_err(|e| kv_err(e.to_string()))
    }

    fn collection(&self, name: &str) -> Result<(), docs_wit::Error> {
        if !self.grants.collections_declared.iter().any(|n| n == name) {
            return Err(docs_wit::Error::NoSuchCollection(format!(
                "the app has no collection {name:?}: declare it as [collections.{name}]"
            )));
        }
        if !self.grants.collections.iter().any(|n| n == name) {
            return Err(docs_wit::Error::NoSuchCollection(format!(
                "collection {name:?} is not granted to this function: add it to its `collections` in nimbus.toml"
            )));
        }
        Ok(())
    }
}

fn store_err(e: impl std::fmt::Display) -> kv::Error {
    kv_err(e.to_string())
}

fn bucket<'a>(h: &'a Host, r: &Resource<Bucket>) -> wasmtime::Result<&'a Bucket> {
    Ok(h.table.get(r)?)
}

impl kv::Host for Host {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, kv::Error>> {
        match self.data.open(&identifier) {
            Ok(b) => Ok(Ok(self.table.push(b)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl kv::HostBucket for Host {
    async fn get(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "get", &name);
        let d = &self.data;
        Ok(op.result(match d.db() {
            Ok(db) => db.kv_get(&d.app, &name, &key).await.map_err(store_err),
            Err(e) => Err(e),
        }))
    }

    async fn set(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let bk = bucket(self, &b)?;
        let op = self.op(Service::Kv, "set", &bk.name);
        if let Err(e) = self.data.check_value(bk, &key, value.len()) {
            return Ok(Err(e));
        }
        let name = bk.name.clone();
        let d = &self.data;
        Ok(op.result(match d.db() {
            Ok(db) => db
                .kv_set(&d.app, &name, &key, &value, None)
                .await
                .map_err(store_err),
            Err(e) => Err(e),
        }))
    }

    async fn delete(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "delete", &name);
        let d = &self.data;
        Ok(op.result(match d.db() {
            Ok(db) => db
                .kv_delete(&d.app, &name, &key)
                .await
                .map(|_| ())
                .map_err(store_err),
            Err(e) => Err(e),
        }))
    }

    async fn exists(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "exists", &name);
        let d = &self.data;
        Ok(op.result(match d.db() {
            Ok(db) => db
                .kv_get(&d.app, &name, &key)
                .await
                .map(|v| v.is_some())
                .map_err(store_err),
            Err(e) => Err(e),
        }))
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<kv::KeyResponse, kv::Error>> {
        // The standard cursor is a number: the count of keys already seen.
        const PAGE: u32 = 1000;
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "list_keys", &name);
        let d = &self.data;
        let db = match d.db() {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        let skip = cursor.unwrap_or(0);
        let mut after: Option<String> = None;
        let mut skipped = 0u64;
        // Walk pages of keys to the cursor; stores are listed rarely.
        loop {
            let want = if skipped < skip {
                ((skip - skipped).min(PAGE as u64)) as u32
            } else {
                PAGE
            };
            let page = match db.kv_list(&d.app, &name, "", after.as_deref(), want).await {
                Ok(p) => p,
                Err(e) => return Ok(Err(store_err(e))),
            };
            if skipped < skip {
                skipped += page.keys.len() as u64;
                after = page.keys.last().cloned();
                if page.cursor.is_none() {
                    op.succeeded();
                    return Ok(Ok(kv::KeyResponse {
                        keys: Vec::new(),
                        cursor: None,
                    }));
                }
                continue;
            }
            let n = page.keys.len() as u64;
            op.succeeded();
            return Ok(Ok(kv::KeyResponse {
                keys: page.keys,
                cursor: page.cursor.map(|_| skip + n),
            }));
        }
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for Host {
    async fn increment(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "increment", &name);
        if let Err(e) = nimbus_core::data::check_kv_key(&key) {
            return Ok(Err(kv_err(e)));
        }
        let d = &self.data;
        let db = match d.db() {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        Ok(
            op.result(match db.kv_increment(&d.app, &name, &key, delta).await {
                Ok(v) => Ok(v.max(0) as u64),
                Err(e @ (KvError::NotANumber(_) | KvError::Overflow(_))) => {
                    Err(kv_err(e.to_string()))
                }
                Err(e) => Err(store_err(e)),
            }),
        )
    }
}

impl batch::Host for Host {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "get_many", &name).items(keys.len());
        let d = &self.data;
        let db = match d.db() {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = batch_size(keys.len()) {
            return Ok(Err(e));
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut bytes = 0usize;
        for k in keys {
            match db.kv_get(&d.app, &name, &k).await {
                Ok(v) => {
                    bytes += k.len() + v.as_ref().map_or(0, Vec::len);
                    if bytes > MAX_CALL_BYTES {
                        return Ok(Err(kv_err(format!(
                            "get-many would return more than {} MiB: ask for fewer keys at a time",
                            MAX_CALL_BYTES >> 20
                        ))));
                    }
                    out.push(v.map(|v| (k, v)));
                }
                Err(e) => return Ok(Err(store_err(e))),
            }
        }
        op.succeeded();
        Ok(Ok(out))
    }

    async fn set_many(
        &mut self,
        b: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let bk = bucket(self, &b)?;
        let op = self
            .op(Service::Kv, "set_many", &bk.name)
            .items(key_values.len());
        if let Err(e) = batch_size(key_values.len()) {
            return Ok(Err(e));
        }
        for (k, v) in &key_values {
            if let Err(e) = self.data.check_value(bk, k, v.len()) {
                return Ok(Err(e));
            }
        }
        let name = bk.name.clone();
        let d = &self.data;
        let db = match d.db() {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        for (k, v) in key_values {
            if let Err(e) = db.kv_set(&d.app, &name, &k, &v, None).await {
                return Ok(Err(store_err(e)));
            }
        }
        op.succeeded();
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "delete_many", &name).items(keys.len());
        if let Err(e) = batch_size(keys.len()) {
            return Ok(Err(e));
        }
        let d = &self.data;
        let db = match d.db() {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        for k in keys {
            if let Err(e) = db.kv_delete(&d.app, &name, &k).await {
                return Ok(Err(store_err(e)));
            }
        }
        op.succeeded();
        Ok(Ok(()))
    }
}

impl kv_extras::Host for Host {
    async fn set_with_ttl(
        &mut self,
        store: String,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let op = self.op(Service::Kv, "set_with_ttl", &store);
        let d = &self.data;
        let bk = match d.open(&store) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = d.check_value(&bk, &key, value.len()) {
            return Ok(Err(e));
        }
        Ok(op.result(match d.db() {
            Ok(db) => db
                .kv_set(&d.app, &store, &key, &value, Some(ttl_ms.max(1)))
                .await
                .map_err(store_err),
            Err(e) => Err(e),
        }))
    }

    async fn list_prefix(
        &mut self,
        store: String,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<(Vec<String>, Option<String>), kv::Error>> {
        let op = self.op(Service::Kv, "list_prefix", &store);
        let d = &self.data;
        if let Err(e) = d.open(&store) {
            return Ok(Err(e));
        }
        Ok(op.result(match d.db() {
            Ok(db) => db
                .kv_list(
                    &d.app,
                    &store,
                    &prefix,
                    cursor.as_deref(),
                    limit.clamp(1, 1000),
                )
                .await
                .map(|p| (p.keys, p.cursor))
                .map_err(store_err),
            Err(e) => Err(e),
        }))
    }

    async fn compare_and_swap(
        &mut self,
        store: String,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        let op = self.op(Service::Kv, "compare_and_swap", &store);
        let d = &self.data;
        let bk = match d.open(&store) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = d.check_value(&bk, &key, new.len()) {
            return Ok(Err(e));
        }
        Ok(op.result(match d.db() {
            Ok(db) => db
                .kv_compare_and_swap(&d.app, &store, &key, expected.as_deref(), &new)
                .await
                .map_err(store_err),
            Err(e) => Err(e),
        }))
    }
}

/// The longest a guest's `documents.watch` waits.
const MAX_WATCH_MS: u64 = 60_000;

fn doc_out(d: Document) -> docs_wit::Document {
    docs_wit::Document {
        id: d.id,
        json: d.body.get().to_string(),
        version: d.version.max(0) as u64,
        created_at: d.created_at_us,
        updated_at: d.updated_at_us,
    }
}

fn doc_err(e: DocError) -> docs_wit::Error {
    match e {
        DocError::Conflict(m) => docs_wit::Error::Conflict(m),
        DocError::Invalid(m) => docs_wit::Error::Invalid(m),
        DocError::Store(e) => docs_wit::Error::Other(e.to_string()),
    }
}

impl DataBinding {
    fn docs(
        &self,
        coll: &str,
        id: Option<&str>,
        json_len: usize,
    ) -> Result<&Store, docs_wit::Error> {
        self.collection(coll)?;
        let (db, limit) = self
            .store
            .as_ref()
            .ok_or_else(|| docs_wit::Error::Other("this Nimbus server has no data store".into()))?;
        let place = format_args!("collection {coll:?}");
        nimbus_core::data::check_doc_write(place, id, json_len, *limit)
            .map_err(|e| docs_wit::Error::Invalid(e.to_string()))?;
        Ok(db)
    }
}

impl docs_wit::Host for Host {
    async fn get(
        &mut self,
        collection: String,
        id: String,
    ) -> wasmtime::Result<Result<Option<docs_wit::Document>, docs_wit::Error>> {
        let op = self.op(Service::Docs, "get", &collection);
        let d = &self.data;
        Ok(op.result(match d.docs(&collection, Some(&id), 0) {
            Ok(db) => db
                .doc_get(&d.app, &collection, &id)
                .await
                .map(|o| o.map(doc_out))
                .map_err(doc_err),
            Err(e) => Err(e),
        }))
    }

    async fn watch(
        &mut self,
        collection: String,
        id: String,
        after_version: u64,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Option<docs_wit::Document>, docs_wit::Error>> {
        let op = self.op(Service::Docs, "watch", &collection);
        let d = &self.data;
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms).min(MAX_WATCH_MS));
        Ok(op.result(match d.docs(&collection, Some(&id), 0) {
            Ok(db) => db
                .doc_watch(
                    &d.app,
                    &collection,
                    &id,
                    i64::try_from(after_version).unwrap_or(i64::MAX),
                    timeout,
                )
                .await
                .map(|o| o.map(doc_out))
                .map_err(doc_err),
            Err(e) => Err(e),
        }))
    }

    async fn put(
        &mut self,
        collection: String,
        id: String,
        json: String,
        expected_version: Option<u64>,
    ) -> wasmtime::Result<Result<docs_wit::Document, docs_wit::Error>> {
        let op = self.op(Service::Docs, "put", &collection);
        let d = &self.data;
        Ok(op.result(match d.docs(&collection, Some(&id), json.len()) {
            Ok(db) => db
                .doc_put(
                    &d.app,
                    &collection,
                    &id,
                    &json,
                    expected_version.map(|v| v as i64),
                )
                .await
                .map(doc_out)
                .map_err(doc_err),
            Err(e) => Err(e),
        }))
    }

    async fn patch(
        &mut self,
        collection: String,
        id: String,
        json: String,
        expected_version: Option<u64>,
    ) -> wasmtime::Result<Result<docs_wit::Document, docs_wit::Error>> {
        let op = self.op(Service::Docs, "patch", &collection);
        let d = &self.data;
        Ok(op.result(match d.docs(&collection, Some(&id), json.len()) {
            Ok(db) => db
                .doc_patch(
                    &d.app,
                    &collection,
                    &id,
                    &json,
                    expected_version.map(|v| v as i64),
                    d.store.as_ref().map_or(u64::MAX, |(_, l)| *l),
                )
                .await
                .map(doc_out)
                .map_err(doc_err),
            Err(e) => Err(e),
        }))
    }

    async fn delete(
        &mut self,
        collection: String,
        id: String,
    ) -> wasmtime::Result<Result<bool, docs_wit::Error>> {
        let op = self.op(Service::Docs, "delete", &collection);
        let d = &self.data;
        Ok(op.result(match d.docs(&collection, Some(&id), 0) {
            Ok(db) => db
                .doc_delete(&d.app, &collection, &id)
                .await
                .map_err(doc_err),
            Err(e) => Err(e),
        }))
    }

    async fn query(
        &mut self,
        collection: String,
        query: String,
    ) -> wasmtime::Result<Result<String, docs_wit::Error>> {
        let op = self.op(Service::Docs, "query", &collection);
        let d = &self.data;
        let db = match d.docs(&collection, None, 0) {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        let q = match DocQuery::parse(&query) {
            Ok(q) => q,
            Err(e) => return Ok(Err(doc_err(e))),
        };
        Ok(op.result(
            db.doc_query(&d.app, &collection, &q)
                .await
                .map(|page| serde_json::to_string(&page).expect("documents serialize"))
                .map_err(doc_err),
        ))
    }
}

impl config_wit::Host for Host {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config_wit::Error>> {
        let vars = &self.data.config.vars;
        Ok(Ok(vars
            .binary_search_by(|(k, _)| k.as_str().cmp(&key))
            .ok()
            .map(|i| vars[i].1.clone())))
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, config_wit::Error>> {
        Ok(Ok(self.data.config.vars.clone()))
    }
}

impl DataBinding {
    async fn bucket(
        &self,
        bucket: &str,
    ) -> Result<(&Store, &nimbus_store::BlobFiles, u64), blobs_wit::Error> {
        let (Some((db, limit)), Some(files)) = (&self.store, &self.blobs) else {
            return Err(blobs_wit::Error::Other(
                "this Nimbus server has no object storage".into(),
            ));
        };
        if !self.grants.buckets.iter().any(|b| b == bucket) {
            return Err(blobs_wit::Error::NoSuchBucket(format!(
                "bucket {bucket:?} is not granted to this function: add it to its `buckets` in nimbus.toml"
            )));
        }
        match db.bucket_owner(bucket).await {
            Ok(Some(owner)) if *owner == *self.app => Ok((db, files, *limit)),
            Ok(_) => Err(blobs_wit::Error::NoSuchBucket(format!(
                "the app has no bucket {bucket:?}: create it through the S3 API"
            ))),
            Err(e) => Err(blobs_wit::Error::Other(e.to_string())),
        }
    }
}

fn info(o: &nimbus_store::ObjectRow) -> blobs_wit::ObjectInfo {
    blobs_wit::ObjectInfo {
        key: o.key.clone(),
        size: o.size,
        etag: o.etag.clone(),
        content_type: o.content_type.clone(),
        last_modified: o.last_modified_us,
    }
}

fn blob_err(e: impl std::fmt::Display) -> blobs_wit::Error {
    blobs_wit::Error::Other(e.to_string())
}

impl blobs_wit::Host for Host {
    async fn get(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, blobs_wit::Error>> {
        let op = self.op(Service::Objects, "get", &bucket);
        let (db, files, limit) = match self.data.bucket(&bucket).await {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let row = match db.object(&bucket, &key).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                op.succeeded();
                return Ok(Ok(None));
            }
            Err(e) => return Ok(Err(blob_err(e))),
        };
        if row.size > limit {
            return Ok(Err(blobs_wit::Error::TooLarge(format!(
                "object {key:?} is {} bytes, over the {limit} bytes this interface carries; read it through the S3 API",
                row.size
            ))));
        }
        let mut f = match files.open_range(&row.file, 0).await {
            Ok(f) => f,
            Err(e) => return Ok(Err(blob_err(e))),
        };
        let mut buf = Vec::with_capacity(row.size as usize);
        Ok(op.result(
            match tokio::io::AsyncReadExt::read_to_end(&mut f, &mut buf).await {
                Ok(_) => Ok(Some(buf)),
                Err(e) => Err(blob_err(e)),
            },
        ))
    }

    async fn put(
        &mut self,
        bucket: String,
        key: String,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> wasmtime::Result<Result<blobs_wit::ObjectInfo, blobs_wit::Error>> {
        let op = self.op(Service::Objects, "put", &bucket);
        let (db, files, limit) = match self.data.bucket(&bucket).await {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        if key.is_empty() || key.len() > 1024 || key.contains('\0') {
            return Ok(Err(blobs_wit::Error::Other(
                "object keys are 1-1024 bytes without NUL".into(),
            )));
        }
        if data.len() as u64 > limit {
            return Ok(Err(blobs_wit::Error::TooLarge(format!(
                "the object is {} bytes, over the {limit} bytes this interface carries; write it through the S3 API",
                data.len()
            ))));
        }
        let chunk = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))]);
        let stored = match files.put_stream(limit, chunk).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(blob_err(e))),
        };
        let row = nimbus_store::ObjectRow {
            bucket,
            key,
            file: stored.file.clone(),
            size: stored.size,
            etag: stored.md5,
            content_type,
            metadata: Vec::new(),
            last_modified_us: nimbus_store::now_us(),
        };
        Ok(op.result(match db.put_object(&row, &[]).await {
            Ok(old) => {
                if let Some(old) = old {
                    files.delete(&old).await;
                }
                Ok(info(&row))
            }
            Err(e) => {
                files.delete(&stored.file).await;
                Err(blob_err(e))
            }
        }))
    }

    async fn delete(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, blobs_wit::Error>> {
        let op = self.op(Service::Objects, "delete", &bucket);
        let (db, files, _) = match self.data.bucket(&bucket).await {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        Ok(op.result(match db.delete_object(&bucket, &key, &[]).await {
            Ok(Some(f)) => {
                files.delete(&f).await;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(blob_err(e)),
        }))
    }

    async fn list_objects(
        &mut self,
        bucket: String,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<blobs_wit::ObjectInfo>, blobs_wit::Error>> {
        let op = self.op(Service::Objects, "list", &bucket);
        let (db, _, _) = match self.data.bucket(&bucket).await {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        Ok(op.result(
            db.list_objects(
                &bucket,
                &prefix,
                &nimbus_store::ListFrom::After(after.unwrap_or_default()),
                limit.clamp(1, 1000),
            )
            .await
            .map(|rows| rows.iter().map(info).collect())
            .map_err(blob_err),
        ))
    }
}

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
