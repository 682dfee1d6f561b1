//! `wasi:keyvalue` (store, atomics, batch) and `nimbus:data/kv-extras`
//! for guests: a store opens through [`KvStore::open`] with the function's
//! grants, and every write passes [`KvStore::check_write`].

use super::KvStore;
use crate::{Caller, MAX_BATCH_KEYS, MAX_CALL_BYTES, Refusal};
use nimbus_core::{AppSpec, FunctionSpec, Service};
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, HostCall, InstanceCx};
use nimbus_store::{KvError, Store};
use std::any::Any;
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};

wasmtime::component::bindgen!({
    path: "../../wit/data",
    world: "nimbus:data/kv-host",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
    },
});

pub(super) use kv::Error as KvWitError;
use nimbus::data::kv_extras;
use wasi::keyvalue::{atomics, batch, store as kv};

/// The KV capability's guest side.
pub struct Kv(Arc<Node>);

/// What every instance shares.
pub(super) struct Node {
    store: Store,
    max_value_bytes: u64,
}

impl Kv {
    pub fn new(store: Store, max_value_bytes: u64) -> Kv {
        Kv(Arc::new(Node {
            store,
            max_value_bytes,
        }))
    }
}

/// One instance's state: its function and app.
pub struct KvState {
    node: Arc<Node>,
    app: Arc<AppSpec>,
    function: Arc<FunctionSpec>,
}

pub(super) type Cx<'a> = GuestCx<'a, KvState>;

impl GuestCapability for Kv {
    fn name(&self) -> &'static str {
        "key-value"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        type D = HasCx<KvState>;
        let cx = Host::capability::<KvState>;
        kv::add_to_linker::<Host, D>(linker, cx)?;
        atomics::add_to_linker::<Host, D>(linker, cx)?;
        batch::add_to_linker::<Host, D>(linker, cx)?;
        kv_extras::add_to_linker::<Host, D>(linker, cx)?;
        super::guest3::link(linker)
    }

    fn instance(&self, cx: &InstanceCx<'_>) -> Box<dyn Any + Send> {
        Box::new(KvState {
            node: self.0.clone(),
            app: cx.function.app_spec().clone(),
            function: cx.function.spec().clone(),
        })
    }
}

/// An open KV store (the `bucket` resource).
#[derive(Clone)]
pub struct Bucket {
    name: String,
    store: KvStore,
}

impl KvState {
    pub(super) fn open(&self, name: &str) -> Result<Bucket, kv::Error> {
        let store = KvStore::open(
            &self.app,
            name,
            Caller::Function(&self.function),
            self.node.max_value_bytes,
        )
        .map_err(|e| match e {
            Refusal::NotFound(_) => kv::Error::NoSuchStore,
            Refusal::NotGranted(_) => kv::Error::AccessDenied,
            e => refused(e),
        })?;
        Ok(Bucket {
            name: name.to_string(),
            store,
        })
    }
}

fn refused(e: Refusal) -> kv::Error {
    kv_err(e.to_string())
}

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

fn store_err(e: impl std::fmt::Display) -> kv::Error {
    kv_err(e.to_string())
}

fn bucket<'a>(h: &'a Cx<'_>, r: &Resource<Bucket>) -> wasmtime::Result<&'a Bucket> {
    Ok(h.table.get(r)?)
}

impl kv::Host for Cx<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, kv::Error>> {
        match self.state.open(&identifier) {
            Ok(b) => Ok(Ok(self.table.push(b)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

/// One call on an open store, with what it needs cloned out of the
/// instance: the WASI 0.2 binding awaits it in place, the WASI 0.3 one
/// (`guest3`) after leaving the store.
pub(super) struct Call {
    node: Arc<Node>,
    app: Arc<AppSpec>,
    bucket: Bucket,
    op: nimbus_runtime::Op,
}

/// The call `op` on the open store `b`.
pub(super) fn call(cx: &Cx<'_>, b: &Resource<Bucket>, op: &'static str) -> wasmtime::Result<Call> {
    Ok(call_on(cx, bucket(cx, b)?.clone(), op))
}

/// The call `op` on `bucket`.
fn call_on(cx: &Cx<'_>, bucket: Bucket, op: &'static str) -> Call {
    Call {
        op: cx.op(Service::Kv, op, &bucket.name),
        node: cx.state.node.clone(),
        app: cx.state.app.clone(),
        bucket,
    }
}

/// The call `op` on the store named `store` (`nimbus:data/kv-extras`
/// names its store in every call), opened with the function's grants; a
/// refused open is counted as a failed call.
fn named(cx: &Cx<'_>, store: &str, op: &'static str) -> Result<Call, kv::Error> {
    match cx.state.open(store) {
        Ok(b) => Ok(call_on(cx, b, op)),
        Err(e) => {
            drop(cx.op(Service::Kv, op, store));
            Err(e)
        }
    }
}

impl Call {
    /// Holds `room` (an async call's place among its instance's) until
    /// the call ends.
    pub(super) fn holding(mut self, room: HostCall) -> Self {
        self.op.hold(room);
        self
    }

    fn db(&self) -> &Store {
        &self.node.store
    }

    fn app(&self) -> &str {
        &self.app.name
    }

    pub(super) async fn get(self, key: String) -> Result<Option<Vec<u8>>, kv::Error> {
        let r = self.db().kv_get(self.app(), &self.bucket.name, &key).await;
        self.op.result(r.map_err(store_err))
    }

    pub(super) async fn set(self, key: String, value: Vec<u8>) -> Result<(), kv::Error> {
        if let Err(e) = self.bucket.store.check_write(&key, value.len()) {
            return Err(refused(e));
        }
        let r = self
            .db()
            .kv_set(self.app(), &self.bucket.name, &key, &value, None)
            .await;
        self.op.result(r.map_err(store_err))
    }

    pub(super) async fn delete(self, key: String) -> Result<(), kv::Error> {
        let r = self
            .db()
            .kv_delete(self.app(), &self.bucket.name, &key)
            .await;
        self.op.result(r.map(|_| ()).map_err(store_err))
    }

    pub(super) async fn exists(self, key: String) -> Result<bool, kv::Error> {
        let r = self.db().kv_get(self.app(), &self.bucket.name, &key).await;
        self.op.result(r.map(|v| v.is_some()).map_err(store_err))
    }

    pub(super) async fn list_keys(
        self,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), kv::Error> {
        // The standard cursor is a number: the count of keys already seen.
        const PAGE: u32 = 1000;
        let (db, app, name) = (self.db(), self.app(), &self.bucket.name);
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
            let page = match db.kv_list(app, name, "", after.as_deref(), want).await {
                Ok(p) => p,
                Err(e) => return Err(store_err(e)),
            };
            if skipped < skip {
                skipped += page.keys.len() as u64;
                after = page.keys.last().cloned();
                if page.cursor.is_none() {
                    self.op.succeeded();
                    return Ok((Vec::new(), None));
                }
                continue;
            }
            let n = page.keys.len() as u64;
            self.op.succeeded();
            return Ok((page.keys, page.cursor.map(|_| skip + n)));
        }
    }

    pub(super) async fn increment(self, key: String, delta: u64) -> Result<u64, kv::Error> {
        if let Err(e) = self.bucket.store.check_write(&key, 0) {
            return Err(refused(e));
        }
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        let r = self
            .db()
            .kv_increment(self.app(), &self.bucket.name, &key, delta)
            .await;
        self.op.result(match r {
            Ok(v) => Ok(v.max(0) as u64),
            Err(e @ (KvError::NotANumber(_) | KvError::Overflow(_))) => Err(kv_err(e.to_string())),
            Err(e) => Err(store_err(e)),
        })
    }

    pub(super) async fn get_many(
        self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, kv::Error> {
        batch_size(keys.len())?;
        let op = self.op.items(keys.len());
        let (db, app, name) = (&self.node.store, &self.app.name, &self.bucket.name);
        let mut out = Vec::with_capacity(keys.len());
        let mut bytes = 0usize;
        for k in keys {
            match db.kv_get(app, name, &k).await {
                Ok(v) => {
                    bytes += k.len() + v.as_ref().map_or(0, Vec::len);
                    if bytes > MAX_CALL_BYTES {
                        return Err(kv_err(format!(
                            "get-many would return more than {} MiB: ask for fewer keys at a time",
                            MAX_CALL_BYTES >> 20
                        )));
                    }
                    out.push(v.map(|v| (k, v)));
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        op.succeeded();
        Ok(out)
    }

    pub(super) async fn set_many(
        self,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), kv::Error> {
        batch_size(key_values.len())?;
        let op = self.op.items(key_values.len());
        for (k, v) in &key_values {
            self.bucket.store.check_write(k, v.len()).map_err(refused)?;
        }
        let (db, app, name) = (&self.node.store, &self.app.name, &self.bucket.name);
        for (k, v) in key_values {
            db.kv_set(app, name, &k, &v, None)
                .await
                .map_err(store_err)?;
        }
        op.succeeded();
        Ok(())
    }

    pub(super) async fn delete_many(self, keys: Vec<String>) -> Result<(), kv::Error> {
        batch_size(keys.len())?;
        let op = self.op.items(keys.len());
        let (db, app, name) = (&self.node.store, &self.app.name, &self.bucket.name);
        for k in keys {
            db.kv_delete(app, name, &k).await.map_err(store_err)?;
        }
        op.succeeded();
        Ok(())
    }

    pub(super) async fn set_with_ttl(
        self,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<(), kv::Error> {
        self.bucket
            .store
            .check_write(&key, value.len())
            .map_err(refused)?;
        let r = self
            .db()
            .kv_set(
                self.app(),
                &self.bucket.name,
                &key,
                &value,
                Some(ttl_ms.max(1)),
            )
            .await;
        self.op.result(r.map_err(store_err))
    }

    pub(super) async fn list_prefix(
        self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<String>), kv::Error> {
        let r = self
            .db()
            .kv_list(
                self.app(),
                &self.bucket.name,
                &prefix,
                cursor.as_deref(),
                limit.clamp(1, 1000),
            )
            .await;
        self.op
            .result(r.map(|p| (p.keys, p.cursor)).map_err(store_err))
    }

    pub(super) async fn compare_and_swap(
        self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, kv::Error> {
        self.bucket
            .store
            .check_write(&key, new.len())
            .map_err(refused)?;
        let r = self
            .db()
            .kv_compare_and_swap(
                self.app(),
                &self.bucket.name,
                &key,
                expected.as_deref(),
                &new,
            )
            .await;
        self.op.result(r.map_err(store_err))
    }
}

impl kv::HostBucket for Cx<'_> {
    async fn get(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        Ok(call(self, &b, "get")?.get(key).await)
    }

    async fn set(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(call(self, &b, "set")?.set(key, value).await)
    }

    async fn delete(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(call(self, &b, "delete")?.delete(key).await)
    }

    async fn exists(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        Ok(call(self, &b, "exists")?.exists(key).await)
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<kv::KeyResponse, kv::Error>> {
        let r = call(self, &b, "list_keys")?.list_keys(cursor).await;
        Ok(r.map(|(keys, cursor)| kv::KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for Cx<'_> {
    async fn increment(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, kv::Error>> {
        Ok(call(self, &b, "increment")?.increment(key, delta).await)
    }
}

impl batch::Host for Cx<'_> {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, kv::Error>> {
        Ok(call(self, &b, "get_many")?.get_many(keys).await)
    }

    async fn set_many(
        &mut self,
        b: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(call(self, &b, "set_many")?.set_many(key_values).await)
    }

    async fn delete_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(call(self, &b, "delete_many")?.delete_many(keys).await)
    }
}

impl kv_extras::Host for Cx<'_> {
    async fn set_with_ttl(
        &mut self,
        store: String,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(match named(self, &store, "set_with_ttl") {
            Ok(c) => c.set_with_ttl(key, value, ttl_ms).await,
            Err(e) => Err(e),
        })
    }

    async fn list_prefix(
        &mut self,
        store: String,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<(Vec<String>, Option<String>), kv::Error>> {
        Ok(match named(self, &store, "list_prefix") {
            Ok(c) => c.list_prefix(prefix, cursor, limit).await,
            Err(e) => Err(e),
        })
    }

    async fn compare_and_swap(
        &mut self,
        store: String,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        Ok(match named(self, &store, "compare_and_swap") {
            Ok(c) => c.compare_and_swap(key, expected, new).await,
            Err(e) => Err(e),
        })
    }
}
