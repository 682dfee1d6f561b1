//! Object storage behind the S3 API.
//!
//! `s3s` does the protocol (routing, XML, SigV4 and presigned URLs); this
//! crate is the storage behind it: bodies on disk ([`BlobFiles`]: streamed,
//! fsynced, renamed into place), metadata in the store. Every bucket belongs
//! to one app; an access key belongs to one app and reaches only its
//! buckets ([`Access`]). Signatures are checked by [`Endpoint`] before
//! `s3s` sees the request (a refused request costs no key lookup, no
//! signature check and no body read): SigV2 in the `Authorization` header
//! is refused (its date is never checked, so a captured request would
//! replay forever), and so are SigV2 form uploads; presigned URLs must be
//! valid for 1 s to 7 days (SigV4 `X-Amz-Expires`; a SigV2 presigned URL's
//! `Expires` no later than a week, plus 15 minutes of skew, from now).
//! SigV4's own checks (`X-Amz-Date` within 15 minutes, a presigned URL not
//! past its expiry) are `s3s`'s.
//!
//! Served: buckets (list, create, head, delete, location, versioning),
//! objects (put, get with range and conditions, head, attributes, delete,
//! delete-multiple, copy, list v1 and v2; each by version too, and their
//! versions' listing; kept standard headers and tags: `attrs`,
//! `tagging`; ACLs `private` and `public-read`, the Public Access Block
//! and unsigned reads of what is public: `acl`), multipart uploads (and
//! their listing), and storage events written in the object change's
//! transaction; guests reach the same buckets through
//! `nimbus:data/blobs` ([`Blobs`], `guest.rs`: the guest side, linked into
//! the runtime as a `GuestCapability`). docs/S3.md lists every S3
//! operation and how far it is served.
//!
//! The code map: [`Objects`] and the write path every operation shares
//! (commit an object with its events, then drop the body it replaced) are
//! here, with the `s3s::S3` implementation as the table of operations; each
//! operation is written in its area's module — `buckets`, `object` (put,
//! get, head, delete, copy), `multipart`, `listing` — with the S3 mappings
//! they share in `mapping` (errors, conditions, keys, timestamps). Who may
//! do what is `auth` ([`Keys`], [`Access`], the signature checks); the HTTP
//! service in front of `s3s` is `endpoint`.

mod acl;
mod attrs;
mod auth;
mod buckets;
mod checksum;
mod cors;
mod endpoint;
mod form;
mod guest;
mod guest3;
mod listing;
mod lock;
mod mapping;
mod multipart;
mod object;
mod tagging;

pub use auth::{Access, Keys, MAX_PRESIGNED_SECS};
pub use endpoint::{BadDomain, Endpoint, serve, service};
pub use form::{FORM_UPLOADS_AT_ONCE, MAX_FORM_FILE_BYTES};
pub use guest::Blobs;

use auth::app_of;
use mapping::{internal, write_err};
use nimbus_store::{BlobFiles, ObjectRow, Store};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use std::sync::Arc;

/// The `x-amz-version-id` of a version: none for the null version (as a
/// bucket without versioning answers).
fn version_header(id: String) -> Option<String> {
    (id != nimbus_store::NULL_VERSION).then_some(id)
}

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

    /// Deletes an object (or, with `version`, that version) with its
    /// storage events, as the bucket's versioning says
    /// (`Store::delete_object`; a version its Object Lock keeps is
    /// `AccessDenied`); the bodies it frees go once the deletion is
    /// committed (durably).
    async fn remove(
        &self,
        ext: &http::Extensions,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        bypass_governance: bool,
    ) -> S3Result<nimbus_store::Removed> {
        let events = self.events_for(ext, bucket, key, "deleted", 0, "");
        let removed = self
            .store
            .delete_object(bucket, key, version, &events, bypass_governance)
            .await
            .map_err(write_err)?;
        for f in &removed.freed {
            self.blobs.delete(f).await;
        }
        if removed.changed {
            self.wake(&events);
        }
        Ok(removed)
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
    /// The new version's id (S3's `x-amz-version-id`: none for the null
    /// version).
    async fn commit(
        &self,
        ext: &http::Extensions,
        row: ObjectRow,
        file: &str,
        upload: Option<&str>,
    ) -> S3Result<Option<String>> {
        let events = self.events_for(ext, &row.bucket, &row.key, "created", row.size, &row.etag);
        let recorded = match upload {
            Some(id) => self.store.complete_upload(&row, id, &events).await,
            None => self.store.put_object(&row, &events).await,
        };
        match recorded {
            Ok(written) => {
                nimbus_store::fault_point("after-object-commit");
                for f in &written.freed {
                    self.blobs.delete(f).await;
                }
                self.wake(&events);
                Ok(version_header(written.version_id))
            }
            Err(e) => {
                self.blobs.delete(file).await;
                Err(write_err(e))
            }
        }
    }

    /// An object's metadata: its current version, or the version named.
    /// A key whose latest version is a delete marker answers NoSuchKey,
    /// and a delete marker named by its id MethodNotAllowed, each with
    /// `x-amz-delete-marker: true` (as S3 does).
    async fn object_row(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<ObjectRow> {
        let Some(version) = version else {
            if let Some(row) = self.store.object(bucket, key).await.map_err(internal)? {
                return Ok(row);
            }
            let marker = self
                .store
                .latest_marker(bucket, key)
                .await
                .map_err(internal)?;
            let mut e = s3_error!(NoSuchKey);
            if let Some(id) = marker {
                e.set_headers(mapping::marker_headers(&id));
            }
            return Err(e);
        };
        match self
            .store
            .object_version(bucket, key, version)
            .await
            .map_err(internal)?
        {
            Some(v) if v.delete_marker => {
                let mut e = s3_error!(
                    MethodNotAllowed,
                    "version {version:?} of {key:?} is a delete marker: it has no body or metadata"
                );
                e.set_headers(mapping::marker_headers(version));
                Err(e)
            }
            Some(v) => Ok(v.object),
            None => Err(s3_error!(
                NoSuchVersion,
                "{key:?} has no version {version:?}: ListObjectVersions lists its versions"
            )),
        }
    }

    /// Why a change of a version's attributes (tags, ACL, lock) found no
    /// version to change: as a read of it answers (NoSuchKey,
    /// NoSuchVersion, or a delete marker).
    async fn missing_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> s3s::S3Error {
        self.object_row(bucket, key, version)
            .await
            .err()
            .unwrap_or_else(|| s3_error!(NoSuchKey))
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

/// The operations `s3s` routes to; each is written in its area's module.
#[async_trait::async_trait]
impl S3 for Objects {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        buckets::list(self, req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        buckets::create(self, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        buckets::head(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        buckets::delete(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        buckets::location(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        buckets::get_versioning(self, req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        buckets::put_versioning(self, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        object::put(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        object::get(self, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        object::head(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        object::delete(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        object::delete_many(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        object::copy(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        listing::list_v1(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        listing::list_v2(self, req).await
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        acl::get_bucket(self, req).await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        acl::put_bucket(self, req).await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        acl::get_object(self, req).await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        acl::put_object(self, req).await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        acl::get_block(self, req).await
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        acl::put_block(self, req).await
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        acl::delete_block(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        tagging::get_object(self, req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        cors::get(self, req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        cors::put(self, req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        cors::delete(self, req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        object::attributes(self, req).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        lock::get_configuration(self, req).await
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        lock::put_configuration(self, req).await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        lock::get_retention(self, req).await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        lock::put_retention(self, req).await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        lock::get_legal_hold(self, req).await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        lock::put_legal_hold(self, req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        tagging::put_object(self, req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        tagging::delete_object(self, req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        tagging::get_bucket(self, req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        tagging::put_bucket(self, req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        tagging::delete_bucket(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        listing::list_versions(self, req).await
    }
}
