//! Buckets: list, create (with Object Lock too), head, delete, location,
//! versioning, and who owns one.

use crate::Objects;
use crate::auth::app_of;
use crate::mapping::{internal, timestamp, write_err};
use nimbus_store::{Store, Versioning};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

/// Refuses a bucket that does not exist (404) or belongs to another app (403).
pub(crate) async fn check_owner(store: &Store, bucket: &str, app: &str) -> S3Result<()> {
    match store.bucket_owner(bucket).await.map_err(internal)? {
        None => Err(s3_error!(NoSuchBucket)),
        Some(owner) if owner != app => Err(s3_error!(
            AccessDenied,
            "bucket {bucket:?} belongs to another app"
        )),
        Some(_) => Ok(()),
    }
}

pub(crate) async fn list(
    this: &Objects,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let app = app_of(&req.extensions)?;
    let buckets = this
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

pub(crate) async fn create(
    this: &Objects,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let app = app_of(&req.extensions)?;
    let input = req.input;
    crate::acl::no_grant_headers(&[
        &input.grant_full_control,
        &input.grant_read,
        &input.grant_read_acp,
        &input.grant_write,
        &input.grant_write_acp,
    ])?;
    let public = crate::acl::canned(input.acl.as_ref().map(|a| a.as_str()))?;
    let name = input.bucket;
    let created = if input.object_lock_enabled_for_bucket == Some(true) {
        this.store.create_locked_bucket(&name, &app).await
    } else {
        this.store.create_bucket(&name, &app).await
    };
    match created.map_err(internal)? {
        Ok(()) => {
            if public {
                this.store
                    .set_bucket_public(&name, true)
                    .await
                    .map_err(write_err)?;
            }
            Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{name}")),
            }))
        }
        Err(owner) if owner == app => Err(s3_error!(BucketAlreadyOwnedByYou)),
        Err(_) => Err(s3_error!(BucketAlreadyExists)),
    }
}

pub(crate) async fn head(
    _this: &Objects,
    _req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    // Access has checked that the bucket exists and is the caller's.
    Ok(S3Response::new(HeadBucketOutput::default()))
}

/// The bucket's region. Nimbus has one, and answers as S3 does for
/// `us-east-1`: an empty `LocationConstraint`.
pub(crate) async fn location(
    _this: &Objects,
    _req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    // Access has checked that the bucket exists and is the caller's.
    Ok(S3Response::new(GetBucketLocationOutput::default()))
}

/// The bucket's versioning: no status until it was first enabled.
pub(crate) async fn get_versioning(
    this: &Objects,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let status = match this
        .store
        .bucket_versioning(&req.input.bucket)
        .await
        .map_err(internal)?
    {
        Versioning::Unversioned => None,
        Versioning::Enabled => Some(BucketVersioningStatus::ENABLED),
        Versioning::Suspended => Some(BucketVersioningStatus::SUSPENDED),
    };
    Ok(S3Response::new(GetBucketVersioningOutput {
        status: status.map(BucketVersioningStatus::from_static),
        ..Default::default()
    }))
}

/// Enables or suspends versioning. MFA delete is not offered: Nimbus has
/// no MFA devices to check a code against.
pub(crate) async fn put_versioning(
    this: &Objects,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let conf = req.input.versioning_configuration;
    if conf
        .mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
    {
        return Err(s3_error!(
            NotImplemented,
            "MFA delete is not supported: leave MfaDelete out or Disabled"
        ));
    }
    let enabled = match conf.status.as_ref().map(|s| s.as_str()) {
        Some(BucketVersioningStatus::ENABLED) => true,
        Some(BucketVersioningStatus::SUSPENDED) => false,
        other => {
            return Err(s3_error!(
                MalformedXML,
                "VersioningConfiguration Status is {other:?}: it must be Enabled or Suspended"
            ));
        }
    };
    match this
        .store
        .set_bucket_versioning(&req.input.bucket, enabled)
        .await
    {
        Err(nimbus_store::StoreError::Locked(m)) => {
            return Err(s3_error!(InvalidBucketState, "{m}"));
        }
        other => other.map_err(write_err)?,
    }
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}

pub(crate) async fn delete(
    this: &Objects,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    if !this
        .store
        .delete_bucket(&req.input.bucket)
        .await
        .map_err(write_err)?
    {
        return Err(s3_error!(
            BucketNotEmpty,
            "the bucket still holds objects, object versions or delete markers, or multipart uploads in progress: delete them (ListObjectVersions lists every version) and abort the uploads first"
        ));
    }
    Ok(S3Response::new(DeleteBucketOutput::default()))
}
