"""Virtual-hosted-style addressing (`--s3-domain s3.nimbus.test`) through
boto3: BUCKET.s3.nimbus.test names the bucket, signed and unsigned, while
path-style keeps working on 127.0.0.1. The names resolve to 127.0.0.1 in
this process only (getaddrinfo is wrapped). Run by boto3_suite.py."""
import socket
import urllib.parse

import boto3
from botocore import UNSIGNED
from botocore.config import Config

DOMAIN = "s3.nimbus.test"
_resolve = socket.getaddrinfo


def _local(host, *args, **kwargs):
    if host == DOMAIN or str(host).endswith("." + DOMAIN):
        host = "127.0.0.1"
    return _resolve(host, *args, **kwargs)


def run(s3, refused, endpoint, key, secret, other_key, other_secret):
    socket.getaddrinfo = _local
    try:
        port = urllib.parse.urlparse(endpoint).port
        vurl = f"http://{DOMAIN}:{port}"
        virtual = boto3.client("s3", endpoint_url=vurl, aws_access_key_id=key, aws_secret_access_key=secret,
                               region_name="us-east-1",
                               config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
        virtual.create_bucket(Bucket="vhosted")
        virtual.put_object(Bucket="vhosted", Key="dir/v.txt", Body=b"virtual", ACL="public-read")
        assert virtual.get_object(Bucket="vhosted", Key="dir/v.txt")["Body"].read() == b"virtual"
        assert [c["Key"] for c in virtual.list_objects_v2(Bucket="vhosted")["Contents"]] == ["dir/v.txt"]
        # The same bucket, path-style on the IP address.
        assert s3.get_object(Bucket="vhosted", Key="dir/v.txt")["Body"].read() == b"virtual"
        # Unsigned, virtual-hosted: the public object, nothing else.
        anon = boto3.client("s3", endpoint_url=vurl, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED, s3={"addressing_style": "virtual"}))
        assert anon.get_object(Bucket="vhosted", Key="dir/v.txt")["Body"].read() == b"virtual"
        refused("AccessDenied", lambda: anon.list_objects_v2(Bucket="vhosted"))
        # Another app's key, virtual-hosted, reaches nothing of it.
        theirs = boto3.client("s3", endpoint_url=vurl, aws_access_key_id=other_key,
                              aws_secret_access_key=other_secret, region_name="us-east-1",
                              config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
        refused("AccessDenied", lambda: theirs.delete_object(Bucket="vhosted", Key="dir/v.txt"))
        virtual.delete_object(Bucket="vhosted", Key="dir/v.txt")
        virtual.delete_bucket(Bucket="vhosted")
        print("virtual-hosted addressing ok")
    finally:
        socket.getaddrinfo = _resolve
