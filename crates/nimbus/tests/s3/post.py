"""Browser-form uploads (POST Object) through boto3's generate_presigned_post
and a plain multipart POST (urllib3): signed policies and their
conditions, ${filename}, success_action_status and _redirect, canned ACLs,
and every refusal (a broken condition, a file too large, an expired or
tampered policy, no policy, another app's key). Run by boto3_suite.py."""
import datetime
import urllib.error
import urllib.parse
import urllib.request

import urllib3


def run(s3, other, refused, endpoint):
    b = "forms"
    s3.create_bucket(Bucket=b)
    http = urllib3.PoolManager()

    def post(p, data=b"hello form", filename="hello.txt", extra=None, drop=()):
        fields = {k: v for k, v in p["fields"].items() if k not in drop}
        fields.update(extra or {})
        fields["file"] = (filename, data, "text/plain")
        return http.request("POST", p["url"], fields=fields, redirect=False)

    def code(r):
        body = r.data.decode()
        return body.split("<Code>")[1].split("</Code>")[0] if "<Code>" in body else body

    # ${filename}, a prefix condition, a size range, status 201.
    p = s3.generate_presigned_post(
        b, "uploads/${filename}",
        Fields={"success_action_status": "201"},
        Conditions=[["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1000],
                    {"success_action_status": "201"}],
        ExpiresIn=300)
    r = post(p)
    assert r.status == 201, (r.status, r.data)
    assert b"<Key>uploads/hello.txt</Key>" in r.data and b"<ETag>" in r.data, r.data
    assert s3.get_object(Bucket=b, Key="uploads/hello.txt")["Body"].read() == b"hello form"
    print("post object ok")

    # Refused by its policy: a key outside the prefix, too large, too small.
    r = post(p, extra={"key": "elsewhere/x"})
    assert r.status == 403 and code(r) == "AccessDenied", (r.status, r.data)
    r = post(p, data=b"x" * 1001)
    assert r.status == 400 and code(r) == "EntityTooLarge", (r.status, r.data)
    r = post(p, data=b"")
    assert r.status == 400, (r.status, r.data)
    # Tampered with, or without its signature or policy.
    r = post(p, extra={"x-amz-signature": "0" * 64})
    assert r.status == 403 and code(r) == "SignatureDoesNotMatch", (r.status, r.data)
    r = post(p, drop=("policy", "x-amz-signature", "x-amz-credential", "x-amz-algorithm", "x-amz-date"))
    assert r.status == 403 and code(r) == "AccessDenied", (r.status, r.data)
    refused("NoSuchKey", lambda: s3.get_object(Bucket=b, Key="elsewhere/x"))
    print("post object refusals ok")

    # Expired: refused.
    old = s3.generate_presigned_post(b, "late", ExpiresIn=1)
    import time
    time.sleep(2)
    r = post(old)
    assert r.status == 403 and code(r) == "AccessDenied", (r.status, r.data)
    refused("NoSuchKey", lambda: s3.get_object(Bucket=b, Key="late"))

    # The default answer is 204; a redirect is 303 to it with the upload's
    # bucket, key and ETag.
    p = s3.generate_presigned_post(b, "plain", ExpiresIn=300)
    r = post(p)
    assert r.status == 204, (r.status, r.data)
    p = s3.generate_presigned_post(
        b, "redirected", Fields={"success_action_redirect": "https://app.example/done"},
        Conditions=[{"success_action_redirect": "https://app.example/done"}], ExpiresIn=300)
    r = post(p)
    assert r.status == 303, (r.status, r.data)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(r.headers["Location"]).query)
    assert q["bucket"] == [b] and q["key"] == ["redirected"] and "etag" in q, r.headers
    print("post object answers ok")

    # A public-read form upload is readable unsigned.
    p = s3.generate_presigned_post(b, "pub.txt", Fields={"acl": "public-read"},
                                   Conditions=[{"acl": "public-read"}], ExpiresIn=300)
    assert post(p, data=b"for all").status == 204
    with urllib.request.urlopen(f"{endpoint}/{b}/pub.txt") as got:
        assert got.read() == b"for all"

    # Hostile forms: the policy says private, the form smuggles public-read
    # past it, as a repeated field or as a part hidden behind a boundary
    # line with a trailing space. Both are refused and nothing is public.
    def raw_post(url, parts, filename="f.txt", data=b"smuggled"):
        bnd = "nimbusform"
        body = b""
        for name, value in parts:
            body += f'--{bnd}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
        body += f'--{bnd}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'.encode()
        body += data + f"\r\n--{bnd}--\r\n".encode()
        return http.request("POST", url, body=body, headers={"Content-Type": f"multipart/form-data; boundary={bnd}"},
                            redirect=False)

    def anon_status(key):
        try:
            with urllib.request.urlopen(f"{endpoint}/{b}/{key}") as got:
                return got.status
        except urllib.error.HTTPError as e:
            return e.code

    p = s3.generate_presigned_post(b, "twice", Fields={"acl": "private"}, Conditions=[{"acl": "private"}],
                                   ExpiresIn=300)
    signed = [(k, v) for k, v in p["fields"].items() if k != "acl"]
    r = raw_post(p["url"], [("acl", "public-read"), ("acl", "private")] + signed)
    assert r.status == 400 and code(r) == "MalformedPOSTRequest", (r.status, r.data)
    assert anon_status("twice") == 403
    p = s3.generate_presigned_post(b, "hidden", ExpiresIn=300)
    smuggled = 'v\r\n--nimbusform \r\nContent-Disposition: form-data; name="acl"\r\n\r\npublic-read'
    r = raw_post(p["url"], [("x-ignore-a", smuggled)] + list(p["fields"].items()))
    assert r.status in (400, 403), (r.status, r.data)
    assert anon_status("hidden") == 403, "the smuggled acl made it public"
    # A decoy part whose headers read like the file's (filename="file"),
    # the form sent in two pieces: whatever Nimbus kept of the first, the
    # acl it reads must be the one s3s checked, or the form is refused.
    import socket
    import time
    p = s3.generate_presigned_post(b, "decoy", Fields={"acl": "private"}, Conditions=[{"acl": "private"}],
                                   ExpiresIn=300)
    bnd = "nimbusform"
    signed = [(k, v) for k, v in p["fields"].items() if k != "acl"]

    def part(name, value, extra=""):
        return (f'--{bnd}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n{value}\r\n').encode()
    first = b"".join(part(k, v) for k, v in signed) + part("acl", "public-read") + part("x-ignore-a", "v", '; filename="file"')
    rest = part("acl", "private") + f'--{bnd}\r\nContent-Disposition: form-data; name="file"; filename="d.txt"\r\n\r\ndecoy\r\n--{bnd}--\r\n'.encode()
    host = endpoint.split("//")[1]
    conn = socket.create_connection(tuple([host.split(":")[0], int(host.split(":")[1])]))
    conn.sendall((f"POST /{b} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={bnd}\r\n"
                  f"Content-Length: {len(first) + len(rest)}\r\nConnection: close\r\n\r\n").encode() + first)
    time.sleep(0.3)
    conn.sendall(rest)
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    conn.close()
    assert anon_status("decoy") == 403, f"the decoy made it public: {answer[:200]}"
    print("post object hostile forms ok")

    # Another app's key signs no upload into this bucket.
    p = other.generate_presigned_post(b, "intruder", ExpiresIn=300)
    r = post(p)
    assert r.status == 403 and code(r) == "AccessDenied", (r.status, r.data)
    refused("NoSuchKey", lambda: s3.get_object(Bucket=b, Key="intruder"))
    print("post object isolation ok")
