//! `nimbus:data/blobs` for guests: objects of the app's buckets that the
//! function is granted (`buckets = [...]`), through the same store and
//! body files as the S3 API. Writes here store no storage events (only the
//! S3 endpoint's do), and one call carries at most the node's value limit:
//! larger objects go through S3.

use nimbus_core::{AppSpec, FunctionSpec, Service};
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, HostCall, InstanceCx, Op};
use nimbus_store::{BlobFiles, Store};
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
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
    /// Each app's turns among the writes running on tasks of their own
    /// (see [`detached`]).
    writes: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Writes (puts, deletes) of one app's guests running at once on this
/// node: a write goes on when its caller stops waiting, so no instance's
/// limits bound these.
const APP_WRITES: usize = 64;

impl Blobs {
    pub fn new(store: Store, files: BlobFiles, limit: u64) -> Blobs {
        Blobs(Arc::new(Node {
            store,
            files,
            limit,
            writes: Default::default(),
        }))
    }
}

impl Node {
    fn writes(&self, app: &str) -> Arc<Semaphore> {
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        writes
            .entry(app.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(APP_WRITES)))
            .clone()
    }
}

/// One instance's state: its function and app.
pub struct BlobsState {
    node: Arc<Node>,
    app: Arc<AppSpec>,
    function: Arc<FunctionSpec>,
}

pub(crate) type Cx<'a> = GuestCx<'a, BlobsState>;

impl GuestCapability for Blobs {
    fn name(&self) -> &'static str {
        "blobs"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        blobs_wit::add_to_linker::<Host, HasCx<BlobsState>>(
            linker,
            Host::capability::<BlobsState>,
        )?;
        crate::guest3::link(linker)
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
    /// The call `op` on `bucket`, with what it needs cloned out of the
    /// instance: the WASI 0.2 binding awaits it in place, the WASI 0.3 one
    /// (`guest3`) after leaving the store.
    pub(crate) fn call(cx: &Cx<'_>, op: &'static str, bucket: String) -> BlobCall {
        BlobCall {
            op: cx.op(Service::Objects, op, &bucket),
            on: Target {
                node: cx.state.node.clone(),
                app: cx.state.app.clone(),
                function: cx.state.function.clone(),
                bucket,
            },
        }
    }
}

/// One call on a bucket (see [`BlobsState::call`]).
pub(crate) struct BlobCall {
    op: Op,
    on: Target,
}

/// A bucket of a function's app, and what reaches it.
struct Target {
    node: Arc<Node>,
    app: Arc<AppSpec>,
    function: Arc<FunctionSpec>,
    bucket: String,
}

/// What a call answers: the WASI 0.2 binding's types.
pub(crate) type BlobResult<T> = Result<T, blobs_wit::Error>;
pub(crate) use blobs_wit::{Error as WitError, ObjectInfo as WitInfo};

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

/// Runs `write` on a task of its own, which goes on if the caller's
/// future is dropped (a WASI 0.3 guest may cancel its call, and a timeout
/// drops it), so a write ends with its row committed or its body file
/// removed, and the bodies it replaced freed: never a body file no row
/// names. It waits for a turn among its app's [`APP_WRITES`] first (the
/// wait is the caller's, and stops with it).
async fn detached<T: Send + 'static>(
    writes: Arc<Semaphore>,
    write: impl Future<Output = BlobResult<T>> + Send + 'static,
) -> BlobResult<T> {
    let turn = writes.acquire_owned().await;
    let turn = turn.map_err(|_| blob_err("the node is shutting down"))?;
    tokio::spawn(async move {
        let _turn = turn;
        write.await
    })
    .await
    .unwrap_or_else(|e| Err(blob_err(format!("the write failed: {e}"))))
}

impl BlobCall {
    /// Holds `room` (an async call's place among its instance's) until
    /// the call ends.
    pub(crate) fn holding(mut self, room: HostCall) -> Self {
        self.op.hold(room);
        self
    }

    pub(crate) async fn get(self, key: String) -> BlobResult<Option<Vec<u8>>> {
        let (db, files, limit) = self.on.open().await?;
        let row = match db.object(&self.on.bucket, &key).await.map_err(blob_err)? {
            Some(r) => r,
            None => return self.op.result(Ok(None)),
        };
        if row.size > limit {
            return Err(blobs_wit::Error::TooLarge(format!(
                "object {key:?} is {} bytes, over the {limit} bytes this interface carries; read it through the S3 API",
                row.size
            )));
        }
        let mut f = files.open_range(&row.file, 0).await.map_err(blob_err)?;
        let mut buf = Vec::with_capacity(row.size as usize);
        let r = tokio::io::AsyncReadExt::read_to_end(&mut f, &mut buf).await;
        self.op.result(r.map(|_| Some(buf)).map_err(blob_err))
    }

    /// Writes an object, to its end even if the caller stops waiting
    /// ([`detached`]); the call is metered (and its room held) while the
    /// caller waits.
    pub(crate) async fn put(
        self,
        key: String,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> BlobResult<blobs_wit::ObjectInfo> {
        let BlobCall { op, on } = self;
        let writes = on.node.writes(&on.app.name);
        op.result(detached(writes, on.put(key, data, content_type)).await)
    }

    /// Deletes an object, to its end as [`BlobCall::put`] does, so the
    /// bodies it frees are removed.
    pub(crate) async fn delete(self, key: String) -> BlobResult<bool> {
        let BlobCall { op, on } = self;
        let writes = on.node.writes(&on.app.name);
        op.result(detached(writes, on.delete(key)).await)
    }

    pub(crate) async fn list(
        self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> BlobResult<Vec<blobs_wit::ObjectInfo>> {
        let (db, _, _) = self.on.open().await?;
        let from = nimbus_store::ListFrom::After(after.unwrap_or_default());
        let r = db
            .list_objects(&self.on.bucket, &prefix, &from, limit.clamp(1, 1000))
            .await;
        self.op.result(
            r.map(|rows| rows.iter().map(info).collect())
                .map_err(blob_err),
        )
    }
}

impl Target {
    /// The store, the body files and the call limit, once the bucket is
    /// granted to the function and belongs to its app.
    async fn open(&self) -> BlobResult<(&Store, &BlobFiles, u64)> {
        let bucket = &self.bucket;
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

    async fn put(
        self,
        key: String,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> BlobResult<blobs_wit::ObjectInfo> {
        let (db, files, limit) = self.open().await?;
        if key.is_empty() || key.len() > 1024 || key.contains('\0') {
            return Err(blobs_wit::Error::Other(
                "object keys are 1-1024 bytes without NUL".into(),
            ));
        }
        if data.len() as u64 > limit {
            return Err(blobs_wit::Error::TooLarge(format!(
                "the object is {} bytes, over the {limit} bytes this interface carries; write it through the S3 API",
                data.len()
            )));
        }
        let chunk = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))]);
        let stored = files.put_stream(limit, chunk).await.map_err(blob_err)?;
        let row = nimbus_store::ObjectRow {
            bucket: self.bucket.clone(),
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
        match db.put_object(&row, &[]).await {
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
        }
    }

    async fn delete(self, key: String) -> BlobResult<bool> {
        let (db, files, _) = self.open().await?;
        // In a versioned bucket, a deletion adds a delete marker (S3's
        // rule): `true` then too, as the key is gone from reads.
        match db.delete_object(&self.bucket, &key, None, &[], false).await {
            Ok(removed) => {
                for f in &removed.freed {
                    files.delete(f).await;
                }
                Ok(removed.changed)
            }
            Err(e) => Err(blob_err(e)),
        }
    }
}

impl blobs_wit::Host for Cx<'_> {
    async fn get(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<BlobResult<Option<Vec<u8>>>> {
        Ok(BlobsState::call(self, "get", bucket).get(key).await)
    }

    async fn put(
        &mut self,
        bucket: String,
        key: String,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> wasmtime::Result<BlobResult<blobs_wit::ObjectInfo>> {
        let c = BlobsState::call(self, "put", bucket);
        Ok(c.put(key, data, content_type).await)
    }

    async fn delete(&mut self, bucket: String, key: String) -> wasmtime::Result<BlobResult<bool>> {
        Ok(BlobsState::call(self, "delete", bucket).delete(key).await)
    }

    async fn list_objects(
        &mut self,
        bucket: String,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<BlobResult<Vec<blobs_wit::ObjectInfo>>> {
        let c = BlobsState::call(self, "list", bucket);
        Ok(c.list(prefix, after, limit).await)
    }
}
