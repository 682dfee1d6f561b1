"""Additional checksums through boto3 (which sends CRC32 by default, in a
header or an aws-chunked trailer): computed, checked (BadDigest), kept and
answered on reads that ask; multipart uploads with COMPOSITE and
FULL_OBJECT checksums; copies. Expected values are computed here with
Python's zlib and hashlib. Run by boto3_suite.py."""
import base64
import hashlib
import io
import struct
import zlib


def b64(d):
    return base64.b64encode(d).decode()


def crc32(data):
    return b64(struct.pack(">I", zlib.crc32(data)))


def run(s3, other, refused):
    b = "sums"
    s3.create_bucket(Bucket=b)
    data = b"checksummed " * 1000

    # boto3's default: a CRC32 sent with the body, kept and answered.
    s3.put_object(Bucket=b, Key="default", Body=data)
    h = s3.head_object(Bucket=b, Key="default", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == crc32(data) and h["ChecksumType"] == "FULL_OBJECT", h
    # Streamed (aws-chunked with a trailer): upload_fileobj of a non-seekable body.
    s3.upload_fileobj(io.BufferedReader(io.BytesIO(data)), b, "streamed")
    g = s3.get_object(Bucket=b, Key="streamed", ChecksumMode="ENABLED")
    assert g["Body"].read() == data and g["ChecksumCRC32"] == crc32(data), g
    # Asked for: SHA256, answered on the write and on reads that ask only.
    r = s3.put_object(Bucket=b, Key="sha", Body=data, ChecksumAlgorithm="SHA256")
    want = b64(hashlib.sha256(data).digest())
    assert r["ChecksumSHA256"] == want, r
    assert "ChecksumSHA256" not in s3.head_object(Bucket=b, Key="sha")
    assert s3.head_object(Bucket=b, Key="sha", ChecksumMode="ENABLED")["ChecksumSHA256"] == want
    ranged = s3.get_object(Bucket=b, Key="sha", Range="bytes=0-9", ChecksumMode="ENABLED")
    assert "ChecksumSHA256" not in ranged, "a range has no whole-object checksum"
    # A wrong checksum is refused and nothing is written.
    refused("BadDigest", lambda: s3.put_object(Bucket=b, Key="bad", Body=data, ChecksumSHA1=b64(b"\0" * 20)))
    refused("NoSuchKey", lambda: s3.get_object(Bucket=b, Key="bad"))
    print("checksums ok")

    # A copy keeps the source's checksum, or computes the one asked.
    s3.copy_object(Bucket=b, Key="copied", CopySource={"Bucket": b, "Key": "sha"})
    assert s3.head_object(Bucket=b, Key="copied", ChecksumMode="ENABLED")["ChecksumSHA256"] == want
    c = s3.copy_object(Bucket=b, Key="copied32", CopySource={"Bucket": b, "Key": "sha"}, ChecksumAlgorithm="CRC32")
    assert c["CopyObjectResult"]["ChecksumCRC32"] == crc32(data), c
    print("copy checksums ok")

    # Multipart, COMPOSITE: the checksum of the parts' checksums, -N.
    part = b"p" * (5 << 20)
    up = s3.create_multipart_upload(Bucket=b, Key="mp", ChecksumAlgorithm="SHA256")
    parts = []
    for n, body in [(1, part), (2, b"tail")]:
        r = s3.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=body,
                           ChecksumAlgorithm="SHA256")
        assert r["ChecksumSHA256"] == b64(hashlib.sha256(body).digest()), r
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    listed = s3.list_parts(Bucket=b, Key="mp", UploadId=up["UploadId"])["Parts"]
    assert [p["ChecksumSHA256"] for p in listed] == [p["ChecksumSHA256"] for p in parts], listed
    # A completion naming another checksum for a part is refused.
    wrong = [dict(parts[0], ChecksumSHA256=b64(b"\0" * 32)), parts[1]]
    refused("InvalidPart", lambda: s3.complete_multipart_upload(
        Bucket=b, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": wrong}))
    done = s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts})
    joined = hashlib.sha256(part).digest() + hashlib.sha256(b"tail").digest()
    assert done["ChecksumSHA256"] == b64(hashlib.sha256(joined).digest()) + "-2", done
    h = s3.head_object(Bucket=b, Key="mp", ChecksumMode="ENABLED")
    assert h["ChecksumType"] == "COMPOSITE" and h["ChecksumSHA256"] == done["ChecksumSHA256"], h

    # GetObjectAttributes: what was asked, of the current version or one.
    every = ["ETag", "Checksum", "ObjectParts", "ObjectSize", "StorageClass"]
    a = s3.get_object_attributes(Bucket=b, Key="mp", ObjectAttributes=every)
    assert a["ETag"].strip('"') == h["ETag"].strip('"') and a["ObjectSize"] == len(part) + 4, a
    assert a["StorageClass"] == "STANDARD" and a["ObjectParts"]["TotalPartsCount"] == 2, a
    assert a["Checksum"]["ChecksumSHA256"] == done["ChecksumSHA256"], a
    assert a["Checksum"]["ChecksumType"] == "COMPOSITE", a
    a = s3.get_object_attributes(Bucket=b, Key="default", ObjectAttributes=["Checksum", "ObjectSize"])
    assert a["Checksum"]["ChecksumCRC32"] == crc32(data) and "ETag" not in a and "ObjectParts" not in a, a
    refused("NoSuchKey", lambda: s3.get_object_attributes(Bucket=b, Key="nope", ObjectAttributes=every))
    refused("AccessDenied", lambda: other.get_object_attributes(Bucket=b, Key="mp", ObjectAttributes=every))
    print("object attributes ok")

    # Multipart, FULL_OBJECT CRC32: the CRC of the whole object.
    up = s3.create_multipart_upload(Bucket=b, Key="full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    parts = []
    for n, body in [(1, part), (2, b"tail")]:
        r = s3.upload_part(Bucket=b, Key="full", UploadId=up["UploadId"], PartNumber=n, Body=body,
                           ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    done = s3.complete_multipart_upload(Bucket=b, Key="full", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts}, ChecksumType="FULL_OBJECT",
                                        ChecksumCRC32=crc32(part + b"tail"))
    assert done["ChecksumCRC32"] == crc32(part + b"tail") and done["ChecksumType"] == "FULL_OBJECT", done
    refused("InvalidRequest", lambda: s3.create_multipart_upload(
        Bucket=b, Key="x", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT"))
    # CRC64NVME is only ever FULL_OBJECT: named alone, that is its type.
    up = s3.create_multipart_upload(Bucket=b, Key="c64", ChecksumAlgorithm="CRC64NVME")
    s3.abort_multipart_upload(Bucket=b, Key="c64", UploadId=up["UploadId"])
    # The transfer manager's default (CRC32 parts) completes too.
    s3.upload_fileobj(io.BytesIO(part * 2), b, "managed")
    assert s3.get_object(Bucket=b, Key="managed")["Body"].read() == part * 2
    print("multipart checksums ok")
