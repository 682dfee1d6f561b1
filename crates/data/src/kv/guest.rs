//! `wasi:keyvalue` (store, atomics, batch) and `nimbus:data/kv-extras`
//! for guests: a store opens through [`KvStore::open`] with the function's
//! grants, and every write passes [`KvStore::check_write`].

use super::KvStore;
use crate::{Caller, MAX_BATCH_KEYS, MAX_CALL_BYTES, Refusal};
use nimbus_core::{AppSpec, FunctionSpec, Service};
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, InstanceCx};
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

use nimbus::data::kv_extras;
use wasi::keyvalue::{atomics, batch, store as kv};

/// The KV capability's guest side.
pub struct Kv(Arc<Node>);

/// What every instance shares.
struct Node {
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

type Cx<'a> = GuestCx<'a, KvState>;

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
        kv_extras::add_to_linker::<Host, D>(linker, cx)
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
pub struct Bucket {
    name: String,
    store: KvStore,
}

impl KvState {
    fn db(&self) -> &Store {
        &self.node.store
    }

    fn app(&self) -> &str {
        &self.app.name
    }

    fn open(&self, name: &str) -> Result<Bucket, kv::Error> {
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

impl kv::HostBucket for Cx<'_> {
    async fn get(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "get", &name);
        let d = &*self.state;
        Ok(op.result({
            let db = d.db();
            db.kv_get(d.app(), &name, &key).await.map_err(store_err)
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
        if let Err(e) = bk.store.check_write(&key, value.len()).map_err(refused) {
            return Ok(Err(e));
        }
        let name = bk.name.clone();
        let d = &*self.state;
        Ok(op.result({
            let db = d.db();
            db.kv_set(d.app(), &name, &key, &value, None)
                .await
                .map_err(store_err)
        }))
    }

    async fn delete(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "delete", &name);
        let d = &*self.state;
        Ok(op.result({
            let db = d.db();
            db.kv_delete(d.app(), &name, &key)
                .await
                .map(|_| ())
                .map_err(store_err)
        }))
    }

    async fn exists(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "exists", &name);
        let d = &*self.state;
        Ok(op.result({
            let db = d.db();
            db.kv_get(d.app(), &name, &key)
                .await
                .map(|v| v.is_some())
                .map_err(store_err)
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
        let d = &*self.state;
        let db = d.db();
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
            let page = match db.kv_list(d.app(), &name, "", after.as_deref(), want).await {
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

impl atomics::Host for Cx<'_> {
    async fn increment(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "increment", &name);
        if let Err(e) = bucket(self, &b)?.store.check_write(&key, 0) {
            return Ok(Err(refused(e)));
        }
        let d = &*self.state;
        let db = d.db();
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        Ok(
            op.result(match db.kv_increment(d.app(), &name, &key, delta).await {
                Ok(v) => Ok(v.max(0) as u64),
                Err(e @ (KvError::NotANumber(_) | KvError::Overflow(_))) => {
                    Err(kv_err(e.to_string()))
                }
                Err(e) => Err(store_err(e)),
            }),
        )
    }
}

impl batch::Host for Cx<'_> {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, kv::Error>> {
        let name = bucket(self, &b)?.name.clone();
        let op = self.op(Service::Kv, "get_many", &name).items(keys.len());
        let d = &*self.state;
        let db = d.db();
        if let Err(e) = batch_size(keys.len()) {
            return Ok(Err(e));
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut bytes = 0usize;
        for k in keys {
            match db.kv_get(d.app(), &name, &k).await {
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
            if let Err(e) = bk.store.check_write(k, v.len()).map_err(refused) {
                return Ok(Err(e));
            }
        }
        let name = bk.name.clone();
        let d = &*self.state;
        let db = d.db();
        for (k, v) in key_values {
            if let Err(e) = db.kv_set(d.app(), &name, &k, &v, None).await {
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
        let d = &*self.state;
        let db = d.db();
        for k in keys {
            if let Err(e) = db.kv_delete(d.app(), &name, &k).await {
                return Ok(Err(store_err(e)));
            }
        }
        op.succeeded();
        Ok(Ok(()))
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
        let op = self.op(Service::Kv, "set_with_ttl", &store);
        let d = &*self.state;
        let bk = match d.open(&store) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = bk.store.check_write(&key, value.len()).map_err(refused) {
            return Ok(Err(e));
        }
        Ok(op.result({
            let db = d.db();
            db.kv_set(d.app(), &store, &key, &value, Some(ttl_ms.max(1)))
                .await
                .map_err(store_err)
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
        let d = &*self.state;
        if let Err(e) = d.open(&store) {
            return Ok(Err(e));
        }
        Ok(op.result({
            let db = d.db();
            db.kv_list(
                d.app(),
                &store,
                &prefix,
                cursor.as_deref(),
                limit.clamp(1, 1000),
            )
            .await
            .map(|p| (p.keys, p.cursor))
            .map_err(store_err)
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
        let d = &*self.state;
        let bk = match d.open(&store) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = bk.store.check_write(&key, new.len()).map_err(refused) {
            return Ok(Err(e));
        }
        Ok(op.result({
            let db = d.db();
            db.kv_compare_and_swap(d.app(), &store, &key, expected.as_deref(), &new)
                .await
                .map_err(store_err)
        }))
    }
}
