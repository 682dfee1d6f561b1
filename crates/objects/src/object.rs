//! Objects: put, get (ranges and conditions), head, delete one or many,
//! copy; each by version id too (`Store::delete_object` says what a
//! deletion does under each versioning state).
//!
//! An object's body streams to `BlobFiles` (temp file, fsync, rename)
//! before its row is committed; the row and its storage events
//! (`Events::storage_messages`, one per matching `[[triggers.storage]]`)
//! commit in one transaction ([`Objects::commit`], `Store::put_object`,
//! `Store::delete_object`), after which `Events::stored` wakes their
//! consumers and the body it replaced (or, if recording failed, the new
//! one) is deleted. A crash at any point leaves the old object or the new
//! one, each with its body and its events. Object keys are data in SQL,
//! never paths: bodies live under generated ids. (Guests writing through
//! `nimbus:data/blobs` store no storage events: only S3 writes do.)

use crate::Objects;
use crate::acl;
use crate::attrs::{expires, header, headers, parse_tagging_header};
use crate::auth::app_of;
use crate::buckets::check_owner;
use crate::checksum;
use crate::mapping::{
    Conditions, DEFAULT_CONTENT_TYPE, body_error, check_copy_source, check_key, check_read,
    internal, matches, timestamp,
};
use nimbus_store::{ObjectAttrs, ObjectRow};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

pub(crate) async fn put(
    this: &Objects,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let ext = req.extensions;
    let input = req.input;
    check_key(&input.key)?;
    let asked = checksum::Asked::of(
        &req.headers,
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
    )?;
    if input.if_match.is_some() || input.if_none_match.is_some() {
        let current = this
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
    // Checked before the body is read: a refused tag set or ACL costs no
    // upload.
    acl::no_grant_headers(&[
        &input.grant_full_control,
        &input.grant_read,
        &input.grant_read_acp,
        &input.grant_write_acp,
    ])?;
    let public = acl::canned(input.acl.as_ref().map(|a| a.as_str()))?;
    acl::check_may_publish(this, &input.bucket, public).await?;
    let (retention, legal_hold) = crate::lock::for_write(
        this,
        &input.bucket,
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
    )
    .await?;
    let attrs = ObjectAttrs {
        public,
        retention,
        legal_hold,
        checksum: None,
        headers: headers(
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.expires.as_ref(),
        ),
        tags: parse_tagging_header(input.tagging.as_deref())?,
    };
    let Some(body) = input.body else {
        return Err(s3_error!(IncompleteBody));
    };
    let sum = checksum::Summing::new(asked.algorithm);
    let stored = this
        .blobs
        .put_stream(this.max_object_bytes, sum.wrap(body))
        .await
        .map_err(body_error)?;
    let computed = sum.value();
    if let Err(e) = checksum::verify(&asked, computed.as_deref(), req.trailing_headers.as_ref()) {
        this.blobs.delete(&stored.file).await;
        return Err(e);
    }
    let mut attrs = attrs;
    attrs.checksum = checksum::kept(asked.algorithm, computed);
    let kept = attrs.checksum.clone();
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
        version_id: String::new(),
        attrs,
    };
    let version_id = this.commit(&ext, row, &stored.file, None).await?;
    let mut out = PutObjectOutput {
        e_tag: Some(ETag::Strong(stored.md5)),
        version_id,
        ..Default::default()
    };
    out.checksum_type = checksum::fill!(out, kept.as_ref());
    Ok(S3Response::new(out))
}

/// A version's Object Lock as a read answers it: to its app only (S3
/// answers it to those allowed to read retentions and holds, never to an
/// unsigned reader).
fn lock_of(
    ext: &http::Extensions,
    a: &ObjectAttrs,
) -> (
    Option<ObjectLockMode>,
    Option<Timestamp>,
    Option<ObjectLockLegalHoldStatus>,
) {
    if acl::anonymous(ext).is_some() {
        return (None, None, None);
    }
    crate::lock::answered(a)
}

pub(crate) async fn get(
    this: &Objects,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let found = this
        .object_row(&input.bucket, &input.key, input.version_id.as_deref())
        .await;
    let row = acl::check_read(this, &req.extensions, &input.bucket, found, |o| {
        o.attrs.public
    })
    .await?;
    // As S3: an unsigned GET may not rewrite the answer's headers (a
    // public object could otherwise be served as, say, text/html).
    let overrides = [
        input.response_cache_control.is_some(),
        input.response_content_disposition.is_some(),
        input.response_content_encoding.is_some(),
        input.response_content_language.is_some(),
        input.response_content_type.is_some(),
        input.response_expires.is_some(),
    ];
    if acl::anonymous(&req.extensions).is_some() && overrides.contains(&true) {
        return Err(s3_error!(
            InvalidRequest,
            "response-* parameters are not accepted on unsigned requests: sign the request (or presign the URL)"
        ));
    }
    let conditions = Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    check_read(&conditions, &row.etag, row.last_modified_us)?;
    let (start, end) = match input.range {
        None => (0, row.size),
        Some(r) => {
            let r = r.check(row.size).map_err(|_| s3_error!(InvalidRange))?;
            (r.start, r.end)
        }
    };
    let len = end - start;
    let file = this
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
    let (lock_mode, retain_until, legal_hold) = lock_of(&req.extensions, &row.attrs);
    // Checksums are of whole objects: a range is answered without one.
    let sum = (wants_checksum(input.checksum_mode.as_ref()) && content_range.is_none())
        .then(|| row.attrs.checksum.clone())
        .flatten();
    let mut out = GetObjectOutput {
        object_lock_mode: lock_mode,
        object_lock_retain_until_date: retain_until,
        object_lock_legal_hold_status: legal_hold,
        body: Some(StreamingBlob::wrap(body)),
        content_length: Some(len as i64),
        content_range,
        content_type: Some(
            input
                .response_content_type
                .or(row.content_type)
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
        ),
        e_tag: Some(ETag::Strong(row.etag)),
        last_modified: Some(timestamp(row.last_modified_us)),
        metadata: Some(row.metadata.into_iter().collect()),
        accept_ranges: Some("bytes".into()),
        tag_count: (!row.attrs.tags.is_empty()).then_some(row.attrs.tags.len() as i32),
        version_id: crate::version_header(row.version_id),
        // `response-*` overrides of a (presigned) GET win over what is kept.
        cache_control: input
            .response_cache_control
            .or_else(|| header(&row.attrs, "cache-control")),
        content_disposition: input
            .response_content_disposition
            .or_else(|| header(&row.attrs, "content-disposition")),
        content_encoding: input
            .response_content_encoding
            .or_else(|| header(&row.attrs, "content-encoding")),
        content_language: input
            .response_content_language
            .or_else(|| header(&row.attrs, "content-language")),
        expires: input.response_expires.or_else(|| expires(&row.attrs)),
        ..Default::default()
    };
    out.checksum_type = checksum::fill!(out, sum.as_ref());
    Ok(S3Response::new(out))
}

/// GetObjectAttributes: what was asked of a version, out of its ETag,
/// size, storage class (always `STANDARD`), checksum and parts (how many:
/// the parts themselves are not kept once an upload completes).
pub(crate) async fn attributes(
    this: &Objects,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    if input.object_attributes.is_empty() {
        return Err(s3_error!(
            InvalidArgument,
            "name the attributes to get in x-amz-object-attributes: ETag, Checksum, ObjectParts, ObjectSize, StorageClass"
        ));
    }
    let row = this
        .object_row(&input.bucket, &input.key, input.version_id.as_deref())
        .await?;
    // One header, its names separated by commas (s3s keeps it whole).
    let asked: Vec<&str> = input
        .object_attributes
        .iter()
        .flat_map(|x| x.as_str().split(','))
        .map(str::trim)
        .collect();
    let wants = |a: &str| asked.contains(&a);
    let mut out = GetObjectAttributesOutput {
        last_modified: Some(timestamp(row.last_modified_us)),
        ..Default::default()
    };
    if wants(ObjectAttributes::ETAG) {
        out.e_tag = Some(ETag::Strong(row.etag.clone()));
    }
    if wants(ObjectAttributes::OBJECT_SIZE) {
        out.object_size = Some(row.size as i64);
    }
    if wants(ObjectAttributes::STORAGE_CLASS) {
        out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
    }
    if wants(ObjectAttributes::CHECKSUM) && row.attrs.checksum.is_some() {
        let (mut sum, kind) = checksum::answered(row.attrs.checksum.as_ref());
        sum.checksum_type = kind;
        out.checksum = Some(sum);
    }
    if wants(ObjectAttributes::OBJECT_PARTS)
        && let Some(n) = row
            .etag
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<i32>().ok())
    {
        out.object_parts = Some(GetObjectAttributesParts {
            total_parts_count: Some(n),
            ..Default::default()
        });
    }
    out.version_id = crate::version_header(row.version_id);
    Ok(S3Response::new(out))
}

/// Whether a read asks for the object's checksum.
fn wants_checksum(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

pub(crate) async fn head(
    this: &Objects,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let found = this
        .object_row(&input.bucket, &input.key, input.version_id.as_deref())
        .await;
    let row = acl::check_read(this, &req.extensions, &input.bucket, found, |o| {
        o.attrs.public
    })
    .await?;
    let conditions = Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    check_read(&conditions, &row.etag, row.last_modified_us)?;
    let (lock_mode, retain_until, legal_hold) = lock_of(&req.extensions, &row.attrs);
    let sum = wants_checksum(input.checksum_mode.as_ref())
        .then(|| row.attrs.checksum.clone())
        .flatten();
    let mut out = HeadObjectOutput {
        object_lock_mode: lock_mode,
        object_lock_retain_until_date: retain_until,
        object_lock_legal_hold_status: legal_hold,
        content_length: Some(row.size as i64),
        content_type: Some(
            row.content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
        ),
        e_tag: Some(ETag::Strong(row.etag)),
        last_modified: Some(timestamp(row.last_modified_us)),
        metadata: Some(row.metadata.into_iter().collect()),
        accept_ranges: Some("bytes".into()),
        cache_control: header(&row.attrs, "cache-control"),
        content_disposition: header(&row.attrs, "content-disposition"),
        content_encoding: header(&row.attrs, "content-encoding"),
        content_language: header(&row.attrs, "content-language"),
        expires: expires(&row.attrs),
        version_id: crate::version_header(row.version_id),
        ..Default::default()
    };
    out.checksum_type = checksum::fill!(out, sum.as_ref());
    Ok(S3Response::new(out))
}

pub(crate) async fn delete(
    this: &Objects,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    let removed = this
        .remove(
            &req.extensions,
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            input.bypass_governance_retention.unwrap_or(false),
        )
        .await?;
    Ok(S3Response::new(DeleteObjectOutput {
        delete_marker: removed.delete_marker.then_some(true),
        version_id: removed.version_id,
        ..Default::default()
    }))
}

/// Deletes up to 1,000 objects (or versions), each on its own: one that
/// fails is reported in `Error` and the others still go, as S3 does.
pub(crate) async fn delete_many(
    this: &Objects,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    if input.delete.objects.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "a DeleteObjects request names at most 1,000 objects; it named {}",
            input.delete.objects.len()
        ));
    }
    let bypass = input.bypass_governance_retention.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for o in input.delete.objects {
        let version = o.version_id.as_deref();
        match this
            .remove(&req.extensions, &input.bucket, &o.key, version, bypass)
            .await
        {
            Ok(r) => {
                // A marker, created or deleted, is answered with its id.
                deleted.push(DeletedObject {
                    key: Some(o.key),
                    version_id: o.version_id,
                    delete_marker: r.delete_marker.then_some(true),
                    delete_marker_version_id: r.version_id.filter(|_| r.delete_marker),
                })
            }
            Err(e) => errors.push(Error {
                key: Some(o.key),
                version_id: o.version_id,
                code: Some(e.code().as_str().to_string()),
                message: e.message().map(str::to_string),
            }),
        }
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: (!quiet).then_some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    }))
}

/// The source of a copy (CopyObject, UploadPartCopy): a bucket of the
/// caller's app (the destination was checked by `Access`; the source is
/// checked here), its current version or the version named (a delete
/// marker is no source), meeting the `x-amz-copy-source-if-*` conditions.
pub(crate) async fn copy_source(
    this: &Objects,
    ext: &http::Extensions,
    source: &CopySource,
    conditions: &Conditions<'_>,
) -> S3Result<ObjectRow> {
    let app = app_of(ext)?;
    let CopySource::Bucket {
        bucket,
        key,
        version_id,
    } = source
    else {
        return Err(s3_error!(
            NotImplemented,
            "copy from an access point is not supported"
        ));
    };
    check_owner(&this.store, bucket, &app).await?;
    let src = match this.object_row(bucket, key, version_id.as_deref()).await {
        Err(e) if *e.code() == s3s::S3ErrorCode::MethodNotAllowed => {
            return Err(s3_error!(
                InvalidRequest,
                "the copy source names a delete marker by version id: name a version with a body"
            ));
        }
        other => other?,
    };
    check_copy_source(conditions, &src.etag, src.last_modified_us)?;
    Ok(src)
}

pub(crate) async fn copy(
    this: &Objects,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    // A copy asked for a checksum computes it; otherwise it keeps the
    // source's (the body is the same).
    let asked = checksum::Asked::of(
        &req.headers,
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
    )?;
    let conditions = Conditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    };
    let src = copy_source(this, &req.extensions, &input.copy_source, &conditions).await?;
    let src_version = match &input.copy_source {
        CopySource::Bucket { version_id, .. } => version_id.clone(),
        _ => None,
    };
    // Every refusal comes before the body is copied: a copy refused after
    // it would leave a file no row points at.
    acl::no_grant_headers(&[
        &input.grant_full_control,
        &input.grant_read,
        &input.grant_read_acp,
        &input.grant_write_acp,
    ])?;
    // A copy is private unless its request says otherwise (S3's rule).
    let public = acl::canned(input.acl.as_ref().map(|a| a.as_str()))?;
    acl::check_may_publish(this, &input.bucket, public).await?;
    // The copy's lock is its request's or the bucket's default, never the
    // source's (as S3 does).
    let (retention, legal_hold) = crate::lock::for_write(
        this,
        &input.bucket,
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
    )
    .await?;
    let tags = if input.tagging_directive.as_ref().map(|d| d.as_str()) == Some("REPLACE") {
        parse_tagging_header(input.tagging.as_deref())?
    } else {
        src.attrs.tags.clone()
    };
    let file = this
        .blobs
        .open_range(&src.file, 0)
        .await
        .map_err(internal)?;
    let sum = checksum::Summing::new(asked.algorithm);
    let stored = this
        .blobs
        .put_stream(
            u64::MAX,
            sum.wrap(tokio_util::io::ReaderStream::with_capacity(
                file,
                256 * 1024,
            )),
        )
        .await
        .map_err(internal)?;
    let kept_sum = match asked.algorithm {
        Some(a) => checksum::kept(Some(a), sum.value()),
        None => src.attrs.checksum.clone(),
    };
    // MetadataDirective REPLACE takes the media type, user metadata and
    // kept headers from the request, COPY (the default) from the source;
    // TaggingDirective does the same for tags.
    let replace = input.metadata_directive.as_ref().map(|d| d.as_str()) == Some("REPLACE");
    let (content_type, metadata, kept) = if replace {
        let mut m: Vec<(String, String)> = input.metadata.unwrap_or_default().into_iter().collect();
        m.sort();
        let kept = headers(
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.expires.as_ref(),
        );
        (input.content_type, m, kept)
    } else {
        (
            src.content_type.clone(),
            src.metadata.clone(),
            src.attrs.headers.clone(),
        )
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
        version_id: String::new(),
        attrs: ObjectAttrs {
            headers: kept,
            tags,
            public,
            retention,
            legal_hold,
            checksum: kept_sum.clone(),
        },
    };
    let last_modified = row.last_modified_us;
    let version_id = this
        .commit(&req.extensions, row, &stored.file, None)
        .await?;
    let mut result = CopyObjectResult {
        e_tag: Some(ETag::Strong(stored.md5)),
        last_modified: Some(timestamp(last_modified)),
        ..Default::default()
    };
    result.checksum_type = checksum::fill!(result, kept_sum.as_ref());
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(result),
        version_id,
        copy_source_version_id: src_version
            .is_some()
            .then(|| src.version_id.clone())
            .or_else(|| crate::version_header(src.version_id.clone())),
        ..Default::default()
    }))
}
