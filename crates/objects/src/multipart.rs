//! Multipart uploads: create, upload a part (or copy one from an object),
//! list parts, complete (the whole held to the object size limit), abort.

use crate::Objects;
use crate::checksum::{self, Asked};
use crate::mapping::{body_error, check_key, hex_decode, internal, md5_hex, write_err};
use nimbus_store::{ObjectRow, PartRow};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

pub(crate) async fn create(
    this: &Objects,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    crate::acl::no_grant_headers(&[
        &input.grant_full_control,
        &input.grant_read,
        &input.grant_read_acp,
        &input.grant_write_acp,
    ])?;
    let public = crate::acl::canned(input.acl.as_ref().map(|a| a.as_str()))?;
    crate::acl::check_may_publish(this, &input.bucket, public).await?;
    // Without a retention, the object gets the bucket's default one when
    // the upload completes (the store applies it).
    let (retention, legal_hold) = crate::lock::for_write(
        this,
        &input.bucket,
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
    )
    .await?;
    let checksum = crate::checksum::declared(
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
        input.checksum_type.as_ref(),
    )?;
    let attrs = nimbus_store::ObjectAttrs {
        public,
        retention,
        legal_hold,
        checksum,
        headers: crate::attrs::headers(
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.expires.as_ref(),
        ),
        tags: crate::attrs::parse_tagging_header(input.tagging.as_deref())?,
    };
    let id = uuid::Uuid::now_v7().simple().to_string();
    let mut metadata: Vec<(String, String)> =
        input.metadata.unwrap_or_default().into_iter().collect();
    metadata.sort();
    this.store
        .create_upload(&nimbus_store::UploadRow {
            id: id.clone(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            content_type: input.content_type,
            metadata,
            attrs,
        })
        .await
        .map_err(write_err)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(id),
        checksum_algorithm: input.checksum_algorithm,
        checksum_type: input.checksum_type,
        ..Default::default()
    }))
}

pub(crate) async fn upload_part(
    this: &Objects,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let input = req.input;
    let upload = this
        .upload_of(&input.upload_id, &input.bucket, &input.key)
        .await?;
    if !(1..=10_000).contains(&input.part_number) {
        return Err(s3_error!(InvalidArgument, "part numbers are 1 to 10000"));
    }
    let asked = Asked::of(
        &req.headers,
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
    )?
    .with_default(declared_algorithm(&upload)?)?;
    let Some(body) = input.body else {
        return Err(s3_error!(IncompleteBody));
    };
    let (etag, sum) = store_part(
        this,
        &upload.id,
        input.part_number,
        body,
        &asked,
        req.trailing_headers.as_ref(),
    )
    .await?;
    let mut out = UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        ..Default::default()
    };
    checksum::fill!(out, part_checksum(&asked, sum).as_ref());
    Ok(S3Response::new(out))
}

/// UploadPartCopy: a part copied from an object (or a byte range of it,
/// `x-amz-copy-source-range: bytes=FIRST-LAST`), under the same source
/// rules as CopyObject.
pub(crate) async fn upload_part_copy(
    this: &Objects,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let upload = this
        .upload_of(&input.upload_id, &input.bucket, &input.key)
        .await?;
    if !(1..=10_000).contains(&input.part_number) {
        return Err(s3_error!(InvalidArgument, "part numbers are 1 to 10000"));
    }
    let conditions = crate::mapping::Conditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    };
    let src =
        crate::object::copy_source(this, &req.extensions, &input.copy_source, &conditions).await?;
    let (start, len) = match &input.copy_source_range {
        None => (0, src.size),
        Some(r) => copy_range(r, src.size)?,
    };
    let file = this
        .blobs
        .open_range(&src.file, start)
        .await
        .map_err(internal)?;
    let body = tokio_util::io::ReaderStream::with_capacity(
        tokio::io::AsyncReadExt::take(file, len),
        256 * 1024,
    );
    let asked = Asked::default().with_default(declared_algorithm(&upload)?)?;
    let (etag, sum) = store_part(this, &upload.id, input.part_number, body, &asked, None).await?;
    let version = match &input.copy_source {
        CopySource::Bucket { version_id, .. } => version_id.clone(),
        _ => None,
    };
    let mut result = CopyPartResult {
        e_tag: Some(ETag::Strong(etag)),
        last_modified: Some(crate::mapping::timestamp(nimbus_store::now_us())),
        ..Default::default()
    };
    checksum::fill!(result, part_checksum(&asked, sum).as_ref());
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(result),
        copy_source_version_id: version.map(|v| v.to_string()),
        ..Default::default()
    }))
}

/// The start and length of an `x-amz-copy-source-range` (`bytes=F-L`,
/// both given, inside an object of `size` bytes).
fn copy_range(range: &str, size: u64) -> S3Result<(u64, u64)> {
    let bounds = range.strip_prefix("bytes=").and_then(|r| {
        let (f, l) = r.split_once('-')?;
        Some((f.trim().parse::<u64>().ok()?, l.trim().parse::<u64>().ok()?))
    });
    match bounds {
        Some((first, last)) if first <= last && last < size => Ok((first, last - first + 1)),
        _ => Err(s3_error!(
            InvalidRange,
            "x-amz-copy-source-range {range:?} is not bytes=FIRST-LAST within the source's {size} bytes"
        )),
    }
}

/// The algorithm an upload checks its parts with, if it declared one.
fn declared_algorithm(upload: &nimbus_store::UploadRow) -> S3Result<Option<checksum::Algorithm>> {
    upload
        .attrs
        .checksum
        .as_ref()
        .map(|c| checksum::Algorithm::named(&c.algorithm))
        .transpose()
}

/// A part's checksum, as answered.
fn part_checksum(asked: &Asked, value: Option<String>) -> Option<nimbus_store::ObjectChecksum> {
    checksum::kept(asked.algorithm, value)
}

/// Streams a part's body to a file (held to the object size limit),
/// summing it as `asked` says and checking the sum, and records it,
/// replacing a part with the same number (whose file goes); its ETag and
/// checksum. If checking or recording fails, the new file goes.
async fn store_part<S, E>(
    this: &Objects,
    upload: &str,
    part_number: i32,
    body: S,
    asked: &Asked,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<(String, Option<String>)>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let sum = checksum::Summing::new(asked.algorithm);
    let stored = this
        .blobs
        .put_stream(this.max_object_bytes, sum.wrap(body))
        .await
        .map_err(body_error)?;
    let computed = sum.value();
    if let Err(e) = checksum::verify(asked, computed.as_deref(), trailers) {
        this.blobs.delete(&stored.file).await;
        return Err(e);
    }
    let part = nimbus_store::PartRow {
        part_number: i64::from(part_number),
        file: stored.file.clone(),
        size: stored.size,
        etag: stored.md5.clone(),
        checksum: computed.clone(),
    };
    match this.store.put_part(upload, &part).await {
        Ok(Some(old)) => this.blobs.delete(&old).await,
        Ok(None) => {}
        Err(e) => {
            this.blobs.delete(&stored.file).await;
            return Err(write_err(e));
        }
    }
    Ok((stored.md5, computed))
}

pub(crate) async fn list_parts(
    this: &Objects,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let upload = this
        .upload_of(&input.upload_id, &input.bucket, &input.key)
        .await?;
    let marker = i64::from(input.part_number_marker.unwrap_or(0));
    let max = input.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
    let all: Vec<_> = this
        .store
        .parts(&upload.id)
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|p| p.part_number > marker)
        .collect();
    let truncated = all.len() > max;
    let algorithm = declared_algorithm(&upload)?;
    let parts: Vec<Part> = all
        .iter()
        .take(max)
        .map(|p| {
            let mut part = Part {
                part_number: Some(p.part_number as i32),
                size: Some(p.size as i64),
                e_tag: Some(ETag::Strong(p.etag.clone())),
                ..Default::default()
            };
            checksum::fill!(part, checksum::kept(algorithm, p.checksum.clone()).as_ref());
            part
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

pub(crate) async fn complete(
    this: &Objects,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let upload = this
        .upload_of(&input.upload_id, &input.bucket, &input.key)
        .await?;
    // Every refusal comes before the parts are joined: a refusal after it
    // would leave a whole object's file that no row points at.
    let asked_whole = Asked::of(&req.headers, None)?;
    // The bucket may have blocked public ACLs since the upload began.
    crate::acl::check_may_publish(this, &upload.bucket, upload.attrs.public).await?;
    let stored_parts = this.store.parts(&upload.id).await.map_err(internal)?;
    let asked = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    let plan = assemble(&asked, &stored_parts, this.max_object_bytes)?;
    let mut attrs = upload.attrs.clone();
    let algorithm = declared_algorithm(&upload)?;
    let full_object = upload
        .attrs
        .checksum
        .as_ref()
        .is_some_and(|c| c.full_object);
    // A FULL_OBJECT checksum is summed as the parts are joined.
    let sum = checksum::Summing::new(algorithm.filter(|_| full_object));
    let mut files = Vec::with_capacity(plan.files.len());
    for f in &plan.files {
        files.push(this.blobs.open_range(f, 0).await.map_err(internal)?);
    }
    let parts = futures::StreamExt::flat_map(futures::stream::iter(files), |f| {
        tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)
    });
    let joined = this
        .blobs
        .put_stream(u64::MAX, sum.wrap(Box::pin(parts)))
        .await
        .map_err(internal)?;
    attrs.checksum = match algorithm {
        None => None,
        Some(a) if full_object => {
            let whole = sum.value();
            if let Err(e) = checksum::verify(&asked_whole, whole.as_deref(), None) {
                this.blobs.delete(&joined.file).await;
                return Err(e);
            }
            checksum::kept(Some(a), whole)
        }
        Some(a) => match checksum::composite(a, &plan.checksums) {
            Some(value) => Some(nimbus_store::ObjectChecksum {
                algorithm: a.name().to_string(),
                value,
                full_object: false,
            }),
            None => {
                this.blobs.delete(&joined.file).await;
                return Err(s3_error!(
                    InvalidPart,
                    "a part has no {} checksum: upload it again",
                    a.name()
                ));
            }
        },
    };
    let kept = attrs.checksum.clone();
    let etag = plan.etag;
    let row = ObjectRow {
        bucket: upload.bucket.clone(),
        key: upload.key.clone(),
        file: joined.file.clone(),
        size: joined.size,
        etag: etag.clone(),
        content_type: upload.content_type.clone(),
        metadata: upload.metadata.clone(),
        last_modified_us: nimbus_store::now_us(),
        version_id: String::new(),
        attrs,
    };
    let version_id = this
        .commit(&req.extensions, row, &joined.file, Some(&upload.id))
        .await?;
    let mut out = CompleteMultipartUploadOutput {
        bucket: Some(upload.bucket),
        key: Some(upload.key),
        e_tag: Some(ETag::Strong(etag)),
        version_id,
        ..Default::default()
    };
    out.checksum_type = checksum::fill!(out, kept.as_ref());
    Ok(S3Response::new(out))
}

pub(crate) async fn abort(
    this: &Objects,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    let upload = this
        .upload_of(&input.upload_id, &input.bucket, &input.key)
        .await?;
    for f in this
        .store
        .delete_upload(&upload.id)
        .await
        .map_err(internal)?
    {
        this.blobs.delete(&f).await;
    }
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

/// What completing an upload assembles: the parts' files in order, and
/// the object's ETag (the MD5 of the parts' MD5s, then `-` and the count,
/// as S3 makes it).
#[derive(Debug, PartialEq)]
struct Assembly {
    files: Vec<String>,
    etag: String,
    /// The parts' checksums, in order.
    checksums: Vec<Option<String>>,
}

/// `ListMultipartUploads`: the uploads in progress, in (key, upload id)
/// order, with S3's prefix, delimiter (common prefixes), key and upload-id
/// markers and `max-uploads` (1 to 1000).
pub(crate) async fn list_uploads(
    this: &Objects,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let owner = crate::listing::owner_of(&req.extensions)?;
    let input = req.input;
    let enc = crate::mapping::KeyEncoding::of(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    // Where the page starts: after the key marker (past every key of it,
    // if it is a common prefix), or, with an upload-id marker, after that
    // upload of the marker's key.
    let mut start = match &input.key_marker {
        Some(k) => crate::listing::v1_start(k, &prefix, delimiter.as_deref()),
        None => nimbus_store::ListFrom::After(String::new()),
    };
    let mut after_id = input
        .upload_id_marker
        .clone()
        .filter(|_| input.key_marker.is_some());
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut next: Option<(String, String)> = None;
    // Rows read for this request: as for object listings, a page may end
    // early (truncated, with markers) so that no request scans without
    // bound.
    let mut scanned = 0usize;
    'pages: loop {
        let want = (max - uploads.len() - prefixes.len() + 1).min(crate::listing::LIST_BATCH);
        let page = this
            .store
            .list_uploads(
                &input.bucket,
                &prefix,
                &start,
                after_id.as_deref(),
                want as u32,
            )
            .await
            .map_err(internal)?;
        let full = page.len() == want;
        scanned += page.len();
        for (u, created_us) in page {
            if uploads.len() + prefixes.len() >= max {
                truncated = true;
                break 'pages;
            }
            if let Some(common) =
                crate::listing::common_prefix(&u.key, &prefix, delimiter.as_deref())
            {
                next = Some((common.clone(), String::new()));
                prefixes.push(common.clone());
                after_id = None;
                match nimbus_store::prefix_end(&common) {
                    Some(end) => start = nimbus_store::ListFrom::At(end),
                    None => break 'pages,
                }
                if scanned >= crate::listing::LIST_SCAN_LIMIT {
                    truncated = true;
                    break 'pages;
                }
                continue 'pages;
            }
            next = Some((u.key.clone(), u.id.clone()));
            start = nimbus_store::ListFrom::After(u.key.clone());
            after_id = Some(u.id.clone());
            uploads.push(MultipartUpload {
                key: Some(enc.key(u.key)),
                upload_id: Some(u.id),
                initiated: Some(crate::mapping::timestamp(created_us)),
                owner: Some(owner.clone()),
                initiator: Some(Initiator {
                    display_name: owner.display_name.clone(),
                    id: owner.id.clone(),
                }),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            });
        }
        if !full {
            break;
        }
        if scanned >= crate::listing::LIST_SCAN_LIMIT {
            truncated = true;
            break;
        }
    }
    let (next_key, next_id) = match next.filter(|_| truncated) {
        Some((k, id)) => (Some(k), (!id.is_empty()).then_some(id)),
        None => (None, None),
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: enc.opt(input.prefix),
        delimiter: enc.opt(input.delimiter),
        key_marker: enc.opt(input.key_marker),
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: enc.opt(next_key),
        next_upload_id_marker: next_id,
        encoding_type: input.encoding_type,
        uploads: Some(uploads),
        common_prefixes: Some(
            prefixes
                .into_iter()
                .map(|p| CommonPrefix {
                    prefix: Some(enc.key(p)),
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

/// Checks the parts a completion names against those uploaded: named in
/// increasing order, each uploaded (with the ETag given, if one is), and
/// adding up to at most `max_bytes`.
fn assemble(asked: &[CompletedPart], stored: &[PartRow], max_bytes: u64) -> S3Result<Assembly> {
    if asked.is_empty() {
        return Err(s3_error!(MalformedXML, "name the parts to assemble"));
    }
    let mut files = Vec::with_capacity(asked.len());
    let mut checksums = Vec::with_capacity(asked.len());
    let mut md5s = Vec::with_capacity(asked.len() * 16);
    let mut last = 0;
    let mut total = 0u64;
    for p in asked {
        let n = i64::from(p.part_number.unwrap_or(0));
        if n <= last {
            return Err(s3_error!(InvalidPartOrder));
        }
        last = n;
        let Some(part) = stored.iter().find(|s| s.part_number == n) else {
            return Err(s3_error!(InvalidPart, "part {n} was not uploaded"));
        };
        if let Some(tag) = &p.e_tag
            && tag.value() != part.etag
        {
            return Err(s3_error!(
                InvalidPart,
                "part {n} has ETag {}, not {}",
                part.etag,
                tag.value()
            ));
        }
        if let Some(sum) = checksum::of_part(p)
            && part.checksum.as_deref() != Some(sum.as_str())
        {
            return Err(s3_error!(
                InvalidPart,
                "part {n}'s checksum is not the {sum} the completion names"
            ));
        }
        files.push(part.file.clone());
        checksums.push(part.checksum.clone());
        md5s.extend(hex_decode(&part.etag));
        total = total.saturating_add(part.size);
    }
    if total > max_bytes {
        return Err(s3_error!(
            EntityTooLarge,
            "the parts add up to {total} bytes, over this server's object limit of {max_bytes} bytes (nimbus up --max-object-mb): complete the upload with fewer parts, or abort it"
        ));
    }
    Ok(Assembly {
        etag: format!("{}-{}", md5_hex(&md5s), asked.len()),
        files,
        checksums,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_as_s3_reads_them() {
        assert_eq!(copy_range("bytes=0-9", 10).unwrap(), (0, 10));
        assert_eq!(copy_range("bytes=3-3", 10).unwrap(), (3, 1));
        for bad in [
            "bytes=0-10",
            "bytes=5-4",
            "bytes=-3",
            "bytes=3-",
            "0-1",
            "bytes=a-b",
        ] {
            let e = copy_range(bad, 10).unwrap_err();
            assert_eq!(e.code().as_str(), "InvalidRange", "{bad}");
        }
    }

    fn stored(n: i64, etag: &str, size: u64) -> PartRow {
        PartRow {
            part_number: n,
            file: format!("f{n}"),
            size,
            etag: etag.into(),
            checksum: None,
        }
    }

    fn asked(n: i32, etag: Option<&str>) -> CompletedPart {
        CompletedPart {
            part_number: Some(n),
            e_tag: etag.map(|e| ETag::Strong(e.into())),
            ..Default::default()
        }
    }

    fn code(r: S3Result<Assembly>) -> String {
        r.unwrap_err().code().as_str().to_string()
    }

    #[test]
    fn parts_assemble_in_order_with_s3s_etag() {
        let a = "0cc175b9c0f1b6a831c399e269772661"; // md5("a")
        let b = "92eb5ffee6ae2fec3ad71c777531578f"; // md5("b")
        let parts = [stored(1, a, 1), stored(2, b, 1), stored(3, a, 1)];
        let got = assemble(&[asked(1, Some(a)), asked(3, None)], &parts, 10).unwrap();
        assert_eq!(got.files, ["f1", "f3"]);
        // md5 of the two binary digests, then the count (as S3 and
        // aws-cli compute a multipart ETag).
        let mut both = hex_decode(a);
        both.extend(hex_decode(a));
        assert_eq!(got.etag, format!("{}-2", md5_hex(&both)));
        assert_eq!(hex_decode(a).len(), 16);
    }

    #[test]
    fn completions_that_s3_refuses() {
        let a = "0cc175b9c0f1b6a831c399e269772661";
        let parts = [stored(1, a, 6), stored(2, a, 6)];
        assert_eq!(code(assemble(&[], &parts, 100)), "MalformedXML");
        let backwards = [asked(2, None), asked(1, None)];
        assert_eq!(code(assemble(&backwards, &parts, 100)), "InvalidPartOrder");
        let twice = [asked(1, None), asked(1, None)];
        assert_eq!(code(assemble(&twice, &parts, 100)), "InvalidPartOrder");
        assert_eq!(
            code(assemble(&[asked(3, None)], &parts, 100)),
            "InvalidPart"
        );
        let wrong_tag = [asked(1, Some("00000000000000000000000000000000"))];
        assert_eq!(code(assemble(&wrong_tag, &parts, 100)), "InvalidPart");
        // The whole is held to the object limit, not each part.
        let both = [asked(1, None), asked(2, None)];
        assert!(assemble(&both, &parts, 12).is_ok());
        let e = assemble(&both, &parts, 11).unwrap_err();
        assert_eq!(e.code().as_str(), "EntityTooLarge");
        assert!(e.message().unwrap().contains("12 bytes"), "{e:?}");
    }
}
