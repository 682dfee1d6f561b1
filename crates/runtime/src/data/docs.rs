//! `nimbus:data/documents` on the app's collections: a guest uses only the
//! collections its function is granted, and every write passes
//! `nimbus_core::data::check_doc_write`.

use super::{DataBinding, docs_wit};
use crate::host::Host;
use nimbus_core::Service;
use nimbus_store::{DocError, DocQuery, Document, Store};

impl DataBinding {
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
