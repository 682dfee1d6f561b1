"""S3's exact behaviour through boto3: keys in listings (URL encoding,
which boto3 asks for and decodes by default), owners, MaxKeys=0, the
default media type, time conditions on reads and copy-source conditions,
kept standard headers, object and bucket tags.
Run by boto3_suite.py."""
import datetime
import http.client
import urllib.parse


def run(s3, other, refused):
    b = "details"
    s3.create_bucket(Bucket=b)
    keys = ["asdf+b", "foo+1/bar", "quux ab/thud", "%2e%2e/x", "plain"]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=b"1")
    # boto3 asks for EncodingType=url and decodes: the keys come back as
    # written, '+' and '%' included.
    assert [c["Key"] for c in s3.list_objects_v2(Bucket=b)["Contents"]] == sorted(keys)
    assert [c["Key"] for c in s3.list_objects(Bucket=b)["Contents"]] == sorted(keys)
    assert sorted(v["Key"] for v in s3.list_object_versions(Bucket=b)["Versions"]) == sorted(keys)
    up = s3.create_multipart_upload(Bucket=b, Key="up load+1")
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=b)["Uploads"]] == ["up load+1"]
    s3.abort_multipart_upload(Bucket=b, Key="up load+1", UploadId=up["UploadId"])
    # Asked for by the caller, the encoding is left in place.
    raw = s3.list_objects_v2(Bucket=b, EncodingType="url", Delimiter="/")
    assert raw["EncodingType"] == "url", raw
    assert [c["Key"] for c in raw["Contents"]] == ["asdf%2Bb", "plain"], raw
    assert [p["Prefix"] for p in raw["CommonPrefixes"]] == ["%252e%252e/", "foo%2B1/", "quux%20ab/"], raw
    raw = s3.list_objects(Bucket=b, EncodingType="url", Prefix="quux ab/")
    assert raw["Prefix"] == "quux%20ab/" and raw["Contents"][0]["Key"] == "quux%20ab/thud", raw
    print("listing encoding ok")

    # Owners: always in v1, in v2 when asked for.
    assert "Owner" not in s3.list_objects_v2(Bucket=b)["Contents"][0]
    assert s3.list_objects_v2(Bucket=b, FetchOwner=True)["Contents"][0]["Owner"]["ID"]
    assert s3.list_objects(Bucket=b)["Contents"][0]["Owner"]["ID"]
    # MaxKeys=0 lists nothing and is not truncated.
    for z in [s3.list_objects_v2(Bucket=b, MaxKeys=0), s3.list_objects(Bucket=b, MaxKeys=0),
              s3.list_object_versions(Bucket=b, MaxKeys=0)]:
        assert not z["IsTruncated"] and "Contents" not in z and "Versions" not in z, z
    assert s3.list_objects_v2(Bucket=b, MaxKeys=0)["KeyCount"] == 0
    print("listing owners and max-keys ok")

    # An object stored without a media type is answered as S3 answers it
    # (a presigned PUT through http.client sends no Content-Type at all).
    url = urllib.parse.urlparse(s3.generate_presigned_url(
        "put_object", Params={"Bucket": b, "Key": "untyped"}, ExpiresIn=60))
    conn = http.client.HTTPConnection(url.netloc)
    conn.request("PUT", url.path + "?" + url.query, body=b"no type")
    assert conn.getresponse().status == 200
    assert s3.head_object(Bucket=b, Key="untyped")["ContentType"] == "binary/octet-stream"

    # Time conditions, at whole seconds as HTTP dates are.
    h = s3.head_object(Bucket=b, Key="plain")
    lm, etag = h["LastModified"], h["ETag"]
    day = datetime.timedelta(days=1)
    refused("304", lambda: s3.head_object(Bucket=b, Key="plain", IfModifiedSince=lm))
    assert s3.get_object(Bucket=b, Key="plain", IfModifiedSince=lm - day)["Body"].read() == b"1"
    refused("PreconditionFailed", lambda: s3.get_object(Bucket=b, Key="plain", IfUnmodifiedSince=lm - day))
    assert s3.get_object(Bucket=b, Key="plain", IfUnmodifiedSince=lm)["Body"].read() == b"1"
    # If-Match wins over If-Unmodified-Since; a failed If-None-Match over
    # If-Modified-Since.
    s3.head_object(Bucket=b, Key="plain", IfMatch=etag, IfUnmodifiedSince=lm - day)
    s3.head_object(Bucket=b, Key="plain", IfNoneMatch='"other"', IfModifiedSince=lm)
    print("read conditions ok")

    src = {"Bucket": b, "Key": "plain"}
    for kw in [{"CopySourceIfNoneMatch": etag}, {"CopySourceIfMatch": '"nope"'},
               {"CopySourceIfModifiedSince": lm + day}, {"CopySourceIfUnmodifiedSince": lm - day}]:
        refused("PreconditionFailed", lambda: s3.copy_object(Bucket=b, Key="copy", CopySource=src, **kw))
    s3.copy_object(Bucket=b, Key="copy", CopySource=src, CopySourceIfMatch=etag,
                   CopySourceIfModifiedSince=lm - day)
    assert s3.get_object(Bucket=b, Key="copy")["Body"].read() == b"1"
    print("copy conditions ok")

    # Standard headers are kept; response-* overrides win on a GET.
    exp = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    s3.put_object(Bucket=b, Key="kept", Body=b"k", CacheControl="max-age=60",
                  ContentDisposition='attachment; filename="k.txt"', ContentEncoding="identity",
                  ContentLanguage="de", Expires=exp, Tagging="team=web&tier=gold")
    for r in [s3.head_object(Bucket=b, Key="kept"), s3.get_object(Bucket=b, Key="kept")]:
        assert r["CacheControl"] == "max-age=60" and r["ContentLanguage"] == "de", r
        assert r["ContentDisposition"] == 'attachment; filename="k.txt"', r
        assert r["ContentEncoding"] == "identity" and r["Expires"] == exp, r
    assert s3.get_object(Bucket=b, Key="kept")["TagCount"] == 2
    o = s3.get_object(Bucket=b, Key="kept", ResponseCacheControl="no-store", ResponseContentType="text/x-k")
    assert o["CacheControl"] == "no-store" and o["ContentType"] == "text/x-k", o
    # Copied with the object (COPY), or taken from the request (REPLACE).
    s3.copy_object(Bucket=b, Key="kept2", CopySource={"Bucket": b, "Key": "kept"})
    assert s3.head_object(Bucket=b, Key="kept2")["CacheControl"] == "max-age=60"
    s3.copy_object(Bucket=b, Key="kept3", CopySource={"Bucket": b, "Key": "kept"},
                   MetadataDirective="REPLACE", CacheControl="no-cache",
                   TaggingDirective="REPLACE", Tagging="only=one")
    assert s3.head_object(Bucket=b, Key="kept3")["CacheControl"] == "no-cache"
    assert s3.get_object_tagging(Bucket=b, Key="kept3")["TagSet"] == [{"Key": "only", "Value": "one"}]
    print("kept headers ok")

    # Object tags: set, read, replaced, deleted; S3's limits.
    tags = lambda k: s3.get_object_tagging(Bucket=b, Key=k)["TagSet"]
    assert tags("kept") == [{"Key": "team", "Value": "web"}, {"Key": "tier", "Value": "gold"}]
    assert tags("kept2") == tags("kept"), "tags are copied"
    s3.put_object_tagging(Bucket=b, Key="kept", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    assert tags("kept") == [{"Key": "a", "Value": "1"}]
    s3.delete_object_tagging(Bucket=b, Key="kept")
    assert tags("kept") == []
    eleven = {"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}
    refused("InvalidTag", lambda: s3.put_object_tagging(Bucket=b, Key="kept", Tagging=eleven))
    refused("InvalidTag", lambda: s3.put_object_tagging(
        Bucket=b, Key="kept", Tagging={"TagSet": [{"Key": "k" * 129, "Value": "v"}]}))
    refused("InvalidTag", lambda: s3.put_object(Bucket=b, Key="t", Body=b"", Tagging="aws:x=1"))
    refused("NoSuchKey", lambda: s3.get_object_tagging(Bucket=b, Key="missing"))
    refused("AccessDenied", lambda: other.get_object_tagging(Bucket=b, Key="kept"))
    refused("AccessDenied", lambda: other.put_object_tagging(Bucket=b, Key="kept", Tagging={"TagSet": []}))
    # Bucket tags.
    refused("NoSuchTagSet", lambda: s3.get_bucket_tagging(Bucket=b))
    s3.put_bucket_tagging(Bucket=b, Tagging={"TagSet": [{"Key": "cost", "Value": "7"}]})
    assert s3.get_bucket_tagging(Bucket=b)["TagSet"] == [{"Key": "cost", "Value": "7"}]
    refused("AccessDenied", lambda: other.get_bucket_tagging(Bucket=b))
    s3.delete_bucket_tagging(Bucket=b)
    refused("NoSuchTagSet", lambda: s3.get_bucket_tagging(Bucket=b))
    print("tagging ok")

    # UploadPartCopy: parts copied from objects, whole or by range.
    s3.put_object(Bucket=b, Key="src", Body=b"a" * (5 << 20) + b"tail")
    up = s3.create_multipart_upload(Bucket=b, Key="assembled")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=b, Key="assembled", UploadId=up, PartNumber=1,
                             CopySource={"Bucket": b, "Key": "src"}, CopySourceRange="bytes=0-5242879")
    p2 = s3.upload_part_copy(Bucket=b, Key="assembled", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": b, "Key": "src"})
    refused("InvalidRange", lambda: s3.upload_part_copy(
        Bucket=b, Key="assembled", UploadId=up, PartNumber=3,
        CopySource={"Bucket": b, "Key": "src"}, CopySourceRange="bytes=0-99999999"))
    refused("PreconditionFailed", lambda: s3.upload_part_copy(
        Bucket=b, Key="assembled", UploadId=up, PartNumber=3,
        CopySource={"Bucket": b, "Key": "src"}, CopySourceIfMatch='"nope"'))
    s3.complete_multipart_upload(Bucket=b, Key="assembled", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    body = s3.get_object(Bucket=b, Key="assembled")["Body"].read()
    assert body == b"a" * (5 << 20) + b"a" * (5 << 20) + b"tail", len(body)
    # Another app's object is no source.
    theirs = other.list_buckets()["Buckets"][0]["Name"]
    other.put_object(Bucket=theirs, Key="secret", Body=b"s")
    up = s3.create_multipart_upload(Bucket=b, Key="stolen")["UploadId"]
    refused("AccessDenied", lambda: s3.upload_part_copy(
        Bucket=b, Key="stolen", UploadId=up, PartNumber=1, CopySource={"Bucket": theirs, "Key": "secret"}))
    s3.abort_multipart_upload(Bucket=b, Key="stolen", UploadId=up)
    other.delete_object(Bucket=theirs, Key="secret")
    print("upload part copy ok")

    for k in keys + ["untyped", "copy", "kept", "kept2", "kept3", "src", "assembled"]:
        s3.delete_object(Bucket=b, Key=k)
    s3.delete_bucket(Bucket=b)
