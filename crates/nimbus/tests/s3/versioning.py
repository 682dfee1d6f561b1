"""Versioning through boto3: states, versions and delete markers, reads,
copies and deletions by version id, ListObjectVersions and its markers,
multipart uploads into a versioned bucket, suspension, tenant isolation.
Run by boto3_suite.py."""


def run(s3, other, refused):
    b = "versioned"
    s3.create_bucket(Bucket=b)
    assert "Status" not in s3.get_bucket_versioning(Bucket=b)
    # Written before versioning: the null version.
    assert "VersionId" not in s3.put_object(Bucket=b, Key="k", Body=b"v0")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"v1")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"v2")["VersionId"]
    assert v1 != v2 and len(v1) == 32, (v1, v2)
    cur = s3.get_object(Bucket=b, Key="k")
    assert cur["Body"].read() == b"v2" and cur["VersionId"] == v2
    assert s3.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"v1"
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"v0"
    assert s3.head_object(Bucket=b, Key="k", VersionId=v1)["ContentLength"] == 2
    refused("NoSuchVersion", lambda: s3.get_object(Bucket=b, Key="k", VersionId="bogus"))
    l = s3.list_object_versions(Bucket=b)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in l["Versions"]] == \
        [("k", v2, True), ("k", v1, False), ("k", "null", False)], l
    assert "DeleteMarkers" not in l and not l["IsTruncated"], l
    print("versions ok")

    # A deletion adds a delete marker; the versions stay.
    d = s3.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True, d
    marker = d["VersionId"]
    refused("NoSuchKey", lambda: s3.get_object(Bucket=b, Key="k"))
    try:
        s3.head_object(Bucket=b, Key="k", VersionId=marker)
        raise AssertionError("a delete marker has no head")
    except Exception as e:  # 405 with x-amz-delete-marker
        headers = e.response["ResponseMetadata"]["HTTPHeaders"]
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 405, e.response
        assert headers.get("x-amz-delete-marker") == "true", headers
    try:
        s3.get_object(Bucket=b, Key="k")
    except Exception as e:
        assert e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true", e.response
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 0
    l = s3.list_object_versions(Bucket=b)
    assert [(m["VersionId"], m["IsLatest"]) for m in l["DeleteMarkers"]] == [(marker, True)], l
    assert [v["IsLatest"] for v in l["Versions"]] == [False] * 3, l
    # Copy from an old version; a delete marker is no copy source.
    c = s3.copy_object(Bucket=b, Key="copied", CopySource={"Bucket": b, "Key": "k", "VersionId": v1})
    assert c["CopySourceVersionId"] == v1 and c["VersionId"], c
    assert s3.get_object(Bucket=b, Key="copied")["Body"].read() == b"v1"
    refused("InvalidRequest", lambda: s3.copy_object(
        Bucket=b, Key="x", CopySource={"Bucket": b, "Key": "k", "VersionId": marker}))
    # Deleting the marker brings v2 back; deleting v2 leaves v1 current.
    d = s3.delete_object(Bucket=b, Key="k", VersionId=marker)
    assert d["DeleteMarker"] is True and d["VersionId"] == marker, d
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"v2"
    s3.delete_object(Bucket=b, Key="k", VersionId=v2)
    assert s3.get_object(Bucket=b, Key="k")["VersionId"] == v1
    print("delete markers ok")

    # A multipart upload makes a version too.
    up = s3.create_multipart_upload(Bucket=b, Key="k")
    s3.upload_part(Bucket=b, Key="k", UploadId=up["UploadId"], PartNumber=1, Body=b"mp")
    parts = s3.list_parts(Bucket=b, Key="k", UploadId=up["UploadId"])["Parts"]
    done = s3.complete_multipart_upload(Bucket=b, Key="k", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": parts[0]["ETag"]}]})
    assert done["VersionId"] and s3.get_object(Bucket=b, Key="k")["Body"].read() == b"mp"
    for i in range(3):
        s3.put_object(Bucket=b, Key=f"dir/{i}", Body=b"x")
    s3.delete_object(Bucket=b, Key="dir/1")
    full = s3.list_object_versions(Bucket=b)
    everything = [(v["Key"], v["VersionId"]) for v in full["Versions"] + full["DeleteMarkers"]]
    # copied; dir/0, dir/1 and its marker, dir/2; k: the upload, v1, null.
    assert len(everything) == 8, full
    # Paged one by one, the same entries in the same order.
    seen, marks = [], {}
    while True:
        page = s3.list_object_versions(Bucket=b, MaxKeys=1, **marks)
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        assert len(entries) == 1, page
        seen += [(e["Key"], e["VersionId"]) for e in entries]
        if not page["IsTruncated"]:
            break
        marks = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert sorted(seen) == sorted(everything) and len(seen) == len(everything), (seen, everything)
    assert [k for k, _ in seen] == sorted(k for k, _ in seen), seen
    d = s3.list_object_versions(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in d["CommonPrefixes"]] == ["dir/"], d
    assert {v["Key"] for v in d["Versions"]} == {"copied", "k"}, d
    assert len(s3.list_object_versions(Bucket=b, Prefix="dir/")["Versions"]) == 3
    print("list object versions ok")

    # Other apps reach none of it.
    for f in [lambda: other.list_object_versions(Bucket=b),
              lambda: other.get_bucket_versioning(Bucket=b),
              lambda: other.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"}),
              lambda: other.get_object(Bucket=b, Key="k", VersionId=v1),
              lambda: other.delete_object(Bucket=b, Key="k", VersionId=v1)]:
        refused("AccessDenied", f)
    refused("NotImplemented", lambda: s3.put_bucket_versioning(
        Bucket=b, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"}))
    print("versioning isolation ok")

    # Suspended: writes replace the null version, other versions stay.
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"
    s3.put_object(Bucket=b, Key="s", Body=b"1")
    s3.put_object(Bucket=b, Key="s", Body=b"2")
    vs = s3.list_object_versions(Bucket=b, Prefix="s")["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in vs] == [("null", True)], vs
    assert s3.get_object(Bucket=b, Key="s")["Body"].read() == b"2"
    print("suspended ok")

    # Emptied by versions, the bucket can go.
    refused("BucketNotEmpty", lambda: s3.delete_bucket(Bucket=b))
    full = s3.list_object_versions(Bucket=b)
    todo = [{"Key": e["Key"], "VersionId": e["VersionId"]} for e in full["Versions"] + full["DeleteMarkers"]]
    r = s3.delete_objects(Bucket=b, Delete={"Objects": todo})
    assert len(r["Deleted"]) == len(todo) and "Errors" not in r, r
    assert s3.list_object_versions(Bucket=b).get("Versions", []) == []
    s3.delete_bucket(Bucket=b)
    print("versioned bucket deleted ok")
