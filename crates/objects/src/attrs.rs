//! What an object carries besides its body, media type and user metadata
//! (`nimbus_store::ObjectAttrs`): the standard headers S3 keeps and
//! answers (`Cache-Control`, `Content-Disposition`, `Content-Encoding`,
//! `Content-Language`, `Expires`) and its tags, with S3's limits on them.

use nimbus_store::{ObjectAttrs, Tags};
use s3s::dto::{Tag, Tagging, Timestamp, TimestampFormat};
use s3s::{S3Result, s3_error};

/// The standard headers of a write, as S3 keeps them. `aws-chunked`, the
/// upload's own transfer coding, is not the object's: it is left out of
/// `Content-Encoding`, as S3 leaves it.
pub(crate) fn headers(
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<&Timestamp>,
) -> Vec<(String, String)> {
    let encoding = content_encoding.map(|e| {
        e.split(',')
            .map(str::trim)
            .filter(|c| !c.eq_ignore_ascii_case("aws-chunked") && !c.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    });
    let expires = expires.and_then(|t| {
        let mut out = Vec::new();
        t.format(TimestampFormat::HttpDate, &mut out).ok()?;
        String::from_utf8(out).ok()
    });
    [
        ("cache-control", cache_control),
        ("content-disposition", content_disposition),
        ("content-encoding", encoding),
        ("content-language", content_language),
        ("expires", expires),
    ]
    .into_iter()
    .filter_map(|(n, v)| Some((n.to_string(), v.filter(|v| !v.is_empty())?)))
    .collect()
}

/// A kept header's value.
pub(crate) fn header(a: &ObjectAttrs, name: &str) -> Option<String> {
    a.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// The kept `Expires`, as a timestamp.
pub(crate) fn expires(a: &ObjectAttrs) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, &header(a, "expires")?).ok()
}

/// At most this many tags on an object, and on a bucket (S3's limits).
pub(crate) const MAX_OBJECT_TAGS: usize = 10;
pub(crate) const MAX_BUCKET_TAGS: usize = 50;

/// Checks a tag set against S3's rules: at most `max` tags, keys of 1-128
/// characters and values of at most 256, each key once, none starting
/// with the reserved `aws:`.
pub(crate) fn check_tags(tags: Tags, max: usize) -> S3Result<Tags> {
    if tags.len() > max {
        return Err(s3_error!(
            InvalidTag,
            "{} tags given; at most {max} are allowed here",
            tags.len()
        ));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        let klen = k.chars().count();
        if klen == 0 || klen > 128 {
            return Err(s3_error!(
                InvalidTag,
                "tag key {k:?} is {klen} characters: keys are 1-128"
            ));
        }
        if v.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "the value of tag {k:?} is over 256 characters"
            ));
        }
        if k.starts_with("aws:") {
            return Err(s3_error!(
                InvalidTag,
                "tag key {k:?}: keys starting with aws: are reserved"
            ));
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(s3_error!(InvalidTag, "tag key {k:?} is given twice"));
        }
    }
    Ok(tags)
}

/// The tags of an `x-amz-tagging` header (a URL query: `k1=v1&k2=v2`).
pub(crate) fn parse_tagging_header(h: Option<&str>) -> S3Result<Tags> {
    let tags = form_urlencoded::parse(h.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    check_tags(tags, MAX_OBJECT_TAGS)
}

/// A `Tagging` body's tags (a tag without a key is an empty key, refused).
pub(crate) fn tags_of(t: Tagging, max: usize) -> S3Result<Tags> {
    let tags = t
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    check_tags(tags, max)
}

/// Tags as S3 writes them.
pub(crate) fn tag_set(tags: Tags) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag {
            key: Some(k),
            value: Some(v),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_headers_leave_out_the_transfer_coding() {
        let h = headers(
            Some("no-cache".into()),
            None,
            Some("aws-chunked, gzip".into()),
            Some(String::new()),
            None,
        );
        assert_eq!(
            h,
            [
                ("cache-control".to_string(), "no-cache".to_string()),
                ("content-encoding".into(), "gzip".into())
            ]
        );
        let only_chunked = headers(None, None, Some("aws-chunked".into()), None, None);
        assert!(only_chunked.is_empty());
        let t =
            Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let a = ObjectAttrs {
            headers: headers(None, None, None, None, Some(&t)),
            ..Default::default()
        };
        assert_eq!(
            header(&a, "expires").unwrap(),
            "Wed, 21 Oct 2015 07:28:00 GMT"
        );
        assert_eq!(expires(&a), Some(t));
    }

    #[test]
    fn tags_follow_s3s_limits() {
        let t = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            parse_tagging_header(Some("a=1&b=two%20words")).unwrap(),
            [t("a", "1"), t("b", "two words")]
        );
        assert!(parse_tagging_header(None).unwrap().is_empty());
        let eleven: Tags = (0..11).map(|i| t(&format!("k{i}"), "v")).collect();
        for bad in [
            check_tags(eleven.clone(), MAX_OBJECT_TAGS),
            check_tags(vec![t("", "v")], 10),
            check_tags(vec![t(&"k".repeat(129), "v")], 10),
            check_tags(vec![t("k", &"v".repeat(257))], 10),
            check_tags(vec![t("aws:x", "v")], 10),
            check_tags(vec![t("k", "1"), t("k", "2")], 10),
        ] {
            assert_eq!(bad.unwrap_err().code().as_str(), "InvalidTag");
        }
        assert!(check_tags(eleven, MAX_BUCKET_TAGS).is_ok());
        assert!(check_tags(vec![t(&"k".repeat(128), &"v".repeat(256))], 10).is_ok());
    }
}
