"""One S3 request through the real boto3/botocore, for the tenant-isolation
probes (crates/nimbus/tests/tenants/): prints what the endpoint answered as
one JSON line and exits 0 whatever the answer, so the test decides.

usage: probe.py ENDPOINT KEY SECRET CHECK [ARGS...]

Checks (BUCKET, KEY are names; AGE is how many seconds in the past the
request or URL is signed; EXPIRES is X-Amz-Expires in seconds):
  list-buckets                      ListBuckets; "buckets": names
  mb BUCKET                         CreateBucket
  put BUCKET KEY BODY               PutObject
  get BUCKET KEY                    GetObject; "body"
  list BUCKET                       ListObjectsV2; "keys"
  mpu BUCKET KEY                    CreateMultipartUpload + UploadPart 1; "upload"
  mpu-complete BUCKET KEY PARTS BYTES
                                    a multipart upload of PARTS parts of BYTES bytes
                                    each, completed
  list-all BUCKET PREFIX DELIMITER PAGE
                                    every page of ListObjectsV2 (PAGE keys a page; 20 s
                                    at most a request); "keys", "prefixes", "pages"
  list-v1-all BUCKET PREFIX DELIMITER PAGE
                                    the same with ListObjects (markers)
  sigv2-get BUCKET KEY              GetObject signed with Signature Version 2
  sigv2-presigned-get BUCKET KEY EXPIRES
                                    a SigV2 presigned GET URL, fetched
  post BUCKET KEY BODY VERSION      a browser-form upload (POST object) signed with
                                    VERSION: s3v4 or s3 (SigV2)
  skewed-get BUCKET KEY AGE         GetObject signed (SigV4, headers) AGE s ago
  presigned-get BUCKET KEY EXPIRES AGE
  presigned-put BUCKET KEY EXPIRES AGE BODY
                                    a SigV4 presigned URL made AGE s ago, fetched
The answer: {"status": HTTP status (0: the connection was dropped), "code": S3 error code or null,
"message": error message or "", ...}.
"""
import datetime
import json
import re
import sys
import urllib.error
import urllib.request

import botocore.auth
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

endpoint, key, secret, check = sys.argv[1:5]
args = sys.argv[5:]
_now = botocore.auth.get_current_datetime


def signed_ago(seconds):
    """Makes botocore's SigV4 signers date what they sign `seconds` ago."""
    botocore.auth.get_current_datetime = lambda: _now() - datetime.timedelta(seconds=seconds)


def client(version="s3v4"):
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version=version, s3={"addressing_style": "path"},
                      retries={"total_max_attempts": 1}, read_timeout=20))


def fetch(url, method="GET", data=None, headers=None):
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return {"status": r.status, "code": None, "message": "", "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        code = re.search(r"<Code>(.*?)</Code>", text)
        msg = re.search(r"<Message>(.*?)</Message>", text, re.S)
        return {"status": e.code, "code": code and code.group(1), "message": msg and msg.group(1) or "",
                "body": text}


def run():
    s3 = client()
    if check == "list-buckets":
        return {"buckets": [b["Name"] for b in s3.list_buckets().get("Buckets", [])]}
    if check == "mb":
        s3.create_bucket(Bucket=args[0])
        return {}
    if check == "put":
        s3.put_object(Bucket=args[0], Key=args[1], Body=args[2].encode())
        return {}
    if check == "get":
        return {"body": s3.get_object(Bucket=args[0], Key=args[1])["Body"].read().decode()}
    if check == "list":
        return {"keys": [o["Key"] for o in s3.list_objects_v2(Bucket=args[0]).get("Contents", [])]}
    if check == "mpu":
        up = s3.create_multipart_upload(Bucket=args[0], Key=args[1])["UploadId"]
        s3.upload_part(Bucket=args[0], Key=args[1], UploadId=up, PartNumber=1, Body=b"p" * 1024)
        return {"upload": up}
    if check == "mpu-complete":
        bucket, k, n, size = args[0], args[1], int(args[2]), int(args[3])
        up = s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"]
        parts = []
        for i in range(1, n + 1):
            tag = s3.upload_part(Bucket=bucket, Key=k, UploadId=up, PartNumber=i,
                                 Body=b"p" * size)["ETag"]
            parts.append({"PartNumber": i, "ETag": tag})
        s3.complete_multipart_upload(Bucket=bucket, Key=k, UploadId=up,
                                     MultipartUpload={"Parts": parts})
        return {"upload": up}
    if check in ("list-all", "list-v1-all"):
        bucket, prefix, delimiter, page = args[0], args[1], args[2], int(args[3])
        op = "list_objects_v2" if check == "list-all" else "list_objects"
        pages = s3.get_paginator(op).paginate(
            Bucket=bucket, Prefix=prefix, Delimiter=delimiter,
            PaginationConfig={"PageSize": page})
        keys, prefixes, n = [], [], 0
        for p in pages:
            n += 1
            if n > 10000:
                raise SystemExit("the listing does not end")
            keys += [o["Key"] for o in p.get("Contents", [])]
            prefixes += [c["Prefix"] for c in p.get("CommonPrefixes", [])]
        return {"keys": keys, "prefixes": prefixes, "pages": n}
    if check == "sigv2-get":
        return {"body": client("s3").get_object(Bucket=args[0], Key=args[1])["Body"].read().decode()}
    if check == "sigv2-presigned-get":
        url = client("s3").generate_presigned_url(
            "get_object", Params={"Bucket": args[0], "Key": args[1]}, ExpiresIn=int(args[2]))
        assert "Signature=" in url and "X-Amz-" not in url, url
        return fetch(url)
    if check == "post":
        form = client(args[3]).generate_presigned_post(args[0], args[1], ExpiresIn=600)
        boundary = "nimbusprobeboundary"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                 for k, v in form["fields"].items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n{args[2]}\r\n--{boundary}--\r\n')
        out = fetch(form["url"], "POST", "".join(parts).encode(),
                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if 200 <= out["status"] < 300:
            out["status"] = 200
        return out
    if check == "skewed-get":
        signed_ago(int(args[2]))
        return {"body": client().get_object(Bucket=args[0], Key=args[1])["Body"].read().decode()}
    if check in ("presigned-get", "presigned-put"):
        expires, age = int(args[2]), int(args[3])
        signed_ago(age)
        op = "get_object" if check == "presigned-get" else "put_object"
        url = client().generate_presigned_url(
            op, Params={"Bucket": args[0], "Key": args[1]}, ExpiresIn=expires)
        botocore.auth.get_current_datetime = _now
        assert f"X-Amz-Expires={expires}" in url, url
        if check == "presigned-get":
            return fetch(url)
        return fetch(url, "PUT", args[4].encode())
    raise SystemExit(f"unknown check {check!r}")


try:
    out = {"status": 200, "code": None, "message": ""}
    out.update(run())
except (ConnectionClosedError, EndpointConnectionError) as e:
    # The server went away mid-request (the crash tests stop it so).
    out = {"status": 0, "code": "ConnectionError", "message": str(e)}
except ClientError as e:
    err = e.response.get("Error", {})
    out = {"status": e.response["ResponseMetadata"]["HTTPStatusCode"], "code": err.get("Code"),
           "message": err.get("Message", "")}
print(json.dumps(out))
