//! Object storage behind the S3 API.
//!
//! `s3s` does the protocol (routing, XML, SigV4 and presigned URLs); this
//! crate is the storage behind it: bodies on disk ([`BlobFiles`]: streamed,
//! fsynced, renamed into place), metadata in the store. Every bucket belongs
//! to one app; an access key belongs to one app and reaches only its
//! buckets ([`Access`]). Only fresh SigV4 signatures are accepted
//! ([`Endpoint`]): no SigV2, no presigned URL valid for more than 7 days,
//! no request dated outside 15 minutes of now.
//!
//! Served: buckets, objects (put, get with range and conditions, head,
//! delete, delete-multiple, copy, list v1 and v2), multipart uploads, and
//! storage events written in the object change's transaction; guests reach
//! the same buckets through `nimbus:data` blobs (runtime/data.rs).

use nimbus_store::{BlobFiles, ListFrom, ObjectRow, Store};
use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::dto::*;
use s3s::path::S3Path;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Opens a sealed secret (the control plane's sealer).
pub type Unseal = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// The S3 storage of the platform.
#[derive(Clone)]
pub struct Objects {
    store: Store,
    blobs: BlobFiles,
    max_object_bytes: u64,
    events: Option<Arc<nimbus_events::Events>>,
    meter: Option<nimbus_store::RecordWriter>,
}

impl Objects {
    /// Storage on `store` and `blobs`, objects up to `max_object_bytes`;
    /// object changes become storage events through `events`.
    pub fn new(
        store: Store,
        blobs: BlobFiles,
        max_object_bytes: u64,
        events: Option<Arc<nimbus_events::Events>>,
    ) -> Objects {
        Objects {
            store,
            blobs,
            max_object_bytes,
            events,
            meter: None,
        }
    }

    /// Meters every S3 request that passes the access check as one object
    /// operation of its app (as S3 bills requests).
    pub fn metered(mut self, meter: nimbus_store::RecordWriter) -> Objects {
        self.meter = Some(meter);
        self
    }

    /// The storage events an object change of the request's app causes,
    /// to store with the change (in its transaction).
    fn events_for(
        &self,
        ext: &http::Extensions,
        bucket: &str,
        key: &str,
        kind: &str,
        size: u64,
        etag: &str,
    ) -> Vec<nimbus_store::NewMessage> {
        match (&self.events, app_of(ext)) {
            (Some(events), Ok(app)) => events.storage_messages(&app, bucket, key, kind, size, etag),
            _ => Vec::new(),
        }
    }

    /// Wakes the consumers of storage events just committed.
    fn wake(&self, msgs: &[nimbus_store::NewMessage]) {
        if let Some(events) = &self.events
            && !msgs.is_empty()
        {
            events.stored(msgs);
        }
    }

    /// Deletes an object with its storage events; its body goes once the
    /// deletion is committed (durably).
    async fn remove(&self, ext: &http::Extensions, bucket: &str, key: &str) -> S3Result<()> {
        let events = self.events_for(ext, bucket, key, "deleted", 0, "");
        if let Some(file) = self
            .store
            .delete_object(bucket, key, &events)
            .await
            .map_err(internal)?
        {
            self.blobs.delete(&file).await;
            self.wake(&events);
        }
        Ok(())
    }
}

impl Objects {
    /// Records an object whose body is `file`, with the "created" storage
    /// events it causes in the same transaction; once that is committed
    /// (durably), deletes the body it replaces (or `file` itself if
    /// recording fails). A crash at any point leaves the old object or the
    /// new one, each with its body, and its events.
    ///
    /// With `upload`, this completes that multipart upload: its parts are
    /// forgotten in the same transaction and their files deleted after.
    async fn commit(
        &self,
        ext: &http::Extensions,
        row: ObjectRow,
        file: &str,
        upload: Option<&str>,
    ) -> S3Result<()> {
        let events = self.events_for(ext, &row.bucket, &row.key, "created", row.size, &row.etag);
        let recorded = match upload {
            Some(id) => self.store.complete_upload(&row, id, &events).await,
            None => self
                .store
                .put_object(&row, &events)
                .await
                .map(|old| (old, Vec::new())),
        };
        match recorded {
            Ok((old, parts)) => {
                nimbus_store::fault_point("after-object-commit");
                for f in old.iter().chain(&parts) {
                    self.blobs.delete(f).await;
                }
                self.wake(&events);
                Ok(())
            }
            Err(e) => {
                self.blobs.delete(file).await;
                Err(write_err(e))
            }
        }
    }

    /// An object's metadata, or NoSuchKey.
    async fn object_row(&self, bucket: &str, key: &str) -> S3Result<ObjectRow> {
        self.store
            .object(bucket, key)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchKey))
    }

    /// A multipart upload of this bucket and key.
    async fn upload_of(
        &self,
        id: &str,
        bucket: &str,
        key: &str,
    ) -> S3Result<nimbus_store::UploadRow> {
        match self.store.upload(id).await.map_err(internal)? {
            Some(u) if u.bucket == bucket && u.key == key => Ok(u),
            _ => Err(s3_error!(NoSuchUpload)),
        }
    }
}

/// Whether a condition matches an object's ETag (`*` matches any object).
fn matches(cond: &ETagCondition, etag: Option<&str>) -> bool {
    match (cond, etag) {
        (ETagCondition::Any, e) => e.is_some(),
        (ETagCondition::ETag(t), Some(e)) => t.value() == e,
        (ETagCondition::ETag(_), None) => false,
    }
}

/// Read preconditions (RFC 9110): If-Match fails with 412, If-None-Match
/// matching answers 304.
fn check_read(
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
    etag: &str,
) -> S3Result<()> {
    if let Some(c) = if_match
        && !matches(c, Some(etag))
    {
        return Err(s3_error!(
            PreconditionFailed,
            "If-Match: the object's ETag is {etag}"
        ));
    }
    if let Some(c) = if_none_match
        && matches(c, Some(etag))
    {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An upload body that could not be stored, as S3 says it.
fn body_error(e: nimbus_store::BlobError) -> s3s::S3Error {
    match e {
        nimbus_store::BlobError::TooLarge(_) => s3_error!(EntityTooLarge, "{e}"),
        nimbus_store::BlobError::Body(_) => s3_error!(IncompleteBody, "{e}"),
        other => internal(other),
    }
}

/// Refuses a bucket that does not exist (404) or belongs to another app (403).
async fn check_owner(store: &Store, bucket: &str, app: &str) -> S3Result<()> {
    match store.bucket_owner(bucket).await.map_err(internal)? {
        None => Err(s3_error!(NoSuchBucket)),
        Some(owner) if owner != app => Err(s3_error!(
            AccessDenied,
            "bucket {bucket:?} belongs to another app"
        )),
        Some(_) => Ok(()),
    }
}

fn internal(e: impl std::fmt::Display) -> s3s::S3Error {
    s3_error!(InternalError, "{e}")
}

/// A store error of a write into a bucket, or of its deletion: the only
/// thing such a write finds missing is its bucket (deleted meanwhile).
/// Over a storage quota it is `QuotaExceeded`, 403 (as Ceph's RGW answers).
fn write_err(e: nimbus_store::StoreError) -> s3s::S3Error {
    match e {
        nimbus_store::StoreError::NotFound(m) => s3_error!(NoSuchBucket, "{m}"),
        e @ nimbus_store::StoreError::QuotaExceeded(_) => {
            let mut err = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("QuotaExceeded".into()),
                e.to_string(),
            );
            err.set_status_code(http::StatusCode::FORBIDDEN);
            err
        }
        e => internal(e),
    }
}

fn timestamp(us: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_micros(us.max(0) as u64))
}

/// Checks an object key: 1-1024 bytes, no NUL. Keys are data in SQL and
/// never paths: bodies are stored under generated ids.
fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() || key.len() > 1024 || key.contains('\0') {
        return Err(s3_error!(
            KeyTooLongError,
            "object keys are 1-1024 bytes without NUL"
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for Objects {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let app = app_of(&req.extensions)?;
        let buckets = self
            .store
            .buckets(&app)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|(name, created)| Bucket {
                name: Some(name),
                creation_date: Some(timestamp(created)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let app = app_of(&req.extensions)?;
        let name = req.input.bucket;
        match self
            .store
            .create_bucket(&name, &app)
            .await
            .map_err(internal)?
        {
            Ok(()) => Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{name}")),
            })),
            Err(owner) if owner == app => Err(s3_error!(BucketAlreadyOwnedByYou)),
            Err(_) => Err(s3_error!(BucketAlreadyExists)),
        }
    }

    async fn head_bucket(
        &self,
        _req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        // Access has checked that the bucket exists and is the caller's.
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        if !self
            .store
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(write_err)?
        {
            return Err(s3_error!(
                BucketNotEmpty,
                "the bucket still holds objects or multipart uploads in progress: delete the objects and abort the uploads first"
            ));
        }
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let ext = req.extensions;
        let input = req.input;
        check_key(&input.key)?;
        if input.if_match.is_some() || input.if_none_match.is_some() {
            let current = self
                .store
                .object(&input.bucket, &input.key)
                .await
                .map_err(internal)?
                .map(|o| o.etag);
            if let Some(c) = &input.if_match
                && !matches(c, current.as_deref())
            {
                return Err(s3_error!(
                    PreconditionFailed,
                    "If-Match does not match the current object"
                ));
            }
            if let Some(c) = &input.if_none_match
                && matches(c, current.as_deref())
            {
                return Err(s3_error!(
                    PreconditionFailed,
                    "If-None-Match: the object exists"
                ));
            }
        }
        let Some(body) = input.body else {
            return Err(s3_error!(IncompleteBody));
        };
        let stored = self
            .blobs
            .put_stream(self.max_object_bytes, body)
            .await
            .map_err(body_error)?;
        let mut metadata: Vec<(String, String)> =
            input.metadata.unwrap_or_default().into_iter().collect();
        metadata.sort();
        let row = ObjectRow {
            bucket: input.bucket,
            key: input.key,
            file: stored.file.clone(),
            size: stored.size,
            etag: stored.md5.clone(),
            content_type: input.content_type,
            metadata,
            last_modified_us: nimbus_store::now_us(),
        };
        self.commit(&ext, row, &stored.file, None).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(stored.md5)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let row = self.object_row(&input.bucket, &input.key).await?;
        check_read(&input.if_match, &input.if_none_match, &row.etag)?;
        let (start, end) = match input.range {
            None => (0, row.size),
            Some(r) => {
                let r = r.check(row.size).map_err(|_| s3_error!(InvalidRange))?;
                (r.start, r.end)
            }
        };
        let len = end - start;
        let file = self
            .blobs
            .open_range(&row.file, start)
            .await
            .map_err(internal)?;
        let body = tokio_util::io::ReaderStream::with_capacity(
            tokio::io::AsyncReadExt::take(file, len),
            64 * 1024,
        );
        let content_range = (len != row.size || start != 0)
            .then(|| format!("bytes {start}-{}/{}", end.saturating_sub(1), row.size));
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some(len as i64),
            content_range,
            content_type: row.content_type,
            e_tag: Some(ETag::Strong(row.etag)),
            last_modified: Some(timestamp(row.last_modified_us)),
            metadata: Some(row.metadata.into_iter().collect()),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let row = self.object_row(&input.bucket, &input.key).await?;
        check_read(&input.if_match, &input.if_none_match, &row.etag)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(row.size as i64),
            content_type: row.content_type,
            e_tag: Some(ETag::Strong(row.etag)),
            last_modified: Some(timestamp(row.last_modified_us)),
            metadata: Some(row.metadata.into_iter().collect()),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.remove(&req.extensions, &input.bucket, &input.key)
            .await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let mut deleted = Vec::new();
        for o in input.delete.objects {
            self.remove(&req.extensions, &input.bucket, &o.key).await?;
            deleted.push(DeletedObject {
                key: Some(o.key),
                ..Default::default()
            });
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let app = app_of(&req.extensions)?;
        let input = req.input;
        check_key(&input.key)?;
        let CopySource::Bucket { bucket, key, .. } = &input.copy_source else {
            return Err(s3_error!(
                NotImplemented,
                "copy from an access point is not supported"
            ));
        };
        // The destination bucket was checked by Access; the source is checked here.
        check_owner(&self.store, bucket, &app).await?;
        let src = self.object_row(bucket, key).await?;
        let file = self
            .blobs
            .open_range(&src.file, 0)
            .await
            .map_err(internal)?;
        let stored = self
            .blobs
            .put_stream(
                u64::MAX,
                tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
            )
            .await
            .map_err(internal)?;
        let replace = input.metadata_directive.as_ref().map(|d| d.as_str()) == Some("REPLACE");
        let (content_type, metadata) = if replace {
            let mut m: Vec<(String, String)> =
                input.metadata.unwrap_or_default().into_iter().collect();
            m.sort();
            (input.content_type, m)
        } else {
            (src.content_type.clone(), src.metadata.clone())
        };
        let row = ObjectRow {
            bucket: input.bucket,
            key: input.key,
            file: stored.file.clone(),
            size: stored.size,
            etag: stored.md5.clone(),
            content_type,
            metadata,
            last_modified_us: nimbus_store::now_us(),
        };
        self.commit(&req.extensions, row, &stored.file, None)
            .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(stored.md5)),
                last_modified: Some(timestamp(nimbus_store::now_us())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let marker = req.input.marker.clone();
        let delimiter = req.input.delimiter.clone().filter(|d| !d.is_empty());
        let prefix = req.input.prefix.clone().unwrap_or_default();
        // A marker that is a common prefix (as a page of this listing
        // ends) starts past all its keys, as a continuation token would.
        let token = marker.as_ref().map(|m| {
            let is_common = delimiter.as_ref().is_some_and(|d| {
                m.strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.find(d.as_str()))
                    .is_some_and(|j| prefix.len() + j + d.len() == m.len())
            });
            match nimbus_store::prefix_end(m).filter(|_| is_common) {
                Some(end) => token(&ListFrom::At(end)),
                None => token(&ListFrom::After(m.clone())),
            }
        });
        let v2 = req.map_input(|i| ListObjectsV2Input {
            bucket: i.bucket,
            delimiter: i.delimiter,
            max_keys: i.max_keys,
            prefix: i.prefix,
            continuation_token: token,
            ..Default::default()
        });
        let out = self.list_objects_v2(v2).await?.output;
        // The next marker: the last key or common prefix of this page.
        let last_key = out.contents.as_ref().and_then(|c| c.last()?.key.clone());
        let last_prefix = out
            .common_prefixes
            .as_ref()
            .and_then(|c| c.last()?.prefix.clone());
        let next_marker = if out.is_truncated == Some(true) {
            last_key.max(last_prefix)
        } else {
            None
        };
        Ok(S3Response::new(ListObjectsOutput {
            name: out.name,
            prefix: out.prefix,
            delimiter: out.delimiter,
            max_keys: out.max_keys,
            is_truncated: out.is_truncated,
            marker,
            next_marker,
            contents: out.contents,
            common_prefixes: out.common_prefixes,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut metadata: Vec<(String, String)> =
            input.metadata.unwrap_or_default().into_iter().collect();
        metadata.sort();
        self.store
            .create_upload(&nimbus_store::UploadRow {
                id: id.clone(),
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                content_type: input.content_type,
                metadata,
            })
            .await
            .map_err(write_err)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let upload = self
            .upload_of(&input.upload_id, &input.bucket, &input.key)
            .await?;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part numbers are 1 to 10000"));
        }
        let Some(body) = input.body else {
            return Err(s3_error!(IncompleteBody));
        };
        let stored = self
            .blobs
            .put_stream(self.max_object_bytes, body)
            .await
            .map_err(body_error)?;
        let part = nimbus_store::PartRow {
            part_number: i64::from(input.part_number),
            file: stored.file.clone(),
            size: stored.size,
            etag: stored.md5.clone(),
        };
        match self.store.put_part(&upload.id, &part).await {
            Ok(Some(old)) => self.blobs.delete(&old).await,
            Ok(None) => {}
            Err(e) => {
                self.blobs.delete(&stored.file).await;
                return Err(write_err(e));
            }
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(stored.md5)),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = self
            .upload_of(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let marker = i64::from(input.part_number_marker.unwrap_or(0));
        let max = input.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
        let all: Vec<_> = self
            .store
            .parts(&upload.id)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|p| p.part_number > marker)
            .collect();
        let truncated = all.len() > max;
        let parts: Vec<Part> = all
            .iter()
            .take(max)
            .map(|p| Part {
                part_number: Some(p.part_number as i32),
                size: Some(p.size as i64),
                e_tag: Some(ETag::Strong(p.etag.clone())),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.id),
            is_truncated: Some(truncated),
            next_part_number_marker: parts.last().and_then(|p| p.part_number),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload = self
            .upload_of(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let stored_parts = self.store.parts(&upload.id).await.map_err(internal)?;
        let asked = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if asked.is_empty() {
            return Err(s3_error!(MalformedXML, "name the parts to assemble"));
        }
        let mut files = Vec::with_capacity(asked.len());
        let mut md5s = Vec::with_capacity(asked.len() * 16);
        let mut last = 0;
        let mut total = 0u64;
        for p in &asked {
            let n = i64::from(p.part_number.unwrap_or(0));
            if n <= last {
                return Err(s3_error!(InvalidPartOrder));
            }
            last = n;
            let Some(stored) = stored_parts.iter().find(|s| s.part_number == n) else {
                return Err(s3_error!(InvalidPart, "part {n} was not uploaded"));
            };
            if let Some(tag) = &p.e_tag
                && tag.value() != stored.etag
            {
                return Err(s3_error!(
                    InvalidPart,
                    "part {n} has ETag {}, not {}",
                    stored.etag,
                    tag.value()
                ));
            }
            files.push(stored.file.clone());
            md5s.extend(hex_decode(&stored.etag));
            total = total.saturating_add(stored.size);
        }
        if total > self.max_object_bytes {
            return Err(s3_error!(
                EntityTooLarge,
                "the parts add up to {total} bytes, over this server's object limit of {} bytes (nimbus up --max-object-mb): complete the upload with fewer parts, or abort it",
                self.max_object_bytes
            ));
        }
        let joined = self.blobs.concat(&files).await.map_err(internal)?;
        let etag = format!("{}-{}", md5_hex(&md5s), asked.len());
        let row = ObjectRow {
            bucket: upload.bucket.clone(),
            key: upload.key.clone(),
            file: joined.file.clone(),
            size: joined.size,
            etag: etag.clone(),
            content_type: upload.content_type.clone(),
            metadata: upload.metadata.clone(),
            last_modified_us: nimbus_store::now_us(),
        };
        self.commit(&req.extensions, row, &joined.file, Some(&upload.id))
            .await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(upload.bucket),
            key: Some(upload.key),
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let upload = self
            .upload_of(&input.upload_id, &input.bucket, &input.key)
            .await?;
        for f in self
            .store
            .delete_upload(&upload.id)
            .await
            .map_err(internal)?
        {
            self.blobs.delete(&f).await;
        }
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        // Where this page starts: after the marker or the client's
        // `start-after`, or where the continuation token says (a token
        // that ends a page on a common prefix starts past all its keys).
        let mut start = match &input.continuation_token {
            Some(t) => from_token(t)?,
            None => ListFrom::After(input.start_after.clone().unwrap_or_default()),
        };
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let mut contents = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut truncated = false;
        // Rows read for this request: a page may end early (truncated,
        // with a token) so that no request scans without bound.
        let mut scanned = 0usize;
        'pages: loop {
            let want = (max - contents.len() - prefixes.len() + 1).min(LIST_BATCH);
            let page = self
                .store
                .list_objects(&input.bucket, &prefix, &start, want as u32)
                .await
                .map_err(internal)?;
            let full = page.len() == want;
            scanned += page.len();
            for o in page {
                if contents.len() + prefixes.len() >= max {
                    truncated = true;
                    break 'pages;
                }
                if let Some(d) = &delimiter
                    && let Some(i) = o.key[prefix.len()..].find(d.as_str())
                {
                    let common = o.key[..prefix.len() + i + d.len()].to_string();
                    prefixes.push(common.clone());
                    // The next read starts past every key of this prefix;
                    // none is past it when the prefix ends in U+10FFFF
                    // only (no string sorts after all its extensions).
                    match nimbus_store::prefix_end(&common) {
                        Some(end) => start = ListFrom::At(end),
                        None => break 'pages,
                    }
                    if scanned >= LIST_SCAN_LIMIT {
                        truncated = true;
                        break 'pages;
                    }
                    continue 'pages;
                }
                start = ListFrom::After(o.key.clone());
                contents.push(Object {
                    key: Some(o.key),
                    size: Some(o.size as i64),
                    e_tag: Some(ETag::Strong(o.etag)),
                    last_modified: Some(timestamp(o.last_modified_us)),
                    ..Default::default()
                });
            }
            if !full {
                break;
            }
            if scanned >= LIST_SCAN_LIMIT {
                truncated = true;
                break;
            }
        }
        let count = (contents.len() + prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(max as i32),
            key_count: Some(count),
            is_truncated: Some(truncated),
            next_continuation_token: truncated.then(|| token(&start)),
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            contents: Some(contents),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

/// Rows one listing read asks for at most.
const LIST_BATCH: usize = 1000;
/// Rows one listing request reads at most: past them, the page ends
/// (truncated, with a continuation token) however few keys it holds.
const LIST_SCAN_LIMIT: usize = 10_000;

/// The opaque continuation token of a page that ends at `from`: `a` or
/// `f`, then the key.
fn token(from: &ListFrom) -> String {
    match from {
        ListFrom::After(k) => format!("a{k}"),
        ListFrom::At(k) => format!("f{k}"),
    }
}

/// Where the page a continuation token names starts.
fn from_token(t: &str) -> S3Result<ListFrom> {
    if let Some(k) = t.strip_prefix('a') {
        Ok(ListFrom::After(k.to_string()))
    } else if let Some(k) = t.strip_prefix('f') {
        Ok(ListFrom::At(k.to_string()))
    } else {
        Err(s3_error!(
            InvalidArgument,
            "the continuation token is not one this server gave: start the listing again without it"
        ))
    }
}

/// The app an authenticated request acts for (set by [`Access`]).
#[derive(Clone)]
struct AppId(String);

fn app_of(ext: &http::Extensions) -> S3Result<String> {
    ext.get::<AppId>().map(|a| a.0.clone()).ok_or_else(|| {
        s3_error!(
            AccessDenied,
            "sign requests with a key from `nimbus keys create --s3`"
        )
    })
}

/// Access keys issued per app: their secrets verify SigV4 signatures.
/// Nothing is cached: each request reads its key from the store, so a key
/// revoked or deleted with its app (through any node) is refused on its
/// next request.
pub struct Keys {
    store: Store,
    unseal: Unseal,
}

impl Keys {
    /// Keys stored in `store`, their secrets opened with `unseal`.
    pub fn new(store: Store, unseal: Unseal) -> Keys {
        Keys { store, unseal }
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let (_, sealed) = self
            .store
            .s3_key(access_key)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let secret = (self.unseal)(&sealed).map_err(internal)?;
        Ok(SecretKey::from(secret))
    }
}

/// Who may touch what: a signed request acts for its key's app, and
/// reaches only that app's buckets (403 otherwise, 404 for a bucket that
/// does not exist).
pub struct Access {
    store: Store,
    meter: Option<nimbus_store::RecordWriter>,
}

impl Access {
    /// Access checks against `store`; requests that pass are metered on
    /// `meter`.
    pub fn new(store: Store, meter: Option<nimbus_store::RecordWriter>) -> Access {
        Access { store, meter }
    }
}

/// Longest validity of a presigned URL (`X-Amz-Expires`), as S3's: 7 days.
pub const MAX_PRESIGNED_SECS: u64 = 604_800;

/// Clock skew allowed to the client that made a SigV2 presigned URL,
/// whose expiry is a time rather than a duration (as s3s allows SigV4
/// request dates).
const PRESIGNED_SKEW_SECS: u64 = 900;

fn sigv2_refused() -> s3s::S3Error {
    s3_error!(
        AccessDenied,
        "Signature Version 2 is not accepted for signed requests (their date is never checked: a captured request could be replayed forever): sign requests with Signature Version 4 (AWS4-HMAC-SHA256; boto3: Config(signature_version=\"s3v4\"); aws-cli: `s3 = signature_version = s3v4` in the profile)"
    )
}

fn presigned_too_long(what: &str) -> s3s::S3Error {
    s3_error!(
        AuthorizationQueryParametersError,
        "a presigned URL is valid for 1 second to 7 days ({MAX_PRESIGNED_SECS} seconds): {what}"
    )
}

/// What `s3s` lets through that Nimbus refuses, before `s3s` sees the
/// request: Signature Version 2 in the `Authorization` header (its date is
/// never checked, so a captured request replays forever; SigV2 forms are
/// refused by [`Access`]), and presigned URLs valid for less than a second
/// or more than [`MAX_PRESIGNED_SECS`] — `s3s` takes any `X-Amz-Expires`
/// up to 136 years, and any SigV2 `Expires` time. A SigV2 presigned URL
/// (what aws-cli v1's `s3 presign` makes) is held to the same week, as
/// `Expires` (Unix seconds) no later than `now_secs` plus a week (and
/// [`PRESIGNED_SKEW_SECS`]); `s3s` refuses it once past. SigV4's own
/// checks — a header-signed request's `X-Amz-Date` within 15 minutes of
/// now, a presigned URL not past its expiry — are `s3s`'s. Query names
/// are read decoded, as `s3s` reads them.
fn check_signature(headers: &http::HeaderMap, query: Option<&str>, now_secs: u64) -> S3Result<()> {
    if headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| v.as_bytes().starts_with(b"AWS "))
    {
        return Err(sigv2_refused());
    }
    let (mut sigv2, mut sigv2_expires) = (false, None);
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "Signature" => sigv2 = true,
            "Expires" => sigv2_expires = Some(value.parse::<u64>().ok()),
            "X-Amz-Expires" => match value.parse::<u64>() {
                Ok(secs) if (1..=MAX_PRESIGNED_SECS).contains(&secs) => {}
                _ => {
                    return Err(presigned_too_long(&format!("X-Amz-Expires is {value:?}")));
                }
            },
            _ => {}
        }
    }
    if sigv2 {
        let latest = now_secs + MAX_PRESIGNED_SECS + PRESIGNED_SKEW_SECS;
        match sigv2_expires.flatten() {
            Some(t) if t <= latest => {}
            Some(t) => {
                return Err(presigned_too_long(&format!(
                    "Expires is {} s from now",
                    t.saturating_sub(now_secs)
                )));
            }
            None => return Err(presigned_too_long("Expires is missing or not a time")),
        }
    }
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait::async_trait]
impl s3s::access::S3Access for Access {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let Some(Credentials { access_key, .. }) = cx.credentials() else {
            return Err(s3_error!(
                AccessDenied,
                "anonymous access is not allowed: sign requests with a key from `nimbus keys create --s3`"
            ));
        };
        let (app, _) = self
            .store
            .s3_key(access_key)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.to_string()),
        };
        if let Some(b) = bucket
            && cx.s3_op().name() != "CreateBucket"
        {
            check_owner(&self.store, &b, &app).await?;
        }
        if let Some(m) = &self.meter {
            m.meter(&app, nimbus_core::Service::Objects, 1);
        }
        cx.extensions_mut().insert(AppId(app));
        Ok(())
    }

    /// A browser-form upload (POST object) carries its signature in the
    /// form, out of [`check`](Self::check)'s sight: a SigV2 one is the one
    /// without a credential scope, so without a region.
    async fn post_object(&self, req: &mut S3Request<PostObjectInput>) -> S3Result<()> {
        if req.credentials.is_some() && req.region.is_none() {
            return Err(sigv2_refused());
        }
        Ok(())
    }
}

/// The S3 HTTP service: storage, per-app keys (SigV4) and access checks.
/// Path-style addressing (`http://host:port/bucket/key`).
pub fn service(objects: Objects, unseal: Unseal) -> Endpoint {
    let store = objects.store.clone();
    let meter = objects.meter.clone();
    let mut b = s3s::service::S3ServiceBuilder::new(objects);
    b.set_auth(Keys::new(store.clone(), unseal));
    b.set_access(Access::new(store, meter));
    Endpoint { s3: b.build() }
}

/// The S3 endpoint: [`check_signature`] in front of `s3s`, so a refused
/// request costs no key lookup, no signature check and no body read.
#[derive(Clone)]
pub struct Endpoint {
    s3: s3s::service::S3Service,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Endpoint {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        if let Err(e) = check_signature(req.headers(), req.uri().query(), now_secs()) {
            return Box::pin(std::future::ready(Ok(error_response(&e))));
        }
        hyper::service::Service::call(&self.s3, req)
    }
}

/// An S3 error answered before `s3s` saw the request, as S3 writes it.
fn error_response(e: &s3s::S3Error) -> s3s::HttpResponse {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
        e.code().as_str(),
        escape(e.message().unwrap_or(""))
    );
    http::Response::builder()
        .status(e.status_code().unwrap_or(http::StatusCode::FORBIDDEN))
        .header(http::header::CONTENT_TYPE, "application/xml")
        .body(s3s::Body::from(body))
        .expect("a valid response")
}

/// Serves the S3 API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Endpoint,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    tokio::pin!(shutdown);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "S3 accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let watcher = connections.watcher();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "S3 connection ended with an error");
            }
        });
    }
    // Idle connections close now; transfers under way get up to DRAIN.
    drop(listener);
    const DRAIN: Duration = Duration::from_secs(10);
    if tokio::time::timeout(DRAIN, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("S3 connections still open after {DRAIN:?} of shutting down: left");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn check(auth: Option<&str>, query: Option<&str>) -> Result<(), String> {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        check_signature(&h, query, NOW).map_err(|e| format!("{:?}", e.code()))
    }

    #[test]
    fn only_fresh_signatures_pass() {
        let v4 = "AWS4-HMAC-SHA256 Credential=NK/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(check(Some(v4), None), Ok(()));
        assert_eq!(check(None, Some("list-type=2&prefix=a")), Ok(()));
        let week = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604800&X-Amz-Signature=00";
        assert_eq!(check(None, Some(week)), Ok(()));
        // SigV2 in the header: never.
        assert_eq!(check(Some("AWS NK:c2ln"), None), Err("AccessDenied".into()));
        // SigV2 presigned: for at most a week (and the skew) from now.
        let v2 = |expires: &str| format!("AWSAccessKeyId=NK&Expires={expires}&Signature=c2ln");
        assert_eq!(check(None, Some(&v2(&(NOW + 600).to_string()))), Ok(()));
        assert_eq!(
            check(None, Some(&v2(&(NOW + 604_800 + 900).to_string()))),
            Ok(())
        );
        for q in [
            v2(&(NOW + 604_800 + 901).to_string()),
            v2(&(NOW + 315_360_000).to_string()),
            v2("soon"),
            "AWSAccessKeyId=NK&Signature=c2ln".to_string(),
        ] {
            assert_eq!(
                check(None, Some(&q)),
                Err("AuthorizationQueryParametersError".into()),
                "{q}"
            );
        }
        // SigV4 presigned URLs valid for 0 s or more than 7 days, however
        // written.
        for q in [
            "X-Amz-Expires=604801",
            "X-Amz-Expires=315360000",
            "X-Amz-Expires=0",
            "X-Amz-Expires=-1",
            "X-Amz-Expires=1e9",
            "X-Amz-%45xpires=315360000",
        ] {
            assert_eq!(
                check(None, Some(q)),
                Err("AuthorizationQueryParametersError".into()),
                "{q}"
            );
        }
        let e = check_signature(
            &http::HeaderMap::new(),
            Some("X-Amz-Expires=999999999"),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.status_code(), Some(http::StatusCode::BAD_REQUEST));
        assert!(e.message().unwrap().contains("604800"), "{e:?}");
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "AWS NK:c2ln".parse().unwrap());
        let e = check_signature(&h, None, NOW).unwrap_err();
        assert_eq!(e.status_code(), Some(http::StatusCode::FORBIDDEN));
        assert!(
            e.message().unwrap().contains("Signature Version 4"),
            "{e:?}"
        );
        let r = error_response(&e);
        assert_eq!(r.status(), 403);
    }
}
