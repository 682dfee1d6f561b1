//! `nimbus:data/blobs` for guests: objects of the app's buckets that the
//! function is granted (`buckets = [...]`), through the same store and
//! body files as the S3 API. Writes here store no storage events (only the
//! S3 endpoint's do), and one call carries at most the node's value limit:
//! larger objects go through S3.

use nimbus_core::{AppSpec, FunctionSpec, Service};
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, InstanceCx};
use nimbus_store::{BlobFiles, Store};
use std::any::Any;
use std::sync::Arc;
use wasmtime::component::Linker;

wasmtime::component::bindgen!({
    path: "../../wit/data",
    world: "nimbus:data/blobs-host",
    imports: { default: async | trappable },
});

use nimbus::data::blobs as blobs_wit;

/// Object storage's guest side.
pub struct Blobs(Arc<Node>);

/// What every instance shares.
struct Node {
    store: Store,
    files: BlobFiles,
    /// Most bytes one call carries.
    limit: u64,
}

impl Blobs {
    pub fn new(store: Store, files: BlobFiles, limit: u64) -> Blobs {
        Blobs(Arc::new(Node {
            store,
            files,
            limit,
        }))
    }
}

/// One instance's state: its function and app.
pub struct BlobsState {
    node: Arc<Node>,
    app: Arc<AppSpec>,
    function: Arc<FunctionSpec>,
}

type Cx<'a> = GuestCx<'a, BlobsState>;

impl GuestCapability for Blobs {
    fn name(&self) -> &'static str {
        "blobs"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        blobs_wit::add_to_linker::<Host, HasCx<BlobsState>>(linker, Host::capability::<BlobsState>)
    }

    fn instance(&self, cx: &InstanceCx<'_>) -> Box<dyn Any + Send> {
        Box::new(BlobsState {
            node: self.0.clone(),
            app: cx.function.app_spec().clone(),
            function: cx.function.spec().clone(),
        })
    }
}

impl BlobsState {
    /// The store, the body files and the call limit, once `bucket` is
    /// granted to the function and belongs to its app.
    async fn bucket(&self, bucket: &str) -> Result<(&Store, &BlobFiles, u64), blobs_wit::Error> {
        if !self.function.buckets.iter().any(|b| b == bucket) {
            return Err(blobs_wit::Error::NoSuchBucket(format!(
                "bucket {bucket:?} is not granted to this function: add it to its `buckets` in nimbus.toml"
            )));
        }
        let n = &self.node;
        match n.store.bucket_owner(bucket).await {
            Ok(Some(owner)) if owner == self.app.name => Ok((&n.store, &n.files, n.limit)),
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

impl blobs_wit::Host for Cx<'_> {
    async fn get(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, blobs_wit::Error>> {
        let op = self.op(Service::Objects, "get", &bucket);
        let (db, files, limit) = match self.state.bucket(&bucket).await {
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
        let (db, files, limit) = match self.state.bucket(&bucket).await {
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
            version_id: String::new(),
            // A bucket with Object Lock gives it its default retention
            // (the store does, as for an S3 write).
            attrs: Default::default(),
        };
        Ok(op.result(match db.put_object(&row, &[]).await {
            Ok(written) => {
                for f in &written.freed {
                    files.delete(f).await;
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
        let (db, files, _) = match self.state.bucket(&bucket).await {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        // In a versioned bucket, a deletion adds a delete marker (S3's
        // rule): `true` then too, as the key is gone from reads.
        Ok(op.result(
            match db.delete_object(&bucket, &key, None, &[], false).await {
                Ok(removed) => {
                    for f in &removed.freed {
                        files.delete(f).await;
                    }
                    Ok(removed.changed)
                }
                Err(e) => Err(blob_err(e)),
            },
        ))
    }

    async fn list_objects(
        &mut self,
        bucket: String,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<blobs_wit::ObjectInfo>, blobs_wit::Error>> {
        let op = self.op(Service::Objects, "list", &bucket);
        let (db, _, _) = match self.state.bucket(&bucket).await {
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
