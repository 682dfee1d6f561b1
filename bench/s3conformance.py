"""Runs MinIO's public S3 conformance tests for minio-py (the Python suite
of MinIO's Mint; `tests/functional/tests.py` of the minio 7.2.20 sdist on
PyPI) against an S3 endpoint, every test on its own, and prints the result
of each and a tally per area.

usage: s3conformance.py TESTS_PY ENDPOINT ACCESS_KEY SECRET_KEY

The suite's own main() stops at the first failure; this driver sets up
what main() sets up (client, data files) and calls the suite's own
_call_test on each test of its full (MINT_MODE=full) list, plain HTTP, so
without the SSE-C variants, which need TLS.
"""
import collections
import contextlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile

tests_py, endpoint, access, secret = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("minio_functional", tests_py)
t = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t)

# The areas the target names, and the rest.
AREA = {
    "make_bucket": "bucket", "list_buckets": "bucket", "remove_bucket": "bucket",
    "fput_object": "object", "put_object": "object", "stat_object": "object",
    "get_object": "object", "fget_object": "object", "get_partial_object": "object",
    "remove_object": "object", "remove_objects": "object",
    "copy_object": "object (copy)",
    "list_object": "listing",
    "presigned_get": "presigned", "presigned_put": "presigned",
    # It only builds a signed policy on the client; nothing is posted.
    "presigned_post": "POST policy (client only)",
    # ExcludeFolders and ExcludedPrefixes are MinIO's, not S3's.
    "set_get_bucket_versioning": "versioning (MinIO ext.)", "_version": "versioning",
    "bucket_policy": "bucket policy", "bucket_notification": "notification (MinIO)",
    "select": "select", "snowball": "snowball (MinIO)", "thread_safe": "object",
    "large_file": "multipart",
}


def area(name):
    if name == "set_get_bucket_versioning":
        return AREA[name]
    if "version" in name:
        return "versioning"
    hits = [(len(k), v) for k, v in AREA.items() if k in name]
    return max(hits)[1] if hits else "other"


work = tempfile.mkdtemp()
os.chdir(work)
t._client = t.Minio(endpoint, access, secret, secure=False)
t._is_aws = False
t._test_file = os.path.join(work, "datafile-1-MB")
t._large_file = os.path.join(work, "datafile-11-MB")
for path, size in [(t._test_file, 1 * t.MB), (t._large_file, 11 * t.MB)]:
    with open(path, "wb") as f:
        shutil.copyfileobj(t.LimitedRandomReader(size), f)

names = [
    "make_bucket_default_region", "make_bucket_with_region", "negative_make_bucket_invalid_name",
    "list_buckets", "fput_object_small_file", "fput_object_large_file",
    "fput_object_with_content_type", "copy_object_no_copy_condition", "copy_object_etag_match",
    "copy_object_with_metadata", "copy_object_negative_etag_match", "copy_object_modified_since",
    "copy_object_unmodified_since", "put_object", "negative_put_object_with_path_segment",
    "stat_object", "stat_object_version", "get_object", "get_object_version", "fget_object",
    "fget_object_version", "get_object_with_default_length", "get_partial_object",
    "list_objects_v1", "list_object_v1_versions", "list_objects_with_prefix",
    "list_objects_with_1001_files", "list_objects", "list_object_versions",
    "presigned_get_object_default_expiry", "presigned_get_object_expiry",
    "presigned_get_object_response_headers", "presigned_get_object_version",
    "presigned_put_object_default_expiry", "presigned_put_object_expiry",
    "presigned_post_policy", "thread_safe", "set_get_bucket_versioning", "get_bucket_policy",
    "set_bucket_policy_readonly", "set_bucket_policy_readwrite", "get_bucket_notification",
    "select_object_content", "upload_snowball_objects", "upload_snowball_objects_with_staging",
    "remove_object", "remove_object_version", "remove_objects", "remove_object_versions",
    "remove_bucket",
]
tally = collections.defaultdict(collections.Counter)
for name in names:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            t._call_test(getattr(t, "test_" + name))
        except t.TestFailed:
            pass
    entry = json.loads(out.getvalue().strip().splitlines()[-1])
    status = entry["status"]
    tally[area(name)][status] += 1
    why = "" if status == "PASS" else " " + (entry.get("alert") or entry.get("message", ""))[:160]
    print(f"{status:4} {area(name):22} {name}{why}", flush=True)

print()
print(f"{'area':22} {'pass':>4} {'fail':>4} {'n/a':>4}")
total = collections.Counter()
for a in sorted(tally):
    c = tally[a]
    total.update(c)
    print(f"{a:22} {c['PASS']:4} {c['FAIL']:4} {c['NA']:4}")
print(f"{'all':22} {total['PASS']:4} {total['FAIL']:4} {total['NA']:4}")
shutil.rmtree(work, ignore_errors=True)
