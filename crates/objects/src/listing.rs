//! Listings, v1 and v2 with opaque continuation tokens, and the listing
//! of versions with S3's key and version-id markers.
//!
//! A listing ends whatever the keys are: each read is bounded above by
//! `nimbus_store::prefix_end(prefix)` (the least string past every
//! extension of the prefix, U+10FFFF included), every page moves forward,
//! and one request reads at most `LIST_SCAN_LIMIT` rows (past them, the
//! page ends truncated, with a token).

use crate::Objects;
use crate::auth::app_of;
use crate::mapping::{KeyEncoding, internal, timestamp};
use nimbus_store::{ListFrom, VersionFrom};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

pub(crate) async fn list_v1(
    this: &Objects,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let owner = lister_owner(&req.extensions)?;
    let input = req.input;
    crate::acl::check_list(this, &req.extensions, &input.bucket).await?;
    let enc = KeyEncoding::of(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let start = match &input.marker {
        Some(m) => v1_start(m, &prefix, delimiter.as_deref()),
        None => ListFrom::After(String::new()),
    };
    let max = max_keys(input.max_keys);
    let walk = walk(
        this,
        &input.bucket,
        &prefix,
        delimiter.as_deref(),
        start,
        max,
    )
    .await?;
    // The next marker: the last key or common prefix of this page.
    let last_key = walk.contents.last().map(|o| o.key.clone());
    let last_prefix = walk.prefixes.last().cloned();
    let next_marker = if walk.truncated {
        last_key.max(last_prefix)
    } else {
        None
    };
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: enc.opt(input.prefix),
        delimiter: enc.opt(input.delimiter),
        max_keys: Some(max as i32),
        is_truncated: Some(walk.truncated),
        marker: enc.opt(input.marker),
        next_marker: enc.opt(next_marker),
        encoding_type: input.encoding_type,
        // ListObjects (v1) names every object's owner.
        contents: Some(walk.objects(enc, Some(&owner))),
        common_prefixes: Some(walk.common_prefixes(enc)),
        ..Default::default()
    }))
}

pub(crate) async fn list_v2(
    this: &Objects,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let owner = lister_owner(&req.extensions)?;
    let input = req.input;
    crate::acl::check_list(this, &req.extensions, &input.bucket).await?;
    let enc = KeyEncoding::of(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = max_keys(input.max_keys);
    // Where this page starts: after the client's `start-after`, or where
    // the continuation token says (a token that ends a page on a common
    // prefix starts past all its keys).
    let start = match &input.continuation_token {
        Some(t) => from_token(t)?,
        None => ListFrom::After(input.start_after.clone().unwrap_or_default()),
    };
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let walk = walk(
        this,
        &input.bucket,
        &prefix,
        delimiter.as_deref(),
        start,
        max,
    )
    .await?;
    let count = (walk.contents.len() + walk.prefixes.len()) as i32;
    let owner = (input.fetch_owner == Some(true)).then_some(&owner);
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: enc.opt(input.prefix),
        delimiter: enc.opt(input.delimiter),
        max_keys: Some(max as i32),
        key_count: Some(count),
        is_truncated: Some(walk.truncated),
        next_continuation_token: walk.truncated.then(|| token(&walk.next)),
        continuation_token: input.continuation_token,
        start_after: enc.opt(input.start_after),
        encoding_type: input.encoding_type,
        contents: Some(walk.objects(enc, owner)),
        common_prefixes: Some(walk.common_prefixes(enc)),
        ..Default::default()
    }))
}

/// `MaxKeys` as S3 reads it: 1,000 when absent, at most 1,000; 0 lists
/// nothing (and is not truncated).
fn max_keys(asked: Option<i32>) -> usize {
    asked.unwrap_or(1000).clamp(0, 1000) as usize
}

/// The owner listings name: the app (a bucket's only owner).
pub(crate) fn owner_of(ext: &http::Extensions) -> S3Result<Owner> {
    let app = app_of(ext)?;
    Ok(Owner {
        display_name: Some(app.clone()),
        id: Some(app),
    })
}

/// The owner the object listings name, which an unsigned reader of a
/// public bucket may list too.
fn lister_owner(ext: &http::Extensions) -> S3Result<Owner> {
    let app = match crate::acl::anonymous(ext) {
        Some(a) => a.owner.clone(),
        None => app_of(ext)?,
    };
    Ok(Owner {
        display_name: Some(app.clone()),
        id: Some(app),
    })
}

/// One page of an object listing, before it is written out.
struct Walk {
    contents: Vec<nimbus_store::ObjectRow>,
    prefixes: Vec<String>,
    truncated: bool,
    /// Where the next page starts.
    next: ListFrom,
}

impl Walk {
    fn objects(&self, enc: KeyEncoding, owner: Option<&Owner>) -> Vec<Object> {
        self.contents
            .iter()
            .map(|o| Object {
                key: Some(enc.key(o.key.clone())),
                size: Some(o.size as i64),
                e_tag: Some(ETag::Strong(o.etag.clone())),
                last_modified: Some(timestamp(o.last_modified_us)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                owner: owner.cloned(),
                ..Default::default()
            })
            .collect()
    }

    fn common_prefixes(&self, enc: KeyEncoding) -> Vec<CommonPrefix> {
        self.prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc.key(p.clone())),
            })
            .collect()
    }
}

/// Reads up to `max` keys and common prefixes of a bucket from `start`.
async fn walk(
    this: &Objects,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    mut start: ListFrom,
    max: usize,
) -> S3Result<Walk> {
    let mut contents = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    // Rows read for this request: a page may end early (truncated,
    // with a token) so that no request scans without bound.
    let mut scanned = 0usize;
    'pages: loop {
        if max == 0 {
            break;
        }
        let want = (max - contents.len() - prefixes.len() + 1).min(LIST_BATCH);
        let page = this
            .store
            .list_objects(bucket, prefix, &start, want as u32)
            .await
            .map_err(internal)?;
        let full = page.len() == want;
        scanned += page.len();
        for o in page {
            if contents.len() + prefixes.len() >= max {
                truncated = true;
                break 'pages;
            }
            if let Some(common) = common_prefix(&o.key, prefix, delimiter) {
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
            contents.push(o);
        }
        if !full {
            break;
        }
        if scanned >= LIST_SCAN_LIMIT {
            truncated = true;
            break;
        }
    }
    Ok(Walk {
        contents,
        prefixes,
        truncated,
        next: start,
    })
}

/// ListObjectVersions: every version and delete marker of the bucket's
/// keys, in key order and newest first within a key, with the same
/// prefix, delimiter and scan bound as the object listings. A page ends
/// on a version (`NextKeyMarker` and `NextVersionIdMarker`) or on a
/// common prefix (`NextKeyMarker` alone, which the next page skips past).
pub(crate) async fn list_versions(
    this: &Objects,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let owner = owner_of(&req.extensions)?;
    let input = req.input;
    let enc = KeyEncoding::of(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let max = max_keys(input.max_keys);
    let mut start = match (&input.key_marker, &input.version_id_marker) {
        (Some(key), Some(v)) if !key.is_empty() && !v.is_empty() => VersionFrom::Version {
            key: key.clone(),
            version_id: v.clone(),
        },
        (Some(key), _) => VersionFrom::Key(v1_start(key, &prefix, delimiter.as_deref())),
        (None, Some(v)) if !v.is_empty() => {
            return Err(s3_error!(
                InvalidArgument,
                "a version-id-marker needs the key-marker of its key"
            ));
        }
        (None, _) => VersionFrom::Key(ListFrom::After(String::new())),
    };
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    // The last entry listed: its key and, for a version, its id.
    let mut last: Option<(String, Option<String>)> = None;
    let mut truncated = false;
    let mut scanned = 0usize;
    let count = |v: &Vec<ObjectVersion>, m: &Vec<DeleteMarkerEntry>, p: &Vec<String>| {
        v.len() + m.len() + p.len()
    };
    'pages: loop {
        if max == 0 {
            break;
        }
        let want = (max - count(&versions, &markers, &prefixes) + 1).min(LIST_BATCH);
        let page = this
            .store
            .list_versions(&input.bucket, &prefix, &start, want as u32)
            .await
            .map_err(internal)?;
        let full = page.len() == want;
        scanned += page.len();
        for v in page {
            if count(&versions, &markers, &prefixes) >= max {
                truncated = true;
                break 'pages;
            }
            let o = v.object;
            if let Some(common) = common_prefix(&o.key, &prefix, delimiter.as_deref()) {
                prefixes.push(common.clone());
                last = Some((common.clone(), None));
                match nimbus_store::prefix_end(&common) {
                    Some(end) => start = VersionFrom::Key(ListFrom::At(end)),
                    None => break 'pages,
                }
                if scanned >= LIST_SCAN_LIMIT {
                    truncated = true;
                    break 'pages;
                }
                continue 'pages;
            }
            start = VersionFrom::Version {
                key: o.key.clone(),
                version_id: o.version_id.clone(),
            };
            last = Some((o.key.clone(), Some(o.version_id.clone())));
            if v.delete_marker {
                markers.push(DeleteMarkerEntry {
                    key: Some(enc.key(o.key)),
                    version_id: Some(o.version_id),
                    is_latest: Some(v.is_latest),
                    last_modified: Some(timestamp(o.last_modified_us)),
                    owner: Some(owner.clone()),
                });
            } else {
                versions.push(ObjectVersion {
                    key: Some(enc.key(o.key)),
                    version_id: Some(o.version_id),
                    is_latest: Some(v.is_latest),
                    last_modified: Some(timestamp(o.last_modified_us)),
                    e_tag: Some(ETag::Strong(o.etag)),
                    size: Some(o.size as i64),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    owner: Some(owner.clone()),
                    ..Default::default()
                });
            }
        }
        if !full {
            break;
        }
        if scanned >= LIST_SCAN_LIMIT {
            truncated = true;
            break;
        }
    }
    let (next_key, next_version) = match last.filter(|_| truncated) {
        Some((k, v)) => (Some(k), v),
        None => (None, None),
    };
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: enc.opt(input.prefix),
        delimiter: enc.opt(input.delimiter),
        key_marker: enc.opt(input.key_marker),
        version_id_marker: input.version_id_marker,
        max_keys: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: enc.opt(next_key),
        next_version_id_marker: next_version,
        encoding_type: input.encoding_type,
        versions: Some(versions),
        delete_markers: Some(markers),
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

/// Rows one listing read asks for at most.
pub(crate) const LIST_BATCH: usize = 1000;
/// Rows one listing request reads at most: past them, the page ends
/// (truncated, with a continuation token) however few keys it holds.
pub(crate) const LIST_SCAN_LIMIT: usize = 10_000;

/// The common prefix `key` rolls up into under `delimiter`: `prefix` and
/// what follows it up to and including the first delimiter, if any.
pub(crate) fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter?;
    let i = key.strip_prefix(prefix)?.find(d)?;
    Some(key[..prefix.len() + i + d.len()].to_string())
}

/// The opaque continuation token of a page that ends at `from`: `a` or
/// `f`, then the key.
fn token(from: &ListFrom) -> String {
    match from {
        ListFrom::After(k) => format!("a{k}"),
        ListFrom::At(k) => format!("f{k}"),
    }
}

/// Where a v1 listing page after `marker` starts: past every key of the
/// marker if it is a common prefix (as a page of this listing ends, so the
/// next page does not list that prefix's keys again), else after it.
pub(crate) fn v1_start(marker: &str, prefix: &str, delimiter: Option<&str>) -> ListFrom {
    let is_common = delimiter.is_some_and(|d| {
        marker
            .strip_prefix(prefix)
            .and_then(|rest| rest.find(d))
            .is_some_and(|j| prefix.len() + j + d.len() == marker.len())
    });
    match nimbus_store::prefix_end(marker).filter(|_| is_common) {
        Some(end) => ListFrom::At(end),
        None => ListFrom::After(marker.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn after(k: &str) -> ListFrom {
        ListFrom::After(k.into())
    }

    #[test]
    fn tokens_round_trip_and_strangers_are_refused() {
        for from in [
            after(""),
            after("a/b"),
            ListFrom::At("a0".into()),
            after("\u{10FFFF}x"),
        ] {
            assert_eq!(from_token(&token(&from)).unwrap(), from);
        }
        let e = from_token("zzz").unwrap_err();
        assert_eq!(e.code().as_str(), "InvalidArgument");
        assert!(e.message().unwrap().contains("without it"), "{e:?}");
    }

    #[test]
    fn a_v1_marker_on_a_common_prefix_skips_its_keys() {
        // "photos/" is a common prefix of prefix "" and delimiter "/": the
        // next page starts at "photos0", past every "photos/..." key.
        assert_eq!(
            v1_start("photos/", "", Some("/")),
            ListFrom::At("photos0".into())
        );
        assert_eq!(
            v1_start("a/b/", "a/", Some("/")),
            ListFrom::At("a/b0".into())
        );
        // A key, or no delimiter: after the marker itself.
        assert_eq!(
            v1_start("photos/x.jpg", "", Some("/")),
            after("photos/x.jpg")
        );
        assert_eq!(v1_start("photos/", "", None), after("photos/"));
        // Past a prefix ending in U+10FFFF: its last other character, raised.
        assert_eq!(
            v1_start("\u{10FFFF}/", "", Some("/")),
            ListFrom::At("\u{10FFFF}0".into())
        );
        assert_eq!(
            v1_start("a\u{10FFFF}", "", Some("\u{10FFFF}")),
            ListFrom::At("b".into())
        );
        // A prefix of U+10FFFF only has no end: after the marker.
        assert_eq!(
            v1_start("\u{10FFFF}", "", Some("\u{10FFFF}")),
            after("\u{10FFFF}")
        );
    }
}
