//! `nimbus:data/documents@0.2.0` for WASI 0.3 guests: the documents
//! operations as `async func`s, bound as concurrent host functions
//! (`&Accessor`), so a guest task waiting on a query or a watch does not
//! hold its instance. What a call needs is cloned out of the store
//! (`Accessor::with`) before the database is awaited; the operations are
//! the WASI 0.2 binding's ([`DocCall`]).

use super::guest::{Cx, DocCall, DocsState, WitDocument, WitError};
use nimbus_runtime::{HasCx, Host};
use wasmtime::component::{Accessor, Linker};

wasmtime::component::bindgen!({
    path: "../../wit/data3",
    world: "nimbus:data/docs-host",
    imports: { default: trappable },
});

use nimbus::data::documents as docs3;

type D = HasCx<DocsState>;

/// Adds `nimbus:data/documents@0.2.0` to the linker.
pub(super) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    docs3::add_to_linker::<Host, D>(linker, Host::capability::<DocsState>)
}

/// The call `op` on `collection`, taken out of the store with room among
/// the instance's calls in flight (else the guest's error).
fn start(
    acc: &Accessor<Host, D>,
    op: &'static str,
    collection: String,
) -> Result<DocCall, WitError> {
    acc.with(|mut a| {
        let cx = a.get();
        let room = cx.host_call().map_err(|e| WitError::Other(e.to_string()))?;
        Ok(DocsState::call(&cx, op, collection).holding(room))
    })
}

fn err(e: WitError) -> docs3::Error {
    match e {
        WitError::NoSuchCollection(m) => docs3::Error::NoSuchCollection(m),
        WitError::Conflict(m) => docs3::Error::Conflict(m),
        WitError::Invalid(m) => docs3::Error::Invalid(m),
        WitError::Other(m) => docs3::Error::Other(m),
    }
}

fn doc(d: WitDocument) -> docs3::Document {
    docs3::Document {
        id: d.id,
        json: d.json,
        version: d.version,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

type Answer<T> = wasmtime::Result<Result<T, docs3::Error>>;

impl docs3::HostWithStore<Host> for D {
    async fn get(
        acc: &Accessor<Host, Self>,
        collection: String,
        id: String,
    ) -> Answer<Option<docs3::Document>> {
        let r = async { start(acc, "get", collection)?.get(id).await }.await;
        Ok(r.map(|o| o.map(doc)).map_err(err))
    }

    async fn put(
        acc: &Accessor<Host, Self>,
        collection: String,
        id: String,
        json: String,
        expected_version: Option<u64>,
    ) -> Answer<docs3::Document> {
        let r = async {
            start(acc, "put", collection)?
                .put(id, json, expected_version)
                .await
        }
        .await;
        Ok(r.map(doc).map_err(err))
    }

    async fn patch(
        acc: &Accessor<Host, Self>,
        collection: String,
        id: String,
        json: String,
        expected_version: Option<u64>,
    ) -> Answer<docs3::Document> {
        let r = async {
            start(acc, "patch", collection)?
                .patch(id, json, expected_version)
                .await
        }
        .await;
        Ok(r.map(doc).map_err(err))
    }

    async fn delete(acc: &Accessor<Host, Self>, collection: String, id: String) -> Answer<bool> {
        Ok(async { start(acc, "delete", collection)?.delete(id).await }
            .await
            .map_err(err))
    }

    async fn watch(
        acc: &Accessor<Host, Self>,
        collection: String,
        id: String,
        after_version: u64,
        timeout_ms: u32,
    ) -> Answer<Option<docs3::Document>> {
        let r = async {
            start(acc, "watch", collection)?
                .watch(id, after_version, timeout_ms)
                .await
        }
        .await;
        Ok(r.map(|o| o.map(doc)).map_err(err))
    }

    async fn query(
        acc: &Accessor<Host, Self>,
        collection: String,
        query: String,
    ) -> Answer<String> {
        Ok(
            async { start(acc, "query", collection)?.query(query).await }
                .await
                .map_err(err),
        )
    }
}

// Every function of the interface is an `async func`: its synchronous
// half is empty.
impl docs3::Host for Cx<'_> {}
