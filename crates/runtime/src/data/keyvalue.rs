//! `wasi:keyvalue` (store, atomics, batch) and `nimbus:data/kv-extras` on
//! the app's KV stores: a guest opens only the stores its function is
//! granted, and every write passes `nimbus_core::data::check_kv_write`.

use super::{Bucket, DataBinding, MAX_BATCH_KEYS, MAX_CALL_BYTES, atomics, batch, kv, kv_extras};
use crate::host::Host;
use nimbus_core::Service;
use nimbus_store::{KvError, Store};
use wasmtime::component::Resource;

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
