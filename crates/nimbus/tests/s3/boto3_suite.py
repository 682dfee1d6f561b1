"""S3 operations through the real boto3, against a Nimbus S3 endpoint.

usage: boto3_suite.py ENDPOINT KEY SECRET OTHER_KEY OTHER_SECRET WORKDIR
Prints one line per check; exits non-zero on the first failure.
"""
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

import auth_codes
import checksums
import cors
import details
import object_lock
import post
import public
import virtual
import versioning

endpoint, key, secret, okey, osecret, work = sys.argv[1:7]


def client(k, s):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=k, aws_secret_access_key=s,
                        region_name="us-east-1",
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def refused(code, f):
    try:
        f()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}"
        return
    raise AssertionError(f"expected {code}, but it succeeded")


s3, other = client(key, secret), client(okey, osecret)
s3.create_bucket(Bucket="photos")
refused("BucketAlreadyOwnedByYou", lambda: s3.create_bucket(Bucket="photos"))
refused("BucketAlreadyExists", lambda: other.create_bucket(Bucket="photos"))
s3.head_bucket(Bucket="photos")
assert s3.get_bucket_location(Bucket="photos")["LocationConstraint"] is None
refused("NoSuchBucket", lambda: s3.get_bucket_location(Bucket="nowhere"))
print("buckets ok")

s3.put_object(Bucket="photos", Key="a/b.txt", Body=b"hello world", ContentType="text/plain", Metadata={"who": "me"})
o = s3.get_object(Bucket="photos", Key="a/b.txt")
assert o["Body"].read() == b"hello world"
assert o["ContentType"] == "text/plain" and o["Metadata"] == {"who": "me"}
assert o["ETag"] == '"5eb63bbbe01eeed093cb22bb8f5acdc3"'
r = s3.get_object(Bucket="photos", Key="a/b.txt", Range="bytes=6-10")
assert r["Body"].read() == b"world" and r["ContentRange"] == "bytes 6-10/11"
assert s3.get_object(Bucket="photos", Key="a/b.txt", Range="bytes=-3")["Body"].read() == b"rld"
refused("NoSuchKey", lambda: s3.get_object(Bucket="photos", Key="missing"))
print("objects ok")

etag = o["ETag"]
refused("PreconditionFailed", lambda: s3.get_object(Bucket="photos", Key="a/b.txt", IfMatch='"nope"'))
assert s3.get_object(Bucket="photos", Key="a/b.txt", IfMatch=etag)["Body"].read() == b"hello world"
refused("304", lambda: s3.head_object(Bucket="photos", Key="a/b.txt", IfNoneMatch=etag))
refused("PreconditionFailed", lambda: s3.put_object(Bucket="photos", Key="a/b.txt", Body=b"x", IfNoneMatch="*"))
print("conditions ok")

for k in ["a/c.txt", "top.txt", "x/1", "x/2"]:
    s3.put_object(Bucket="photos", Key=k, Body=b"1")
l = s3.list_objects_v2(Bucket="photos", Delimiter="/")
assert [c["Key"] for c in l["Contents"]] == ["top.txt"], l
assert [p["Prefix"] for p in l["CommonPrefixes"]] == ["a/", "x/"], l
keys, token = [], None
while True:
    kw = {"ContinuationToken": token} if token else {}
    page = s3.list_objects_v2(Bucket="photos", MaxKeys=2, **kw)
    keys += [c["Key"] for c in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
assert keys == ["a/b.txt", "a/c.txt", "top.txt", "x/1", "x/2"], keys
assert [c["Key"] for c in s3.list_objects(Bucket="photos", Prefix="x/")["Contents"]] == ["x/1", "x/2"]
r = s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "x/1"}, {"Key": "x/2"}]})
assert sorted(d["Key"] for d in r["Deleted"]) == ["x/1", "x/2"]
s3.copy_object(Bucket="photos", Key="copy.txt", CopySource={"Bucket": "photos", "Key": "a/b.txt"})
assert s3.get_object(Bucket="photos", Key="copy.txt")["Metadata"] == {"who": "me"}
print("listing, delete-multiple, copy ok")

big = os.path.join(work, "big.bin")
with open(big, "wb") as f:
    f.write(os.urandom(50 * 1024 * 1024))
s3.upload_file(big, "photos", "big.bin",
               Config=TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024))
h = s3.head_object(Bucket="photos", Key="big.bin")
assert h["ContentLength"] == 50 * 1024 * 1024 and h["ETag"].endswith('-7"'), h
out = os.path.join(work, "big.out")
s3.download_file("photos", "big.bin", out)
assert hashlib.md5(open(big, "rb").read()).digest() == hashlib.md5(open(out, "rb").read()).digest()
up = s3.create_multipart_upload(Bucket="photos", Key="aborted")
s3.upload_part(Bucket="photos", Key="aborted", UploadId=up["UploadId"], PartNumber=1, Body=b"z" * 10)
assert [p["PartNumber"] for p in s3.list_parts(Bucket="photos", Key="aborted", UploadId=up["UploadId"])["Parts"]] == [1]
s3.abort_multipart_upload(Bucket="photos", Key="aborted", UploadId=up["UploadId"])
refused("NoSuchUpload", lambda: s3.list_parts(Bucket="photos", Key="aborted", UploadId=up["UploadId"]))
print("multipart 50 MiB ok")

started = [s3.create_multipart_upload(Bucket="photos", Key=k)["UploadId"] for k in ["dir/one", "dir/one", "solo"]]
want = sorted(zip(["dir/one", "dir/one", "solo"], started))
l = s3.list_multipart_uploads(Bucket="photos")
assert [(u["Key"], u["UploadId"]) for u in l["Uploads"]] == want, l
assert all(u["Initiated"] for u in l["Uploads"]) and not l["IsTruncated"], l
l = s3.list_multipart_uploads(Bucket="photos", Delimiter="/")
assert [p["Prefix"] for p in l["CommonPrefixes"]] == ["dir/"], l
assert [u["Key"] for u in l["Uploads"]] == ["solo"], l
assert [u["Key"] for u in s3.list_multipart_uploads(Bucket="photos", Prefix="dir/")["Uploads"]] == ["dir/one"] * 2
seen, marks = [], {}
while True:
    page = s3.list_multipart_uploads(Bucket="photos", MaxUploads=1, **marks)
    seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
    if not page["IsTruncated"]:
        break
    marks = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
assert seen == want, seen
refused("AccessDenied", lambda: other.list_multipart_uploads(Bucket="photos"))
for k, u in want:
    s3.abort_multipart_upload(Bucket="photos", Key=k, UploadId=u)
assert s3.list_multipart_uploads(Bucket="photos").get("Uploads", []) == []
print("list multipart uploads ok")

get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "photos", "Key": "a/b.txt"}, ExpiresIn=60)
assert urllib.request.urlopen(get_url).read() == b"hello world"
put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "photos", "Key": "presigned.txt"}, ExpiresIn=60)
urllib.request.urlopen(urllib.request.Request(put_url, data=b"via presigned put", method="PUT")).read()
assert s3.get_object(Bucket="photos", Key="presigned.txt")["Body"].read() == b"via presigned put"
# Past their expiry, a presigned PUT and GET are refused as S3 refuses
# them: 403 AccessDenied, "Request has expired"; nothing is written.
late_put = s3.generate_presigned_url("put_object", Params={"Bucket": "photos", "Key": "late.txt"}, ExpiresIn=1)
late_get = s3.generate_presigned_url("get_object", Params={"Bucket": "photos", "Key": "a/b.txt"}, ExpiresIn=1)
time.sleep(2.2)
for u, m, d in [(late_put, "PUT", b"too late"), (late_get, "GET", None)]:
    try:
        urllib.request.urlopen(urllib.request.Request(u, data=d, method=m))
        raise AssertionError(f"an expired presigned {m} was accepted")
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        assert e.code == 403 and "<Code>AccessDenied</Code>" in body and "expired" in body, (m, e.code, body)
refused("NoSuchKey", lambda: s3.get_object(Bucket="photos", Key="late.txt"))
print("presigned ok")

refused("SignatureDoesNotMatch", lambda: client(key, "wrong" * 8).list_buckets())
refused("InvalidAccessKeyId", lambda: client("NKNOSUCHKEY000000000", "x" * 40).list_buckets())
for f in [lambda: other.get_object(Bucket="photos", Key="a/b.txt"),
          lambda: other.put_object(Bucket="photos", Key="z", Body=b"1"),
          lambda: other.list_objects_v2(Bucket="photos"),
          lambda: other.get_bucket_location(Bucket="photos"),
          lambda: other.delete_object(Bucket="photos", Key="a/b.txt"),
          lambda: other.copy_object(Bucket="mine", Key="stolen", CopySource={"Bucket": "photos", "Key": "a/b.txt"})]:
    try:
        other.create_bucket(Bucket="mine")
    except ClientError:
        pass
    refused("AccessDenied", f)
assert other.list_buckets()["Buckets"][0]["Name"] == "mine"
print("auth and isolation ok")

for k in ["unicode ünï/ü.txt", "spaces in name.txt", "../../etc/passwd", "a//b", "%2e%2e/x"]:
    s3.put_object(Bucket="photos", Key=k, Body=k.encode())
    assert s3.get_object(Bucket="photos", Key=k)["Body"].read() == k.encode(), k
print("keys ok")

refused("BucketNotEmpty", lambda: s3.delete_bucket(Bucket="photos"))
s3.create_bucket(Bucket="empty")
pending = s3.create_multipart_upload(Bucket="empty", Key="half")
refused("BucketNotEmpty", lambda: s3.delete_bucket(Bucket="empty"))
# The forgotten upload is found by listing, and aborted.
assert [u["Key"] for u in s3.list_multipart_uploads(Bucket="empty")["Uploads"]] == ["half"]
s3.abort_multipart_upload(Bucket="empty", Key="half", UploadId=pending["UploadId"])
s3.delete_bucket(Bucket="empty")

versioning.run(s3, other, refused)
details.run(s3, other, refused)
public.run(s3, other, refused, endpoint)
virtual.run(s3, refused, endpoint, key, secret, okey, osecret)
object_lock.run(s3, other, refused)
post.run(s3, other, refused, endpoint)
cors.run(s3, other, refused, endpoint)
checksums.run(s3, other, refused)
auth_codes.run(s3, endpoint, key, secret)
print("all ok")
