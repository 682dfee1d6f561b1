"""Object Lock through boto3: buckets created with it or given it, default
retention, per-version retention in governance and compliance modes,
legal holds, what each forbids (deletes by version id, shortening,
suspending versioning) and what stays allowed (delete markers,
overwrites, extending), multipart and copies, tenant isolation.
Run by boto3_suite.py."""
import datetime


def run(s3, other, refused):
    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(hours=1)
    much_later = now + datetime.timedelta(days=2)

    # Not on a bucket without it.
    s3.create_bucket(Bucket="unlocked")
    refused("ObjectLockConfigurationNotFoundError", lambda: s3.get_object_lock_configuration(Bucket="unlocked"))
    s3.put_object(Bucket="unlocked", Key="k", Body=b"x")
    refused("InvalidRequest", lambda: s3.put_object(
        Bucket="unlocked", Key="k2", Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=later))
    refused("InvalidRequest", lambda: s3.put_object_legal_hold(
        Bucket="unlocked", Key="k", LegalHold={"Status": "ON"}))
    refused("InvalidRequest", lambda: s3.get_object_retention(Bucket="unlocked", Key="k"))
    # Enabling it needs versioning.
    conf = {"ObjectLockEnabled": "Enabled"}
    refused("InvalidBucketState", lambda: s3.put_object_lock_configuration(
        Bucket="unlocked", ObjectLockConfiguration=conf))
    s3.put_bucket_versioning(Bucket="unlocked", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket="unlocked", ObjectLockConfiguration=conf)
    assert s3.get_object_lock_configuration(Bucket="unlocked")["ObjectLockConfiguration"] == conf
    print("object lock enabling ok")

    # Created with Object Lock: versioned, never suspended.
    b = "locked"
    s3.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    refused("InvalidBucketState", lambda: s3.put_bucket_versioning(
        Bucket=b, VersioningConfiguration={"Status": "Suspended"}))
    assert s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"] == conf

    # Compliance: a version kept until its date, whoever asks.
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one", ObjectLockMode="COMPLIANCE",
                       ObjectLockRetainUntilDate=later)["VersionId"]
    h = s3.head_object(Bucket=b, Key="k")
    assert h["ObjectLockMode"] == "COMPLIANCE", h
    assert abs((h["ObjectLockRetainUntilDate"] - later).total_seconds()) < 1, h
    r = s3.get_object_retention(Bucket=b, Key="k", VersionId=v1)["Retention"]
    assert r["Mode"] == "COMPLIANCE", r
    refused("AccessDenied", lambda: s3.delete_object(Bucket=b, Key="k", VersionId=v1))
    refused("AccessDenied", lambda: s3.delete_object(Bucket=b, Key="k", VersionId=v1,
                                                     BypassGovernanceRetention=True))
    # Shortened, removed or made governance: refused; extended: allowed.
    refused("AccessDenied", lambda: s3.put_object_retention(
        Bucket=b, Key="k", VersionId=v1, BypassGovernanceRetention=True,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": now + datetime.timedelta(minutes=5)}))
    refused("AccessDenied", lambda: s3.put_object_retention(
        Bucket=b, Key="k", VersionId=v1, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": much_later}))
    s3.put_object_retention(Bucket=b, Key="k", VersionId=v1,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": much_later})
    r = s3.get_object_retention(Bucket=b, Key="k", VersionId=v1)["Retention"]
    assert abs((r["RetainUntilDate"] - much_later).total_seconds()) < 1, r
    # A retention in the past, or half of one: refused.
    refused("InvalidArgument", lambda: s3.put_object(
        Bucket=b, Key="past", Body=b"x", ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=now - datetime.timedelta(hours=1)))
    refused("InvalidArgument", lambda: s3.put_object(
        Bucket=b, Key="half", Body=b"x", ObjectLockMode="GOVERNANCE"))
    # Overwriting and deleting without a version id stay allowed: the
    # locked version stays.
    s3.put_object(Bucket=b, Key="k", Body=b"two")
    marker = s3.delete_object(Bucket=b, Key="k")
    assert marker["DeleteMarker"], marker
    assert s3.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"one"
    print("object lock compliance ok")

    # Governance: deleted only bypassing it.
    v2 = s3.put_object(Bucket=b, Key="g", Body=b"g", ObjectLockMode="GOVERNANCE",
                       ObjectLockRetainUntilDate=later)["VersionId"]
    refused("AccessDenied", lambda: s3.delete_object(Bucket=b, Key="g", VersionId=v2))
    refused("AccessDenied", lambda: s3.put_object_retention(
        Bucket=b, Key="g", VersionId=v2, Retention={}))
    gone = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "g", "VersionId": v2}]})
    assert gone["Errors"][0]["Code"] == "AccessDenied", gone
    s3.delete_object(Bucket=b, Key="g", VersionId=v2, BypassGovernanceRetention=True)
    refused("NoSuchKey", lambda: s3.get_object(Bucket=b, Key="g"))
    print("object lock governance ok")

    # Legal hold: no deletion even bypassing governance, until lifted.
    v3 = s3.put_object(Bucket=b, Key="h", Body=b"h", ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.get_object_legal_hold(Bucket=b, Key="h")["LegalHold"]["Status"] == "ON"
    assert s3.get_object(Bucket=b, Key="h")["ObjectLockLegalHoldStatus"] == "ON"
    refused("AccessDenied", lambda: s3.delete_object(Bucket=b, Key="h", VersionId=v3,
                                                     BypassGovernanceRetention=True))
    refused("NoSuchObjectLockConfiguration", lambda: s3.get_object_retention(Bucket=b, Key="h"))
    s3.put_object_legal_hold(Bucket=b, Key="h", VersionId=v3, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=b, Key="h")["LegalHold"]["Status"] == "OFF"
    s3.delete_object(Bucket=b, Key="h", VersionId=v3)
    refused("NoSuchVersion", lambda: s3.get_object_legal_hold(Bucket=b, Key="h", VersionId=v3))
    print("object lock legal hold ok")

    # A default retention applies to puts, copies and multipart uploads
    # that name none.
    s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    got = s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]
    assert got["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}, got
    refused("MalformedXML", lambda: s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}}))
    d = s3.put_object(Bucket=b, Key="d", Body=b"d")["VersionId"]
    r = s3.get_object_retention(Bucket=b, Key="d")["Retention"]
    assert r["Mode"] == "GOVERNANCE", r
    assert abs((r["RetainUntilDate"] - (now + datetime.timedelta(days=1))).total_seconds()) < 120, r
    c = s3.copy_object(Bucket=b, Key="c", CopySource={"Bucket": b, "Key": "d"})["VersionId"]
    assert s3.get_object_retention(Bucket=b, Key="c", VersionId=c)["Retention"]["Mode"] == "GOVERNANCE"
    up = s3.create_multipart_upload(Bucket=b, Key="m", ObjectLockLegalHoldStatus="ON")
    etag = s3.upload_part(Bucket=b, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=b"m")["ETag"]
    m = s3.complete_multipart_upload(Bucket=b, Key="m", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})["VersionId"]
    h = s3.head_object(Bucket=b, Key="m")
    assert h["ObjectLockMode"] == "GOVERNANCE" and h["ObjectLockLegalHoldStatus"] == "ON", h
    refused("AccessDenied", lambda: s3.delete_object(Bucket=b, Key="m", VersionId=m,
                                                     BypassGovernanceRetention=True))
    s3.delete_object(Bucket=b, Key="d", VersionId=d, BypassGovernanceRetention=True)
    print("object lock default retention ok")

    # Other apps reach none of it.
    for f in [lambda: other.get_object_lock_configuration(Bucket=b),
              lambda: other.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=conf),
              lambda: other.get_object_retention(Bucket=b, Key="k", VersionId=v1),
              lambda: other.put_object_legal_hold(Bucket=b, Key="m", VersionId=m, LegalHold={"Status": "OFF"}),
              lambda: other.delete_object(Bucket=b, Key="m", VersionId=m, BypassGovernanceRetention=True)]:
        refused("AccessDenied", f)
    # The bucket cannot be emptied of its kept versions, so it stays.
    refused("BucketNotEmpty", lambda: s3.delete_bucket(Bucket=b))
    print("object lock isolation ok")
