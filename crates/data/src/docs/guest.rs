//! `nimbus:data/documents` for guests: a collection opens through
//! [`Collection::open`] with the function's grants, and every call passes
//! [`Collection::check_write`] (an id's rules; a write's size).

use super::Collection;
use crate::{Caller, Refusal};
use nimbus_core::{AppSpec, FunctionSpec, Service};
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, InstanceCx};
use nimbus_store::{DocError, DocQuery, Document, Store};
use std::any::Any;
use std::sync::Arc;
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

type Cx<'a> = GuestCx<'a, DocsState>;

impl GuestCapability for Docs {
    fn name(&self) -> &'static str {
        "documents"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        docs_wit::add_to_linker::<Host, HasCx<DocsState>>(linker, Host::capability::<DocsState>)
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
    fn app(&self) -> &str {
        &self.app.name
    }

    /// The store, once `coll` opened for the function and a document `id`
    /// (if named) of `json_len` bytes passed the collection's rule.
    fn docs(
        &self,
        coll: &str,
        id: Option<&str>,
        json_len: usize,
    ) -> Result<&Store, docs_wit::Error> {
        let c = Collection::open(
            &self.app,
            coll,
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

impl docs_wit::Host for Cx<'_> {
    async fn get(
        &mut self,
        collection: String,
        id: String,
    ) -> wasmtime::Result<Result<Option<docs_wit::Document>, docs_wit::Error>> {
        let op = self.op(Service::Docs, "get", &collection);
        let d = &*self.state;
        Ok(op.result(match d.docs(&collection, Some(&id), 0) {
            Ok(db) => db
                .doc_get(d.app(), &collection, &id)
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
        let d = &*self.state;
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms).min(MAX_WATCH_MS));
        Ok(op.result(match d.docs(&collection, Some(&id), 0) {
            Ok(db) => db
                .doc_watch(
                    d.app(),
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
        let d = &*self.state;
        Ok(op.result(match d.docs(&collection, Some(&id), json.len()) {
            Ok(db) => db
                .doc_put(
                    d.app(),
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
        let d = &*self.state;
        Ok(op.result(match d.docs(&collection, Some(&id), json.len()) {
            Ok(db) => db
                .doc_patch(
                    d.app(),
                    &collection,
                    &id,
                    &json,
                    expected_version.map(|v| v as i64),
                    d.node.max_value_bytes,
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
        let d = &*self.state;
        Ok(op.result(match d.docs(&collection, Some(&id), 0) {
            Ok(db) => db
                .doc_delete(d.app(), &collection, &id)
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
        let d = &*self.state;
        let db = match d.docs(&collection, None, 0) {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        let q = match DocQuery::parse(&query) {
            Ok(q) => q,
            Err(e) => return Ok(Err(doc_err(e))),
        };
        Ok(op.result(
            db.doc_query(d.app(), &collection, &q)
                .await
                .map(|page| serde_json::to_string(&page).expect("documents serialize"))
                .map_err(doc_err),
        ))
    }
}
