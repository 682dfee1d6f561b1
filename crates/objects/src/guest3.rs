//! `nimbus:data/blobs@0.2.0` for WASI 0.3 guests: the object operations
//! as `async func`s, bound as concurrent host functions (`&Accessor`), so
//! a guest task waiting on an object does not hold its instance. What a
//! call needs is cloned out of the store (`Accessor::with`) before it is
//! awaited; the operations are the WASI 0.2 binding's ([`BlobCall`]).

use crate::guest::{BlobCall, BlobsState, Cx, WitError, WitInfo};
use nimbus_runtime::{HasCx, Host};
use wasmtime::component::{Accessor, Linker};

wasmtime::component::bindgen!({
    path: "../../wit/data3",
    world: "nimbus:data/blobs-host",
    imports: { default: trappable },
});

use nimbus::data::blobs as blobs3;

type D = HasCx<BlobsState>;

/// Adds `nimbus:data/blobs@0.2.0` to the linker.
pub(crate) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    blobs3::add_to_linker::<Host, D>(linker, Host::capability::<BlobsState>)
}

/// The call `op` on `bucket`, taken out of the store with room among the
/// instance's calls in flight (else the guest's error).
fn start(acc: &Accessor<Host, D>, op: &'static str, bucket: String) -> Result<BlobCall, WitError> {
    acc.with(|mut a| {
        let cx = a.get();
        let room = cx.host_call().map_err(|e| WitError::Other(e.to_string()))?;
        Ok(BlobsState::call(&cx, op, bucket).holding(room))
    })
}

fn err(e: WitError) -> blobs3::Error {
    match e {
        WitError::NoSuchBucket(m) => blobs3::Error::NoSuchBucket(m),
        WitError::TooLarge(m) => blobs3::Error::TooLarge(m),
        WitError::Other(m) => blobs3::Error::Other(m),
    }
}

fn info(i: WitInfo) -> blobs3::ObjectInfo {
    blobs3::ObjectInfo {
        key: i.key,
        size: i.size,
        etag: i.etag,
        content_type: i.content_type,
        last_modified: i.last_modified,
    }
}

type Answer<T> = wasmtime::Result<Result<T, blobs3::Error>>;

impl blobs3::HostWithStore<Host> for D {
    async fn get(
        acc: &Accessor<Host, Self>,
        bucket: String,
        key: String,
    ) -> Answer<Option<Vec<u8>>> {
        Ok(async { start(acc, "get", bucket)?.get(key).await }
            .await
            .map_err(err))
    }

    async fn put(
        acc: &Accessor<Host, Self>,
        bucket: String,
        key: String,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> Answer<blobs3::ObjectInfo> {
        let r = async {
            start(acc, "put", bucket)?
                .put(key, data, content_type)
                .await
        }
        .await;
        Ok(r.map(info).map_err(err))
    }

    async fn delete(acc: &Accessor<Host, Self>, bucket: String, key: String) -> Answer<bool> {
        Ok(async { start(acc, "delete", bucket)?.delete(key).await }
            .await
            .map_err(err))
    }

    async fn list_objects(
        acc: &Accessor<Host, Self>,
        bucket: String,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Answer<Vec<blobs3::ObjectInfo>> {
        let r = async { start(acc, "list", bucket)?.list(prefix, after, limit).await }.await;
        Ok(r.map(|v| v.into_iter().map(info).collect()).map_err(err))
    }
}

// Every function of the interface is an `async func`: its synchronous
// half is empty.
impl blobs3::Host for Cx<'_> {}
