//! Object tagging (of the current version or a version named by id) and
//! bucket tagging, with S3's limits (`attrs::check_tags`).

use crate::Objects;
use crate::attrs::{MAX_BUCKET_TAGS, MAX_OBJECT_TAGS, tag_set, tags_of};
use crate::mapping::{internal, write_err};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

pub(crate) async fn get_object(
    this: &Objects,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    let row = this
        .object_row(&input.bucket, &input.key, input.version_id.as_deref())
        .await?;
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: tag_set(row.attrs.tags),
        version_id: crate::version_header(row.version_id),
    }))
}

pub(crate) async fn put_object(
    this: &Objects,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    let tags = tags_of(input.tagging, MAX_OBJECT_TAGS)?;
    let version = set(
        this,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        &tags,
    )
    .await?;
    Ok(S3Response::new(PutObjectTaggingOutput {
        version_id: crate::version_header(version),
    }))
}

pub(crate) async fn delete_object(
    this: &Objects,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    let version = set(
        this,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        &Vec::new(),
    )
    .await?;
    Ok(S3Response::new(DeleteObjectTaggingOutput {
        version_id: crate::version_header(version),
    }))
}

/// Sets the tags of a version; the version's id. A missing object or
/// version is reported as a read of it would be.
async fn set(
    this: &Objects,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    tags: &nimbus_store::Tags,
) -> S3Result<String> {
    match this
        .store
        .set_object_tags(bucket, key, version, tags)
        .await
        .map_err(internal)?
    {
        Some(v) => Ok(v),
        None => Err(this.missing_version(bucket, key, version).await),
    }
}

pub(crate) async fn get_bucket(
    this: &Objects,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    match this
        .store
        .bucket_tags(&req.input.bucket)
        .await
        .map_err(internal)?
    {
        Some(tags) => Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: tag_set(tags),
        })),
        None => Err(s3_error!(NoSuchTagSet, "the bucket has no tags")),
    }
}

pub(crate) async fn put_bucket(
    this: &Objects,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let input = req.input;
    let tags = tags_of(input.tagging, MAX_BUCKET_TAGS)?;
    this.store
        .set_bucket_tags(&input.bucket, Some(&tags))
        .await
        .map_err(write_err)?;
    Ok(S3Response::new(PutBucketTaggingOutput::default()))
}

pub(crate) async fn delete_bucket(
    this: &Objects,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    this.store
        .set_bucket_tags(&req.input.bucket, None)
        .await
        .map_err(write_err)?;
    Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
}
