//! `nimbus:data/documents` for guests: a collection opens through
//! [`Collection::open`] with the function's grants, and every call passes
//! [`Collection::check_write`] (an id's rules; a write's size).

use super::Collection;
use crate::{Caller, Refusal};
use nimbus_core::{AppSpec, FunctionSpec, Service};
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, HostCall, InstanceCx, Op};
use nimbus_store::{DocError, DocQuery, Document, Store};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Linker;

wasmtime::component::bindgen!({
    path: "../../wit/data",
    world: "nimbus:data/docs-host",
    imports: { default: async | trappable },
});

use nimbus::data::documents as docs_wit;

/// The documents capability's guest side.
pub struct Docs(Arc<Node>);

/// What every instance shares.
struct Node {
    store: Store,
    max_value_bytes: u64,
}

impl Docs {
    pub fn new(store: Store, max_value_bytes: u64) -> Docs {
        Docs(Arc::new(Node {
            store,
            max_value_bytes,
        }))
    }
}

/// One instance's state: its function and app.
pub struct DocsState {
    node: Arc<Node>,
    app: Arc<AppSpec>,
    function: Arc<FunctionSpec>,
}

pub(super) type Cx<'a> = GuestCx<'a, DocsState>;

impl GuestCapability for Docs {
    fn name(&self) -> &'static str {
        "documents"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        docs_wit::add_to_linker::<Host, HasCx<DocsState>>(linker, Host::capability::<DocsState>)?;
        super::guest3::link(linker)
    }

    fn instance(&self, cx: &InstanceCx<'_>) -> Box<dyn Any + Send> {
        Box::new(DocsState {
            node: self.0.clone(),
            app: cx.function.app_spec().clone(),
            function: cx.function.spec().clone(),
        })
    }
}

impl DocsState {
    /// The call `op` on `collection`, with what it needs cloned out of
    /// the instance: the WASI 0.2 binding awaits it in place, the WASI 0.3
    /// one (`guest3`) after leaving the store.
    pub(super) fn call(cx: &Cx<'_>, op: &'static str, collection: String) -> DocCall {
        DocCall {
            op: cx.op(Service::Docs, op, &collection),
            node: cx.state.node.clone(),
            app: cx.state.app.clone(),
            function: cx.state.function.clone(),
            collection,
        }
    }
}

/// One call on a collection (see [`DocsState::call`]).
pub(super) struct DocCall {
    op: Op,
    node: Arc<Node>,
    app: Arc<AppSpec>,
    function: Arc<FunctionSpec>,
    collection: String,
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

/// What a call answers: the WASI 0.2 binding's types.
pub(super) type DocResult<T> = Result<T, docs_wit::Error>;
pub(super) use docs_wit::{Document as WitDocument, Error as WitError};

impl DocCall {
    /// Holds `room` (an async call's place among its instance's) until
    /// the call ends.
    pub(super) fn holding(mut self, room: HostCall) -> Self {
        self.op.hold(room);
        self
    }

    /// The store, once the collection opened for the function and a
    /// document `id` (if named) of `json_len` bytes passed its rule.
    fn docs(&self, id: Option<&str>, json_len: usize) -> DocResult<&Store> {
        let c = Collection::open(
            &self.app,
            &self.collection,
            Caller::Function(&self.function),
            self.node.max_value_bytes,
        )
        .map_err(|e| match e {
            Refusal::NotFound(m) | Refusal::NotGranted(m) => docs_wit::Error::NoSuchCollection(m),
            e => docs_wit::Error::Invalid(e.to_string()),
        })?;
        c.check_write(id, json_len)
            .map_err(|e| docs_wit::Error::Invalid(e.to_string()))?;
        Ok(&self.node.store)
    }

    fn app(&self) -> &str {
        &self.app.name
    }

    pub(super) async fn get(self, id: String) -> DocResult<Option<docs_wit::Document>> {
        let db = self.docs(Some(&id), 0)?;
        let r = db.doc_get(self.app(), &self.collection, &id).await;
        self.op.result(r.map(|o| o.map(doc_out)).map_err(doc_err))
    }

    pub(super) async fn watch(
        self,
        id: String,
        after_version: u64,
        timeout_ms: u32,
    ) -> DocResult<Option<docs_wit::Document>> {
        let db = self.docs(Some(&id), 0)?;
        let timeout = Duration::from_millis(u64::from(timeout_ms).min(MAX_WATCH_MS));
        let after = i64::try_from(after_version).unwrap_or(i64::MAX);
        let r = db
            .doc_watch(self.app(), &self.collection, &id, after, timeout)
            .await;
        self.op.result(r.map(|o| o.map(doc_out)).map_err(doc_err))
    }

    pub(super) async fn put(
        self,
        id: String,
        json: String,
        expected_version: Option<u64>,
    ) -> DocResult<docs_wit::Document> {
        let db = self.docs(Some(&id), json.len())?;
        let expected = expected_version.map(|v| v as i64);
        let r = db
            .doc_put(self.app(), &self.collection, &id, &json, expected)
            .await;
        self.op.result(r.map(doc_out).map_err(doc_err))
    }

    pub(super) async fn patch(
        self,
        id: String,
        json: String,
        expected_version: Option<u64>,
    ) -> DocResult<docs_wit::Document> {
        let db = self.docs(Some(&id), json.len())?;
        let expected = expected_version.map(|v| v as i64);
        let r = db
            .doc_patch(
                self.app(),
                &self.collection,
                &id,
                &json,
                expected,
                self.node.max_value_bytes,
            )
            .await;
        self.op.result(r.map(doc_out).map_err(doc_err))
    }

    pub(super) async fn delete(self, id: String) -> DocResult<bool> {
        let db = self.docs(Some(&id), 0)?;
        let r = db.doc_delete(self.app(), &self.collection, &id).await;
        self.op.result(r.map_err(doc_err))
    }

    pub(super) async fn query(self, query: String) -> DocResult<String> {
        let db = self.docs(None, 0)?;
        let q = DocQuery::parse(&query).map_err(doc_err)?;
        let r = db.doc_query(self.app(), &self.collection, &q).await;
        self.op.result(
            r.map(|page| serde_json::to_string(&page).expect("documents serialize"))
                .map_err(doc_err),
        )
    }
}

impl docs_wit::Host for Cx<'_> {
    async fn get(
        &mut self,
        collection: String,
        id: String,
    ) -> wasmtime::Result<DocResult<Option<docs_wit::Document>>> {
        Ok(DocsState::call(self, "get", collection).get(id).await)
    }

    async fn watch(
        &mut self,
        collection: String,
        id: String,
        after_version: u64,
        timeout_ms: u32,
    ) -> wasmtime::Result<DocResult<Option<docs_wit::Document>>> {
        let c = DocsState::call(self, "watch", collection);
        Ok(c.watch(id, after_version, timeout_ms).await)
    }

    async fn put(
        &mut self,
        collection: String,
        id: String,
        json: String,
        expected_version: Option<u64>,
    ) -> wasmtime::Result<DocResult<docs_wit::Document>> {
        let c = DocsState::call(self, "put", collection);
        Ok(c.put(id, json, expected_version).await)
    }

    async fn patch(
        &mut self,
        collection: String,
        id: String,
        json: String,
        expected_version: Option<u64>,
    ) -> wasmtime::Result<DocResult<docs_wit::Document>> {
        let c = DocsState::call(self, "patch", collection);
        Ok(c.patch(id, json, expected_version).await)
    }

    async fn delete(
        &mut self,
        collection: String,
        id: String,
    ) -> wasmtime::Result<DocResult<bool>> {
        Ok(DocsState::call(self, "delete", collection).delete(id).await)
    }

    async fn query(
        &mut self,
        collection: String,
        query: String,
    ) -> wasmtime::Result<DocResult<String>> {
        Ok(DocsState::call(self, "query", collection)
            .query(query)
            .await)
    }
}
