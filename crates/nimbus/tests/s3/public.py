"""Public access inside the tenant model, through boto3, unsigned boto3
and plain HTTP: canned ACLs private and public-read, ACL reads, refused
grants, public-read buckets, the Public Access Block. Run by
boto3_suite.py."""
import json
import urllib.error
import urllib.request

import boto3
from botocore import UNSIGNED
from botocore.config import Config


def status(url):
    try:
        return urllib.request.urlopen(url).status
    except urllib.error.HTTPError as e:
        return e.code


def run(s3, other, refused, endpoint):
    anon = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}))
    b = "assets"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="logo.png", Body=b"png", ACL="public-read", ContentType="image/png")
    s3.put_object(Bucket=b, Key="secret.txt", Body=b"s")
    # Plain HTTP reads the public object; nothing else, and a missing key
    # looks like a private one to an unsigned reader.
    assert urllib.request.urlopen(f"{endpoint}/{b}/logo.png").read() == b"png"
    for path in [f"{b}/secret.txt", f"{b}/missing", f"{b}", f"{b}?list-type=2", "", f"{b}/logo.png?acl"]:
        assert status(f"{endpoint}/{path}") == 403, path
    assert anon.head_object(Bucket=b, Key="logo.png")["ContentType"] == "image/png"
    refused("AccessDenied", lambda: anon.get_object(Bucket=b, Key="secret.txt"))
    refused("AccessDenied", lambda: anon.list_objects_v2(Bucket=b))
    refused("InvalidRequest", lambda: anon.get_object(Bucket=b, Key="logo.png", ResponseContentType="text/html"))
    for f in [lambda: anon.put_object(Bucket=b, Key="logo.png", Body=b"defaced", ACL="public-read"),
              lambda: anon.delete_object(Bucket=b, Key="logo.png"),
              lambda: anon.put_object_acl(Bucket=b, Key="secret.txt", ACL="public-read"),
              lambda: anon.get_object_acl(Bucket=b, Key="logo.png"),
              lambda: anon.list_object_versions(Bucket=b),
              lambda: anon.list_buckets()]:
        refused("AccessDenied", f)
    assert s3.get_object(Bucket=b, Key="logo.png")["Body"].read() == b"png"
    print("public objects ok")

    # ACL reads: the owner's full control, and READ for everyone if public.
    def grants(acl):
        return sorted((g["Grantee"]["Type"], g["Grantee"].get("URI", g["Grantee"].get("ID")), g["Permission"])
                      for g in acl["Grants"])
    pub = s3.get_object_acl(Bucket=b, Key="logo.png")
    owner = pub["Owner"]["ID"]
    everyone = ("Group", "http://acs.amazonaws.com/groups/global/AllUsers", "READ")
    assert grants(pub) == sorted([("CanonicalUser", owner, "FULL_CONTROL"), everyone]), pub
    assert grants(s3.get_object_acl(Bucket=b, Key="secret.txt")) == [("CanonicalUser", owner, "FULL_CONTROL")]
    # Made public and private again by PutObjectAcl, canned or as a policy.
    s3.put_object_acl(Bucket=b, Key="secret.txt", ACL="public-read")
    assert status(f"{endpoint}/{b}/secret.txt") == 200
    s3.put_object_acl(Bucket=b, Key="secret.txt", AccessControlPolicy={
        "Owner": {"ID": owner},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner}, "Permission": "FULL_CONTROL"}]})
    assert status(f"{endpoint}/{b}/secret.txt") == 403
    # Grants to anyone else are refused: another app, signed users, writes.
    theirs = other.list_buckets()["Buckets"][0]["Name"]
    rival = other.get_bucket_acl(Bucket=theirs)["Owner"]["ID"]
    assert rival != owner
    for f in [lambda: s3.put_bucket_acl(Bucket=b, ACL="authenticated-read"),
              lambda: s3.put_bucket_acl(Bucket=b, ACL="public-read-write"),
              lambda: s3.put_object(Bucket=b, Key="x", Body=b"", GrantRead=f'id="{rival}"'),
              lambda: s3.put_object_acl(Bucket=b, Key="secret.txt", AccessControlPolicy={
                  "Owner": {"ID": owner},
                  "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": rival}, "Permission": "READ"}]}),
              lambda: other.put_object_acl(Bucket=b, Key="secret.txt", ACL="public-read"),
              lambda: other.get_bucket_acl(Bucket=b)]:
        refused("AccessDenied", f)
    assert status(f"{endpoint}/{b}/secret.txt") == 403
    print("acls ok")

    # A public-read bucket is listable unsigned; a missing key is then
    # NoSuchKey (the listing shows it anyway).
    s3.put_bucket_acl(Bucket=b, ACL="public-read")
    assert everyone in grants(s3.get_bucket_acl(Bucket=b))
    assert [c["Key"] for c in anon.list_objects_v2(Bucket=b)["Contents"]] == ["logo.png", "secret.txt"]
    assert [c["Key"] for c in anon.list_objects(Bucket=b)["Contents"]] == ["logo.png", "secret.txt"]
    refused("AccessDenied", lambda: anon.get_object(Bucket=b, Key="secret.txt"))
    refused("NoSuchKey", lambda: anon.get_object(Bucket=b, Key="missing"))
    s3.create_bucket(Bucket="assets-public", ACL="public-read")
    assert anon.list_objects_v2(Bucket="assets-public")["KeyCount"] == 0
    s3.delete_bucket(Bucket="assets-public")
    print("public buckets ok")

    # The Public Access Block: IgnorePublicAcls shuts every unsigned read
    # out; BlockPublicAcls refuses new public ACLs.
    refused("NoSuchPublicAccessBlockConfiguration", lambda: s3.get_public_access_block(Bucket=b))
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    c = s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]
    assert c["BlockPublicAcls"] and c["IgnorePublicAcls"] and not c["BlockPublicPolicy"], c
    assert status(f"{endpoint}/{b}/logo.png") == 403
    refused("AccessDenied", lambda: anon.list_objects_v2(Bucket=b))
    refused("AccessDenied", lambda: s3.put_object_acl(Bucket=b, Key="secret.txt", ACL="public-read"))
    refused("AccessDenied", lambda: s3.put_object(Bucket=b, Key="new", Body=b"", ACL="public-read"))
    refused("AccessDenied", lambda: other.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={}))
    s3.delete_public_access_block(Bucket=b)
    assert status(f"{endpoint}/{b}/logo.png") == 200
    print("public access block ok")

    for k in ["logo.png", "secret.txt"]:
        s3.delete_object(Bucket=b, Key=k)
    s3.delete_bucket(Bucket=b)
