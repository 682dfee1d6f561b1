//! `nimbus:kv` for WASI 0.3 guests: the `wasi:keyvalue` operations as
//! `async func`s, bound as concurrent host functions (`&Accessor`), so a
//! guest task waiting on the store does not hold its instance: the
//! instance's other tasks run meanwhile. What a call needs is cloned out of
//! the store (`Accessor::with`) before the database is awaited; the
//! operations are the WASI 0.2 binding's (`guest::Call`).

use super::guest::{Bucket, Call, Cx, KvState, KvWitError, call};
use nimbus_runtime::{HasCx, Host};
use wasmtime::component::{Accessor, Linker, Resource};

wasmtime::component::bindgen!({
    path: "../../wit/kv3",
    world: "nimbus:kv/host",
    imports: { default: trappable },
    with: {
        "nimbus:kv/store.bucket": crate::kv::guest::Bucket,
    },
});

use nimbus::kv::{atomics, batch, extras, store as kv3};

type D = HasCx<KvState>;

/// Adds `nimbus:kv` to the linker.
pub(super) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    let cx = Host::capability::<KvState>;
    kv3::add_to_linker::<Host, D>(linker, cx)?;
    atomics::add_to_linker::<Host, D>(linker, cx)?;
    batch::add_to_linker::<Host, D>(linker, cx)?;
    extras::add_to_linker::<Host, D>(linker, cx)
}

fn err(e: KvWitError) -> kv3::Error {
    match e {
        KvWitError::NoSuchStore => kv3::Error::NoSuchStore,
        KvWitError::AccessDenied => kv3::Error::AccessDenied,
        KvWitError::Other(m) => kv3::Error::Other(m),
    }
}

/// The call `op` on `b`, taken out of the store with room among the
/// instance's calls in flight (else the guest's error).
fn start(
    acc: &Accessor<Host, D>,
    b: &Resource<Bucket>,
    op: &'static str,
) -> wasmtime::Result<Result<Call, KvWitError>> {
    acc.with(|mut a| {
        let cx = a.get();
        let room = match cx.host_call() {
            Ok(room) => room,
            Err(e) => return Ok(Err(KvWitError::Other(e.to_string()))),
        };
        Ok(Ok(call(&cx, b, op)?.holding(room)))
    })
}

impl kv3::Host for Cx<'_> {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, kv3::Error>> {
        match self.state.open(&identifier) {
            Ok(b) => Ok(Ok(self.table.push(b)?)),
            Err(e) => Ok(Err(err(e))),
        }
    }
}

impl kv3::HostBucket for Cx<'_> {
    fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl kv3::HostBucketWithStore<Host> for D {
    async fn get(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv3::Error>> {
        let c = start(acc, &b, "get")?;
        Ok(async { c?.get(key).await }.await.map_err(err))
    }

    async fn set(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv3::Error>> {
        let c = start(acc, &b, "set")?;
        Ok(async { c?.set(key, value).await }.await.map_err(err))
    }

    async fn delete(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv3::Error>> {
        let c = start(acc, &b, "delete")?;
        Ok(async { c?.delete(key).await }.await.map_err(err))
    }

    async fn exists(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv3::Error>> {
        let c = start(acc, &b, "exists")?;
        Ok(async { c?.exists(key).await }.await.map_err(err))
    }

    async fn list_keys(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<kv3::KeyResponse, kv3::Error>> {
        let c = start(acc, &b, "list_keys")?;
        let r = async { c?.list_keys(cursor).await }.await;
        Ok(r.map(|(keys, cursor)| kv3::KeyResponse { keys, cursor })
            .map_err(err))
    }
}

impl atomics::HostWithStore<Host> for D {
    async fn increment(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, kv3::Error>> {
        let c = start(acc, &b, "increment")?;
        Ok(async { c?.increment(key, delta).await }.await.map_err(err))
    }
}

impl batch::HostWithStore<Host> for D {
    async fn get_many(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, kv3::Error>> {
        let c = start(acc, &b, "get_many")?;
        Ok(async { c?.get_many(keys).await }.await.map_err(err))
    }

    async fn set_many(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), kv3::Error>> {
        let c = start(acc, &b, "set_many")?;
        Ok(async { c?.set_many(key_values).await }.await.map_err(err))
    }

    async fn delete_many(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), kv3::Error>> {
        let c = start(acc, &b, "delete_many")?;
        Ok(async { c?.delete_many(keys).await }.await.map_err(err))
    }
}

impl extras::HostWithStore<Host> for D {
    async fn set_with_ttl(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<(), kv3::Error>> {
        let c = start(acc, &b, "set_with_ttl")?;
        Ok(async { c?.set_with_ttl(key, value, ttl_ms).await }
            .await
            .map_err(err))
    }

    async fn list_prefix(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<(Vec<String>, Option<String>), kv3::Error>> {
        let c = start(acc, &b, "list_prefix")?;
        Ok(async { c?.list_prefix(prefix, cursor, limit).await }
            .await
            .map_err(err))
    }

    async fn compare_and_swap(
        acc: &Accessor<Host, Self>,
        b: Resource<Bucket>,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, kv3::Error>> {
        let c = start(acc, &b, "compare_and_swap")?;
        Ok(async { c?.compare_and_swap(key, expected, new).await }
            .await
            .map_err(err))
    }
}

// Every function of these three interfaces is an `async func`: their
// synchronous halves are empty.
impl atomics::Host for Cx<'_> {}
impl batch::Host for Cx<'_> {}
impl extras::Host for Cx<'_> {}
