"""Bucket CORS through boto3 and plain HTTP (urllib3, as a browser sends
them): the configuration and S3's checks on it, preflights allowed and
refused, CORS headers on answers to requests with an Origin, tenant
isolation. Run by boto3_suite.py."""
import urllib3


def run(s3, other, refused, endpoint):
    b = "cors-site"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="pub.txt", Body=b"shared", ACL="public-read")
    http = urllib3.PoolManager()

    def options(origin, method, headers=None, key="pub.txt"):
        h = {"Origin": origin, "Access-Control-Request-Method": method}
        if headers:
            h["Access-Control-Request-Headers"] = headers
        return http.request("OPTIONS", f"{endpoint}/{b}/{key}", headers=h)

    # No configuration: preflights refused.
    refused("NoSuchCORSConfiguration", lambda: s3.get_bucket_cors(Bucket=b))
    r = options("https://app.example", "GET")
    assert r.status == 403 and b"CORS is not enabled" in r.data, (r.status, r.data)

    rules = [
        {"ID": "uploads", "AllowedOrigins": ["https://*.example"], "AllowedMethods": ["PUT", "POST"],
         "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"]},
    ]
    s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket=b)["CORSRules"]
    assert got == rules, got
    for bad in [[{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}],
                [{"AllowedOrigins": ["https://*.*.example"], "AllowedMethods": ["GET"]}]]:
        refused("InvalidRequest", lambda: s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": bad}))
    refused("MalformedXML", lambda: s3.put_bucket_cors(
        Bucket=b, CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}] * 101}))
    # Every preflight reads the rules: they are held to S3's 64 KB.
    huge = [{"AllowedOrigins": ["https://" + "a" * 1000 + str(i) for i in range(70)], "AllowedMethods": ["GET"]}]
    refused("MalformedXML", lambda: s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": huge}))
    print("cors configuration ok")

    # A preflight the first rule allows.
    r = options("https://app.example", "PUT", "Content-Type, X-Amz-Date")
    assert r.status == 200, (r.status, r.data)
    h = r.headers
    assert h["Access-Control-Allow-Origin"] == "https://app.example", h
    assert h["Access-Control-Allow-Methods"] == "PUT, POST", h
    assert h["Access-Control-Allow-Headers"] == "content-type, x-amz-date", h
    assert h["Access-Control-Expose-Headers"] == "ETag" and h["Access-Control-Max-Age"] == "600", h
    assert h["Access-Control-Allow-Credentials"] == "true" and "Origin" in h["Vary"], h
    # Refused: a header, an origin or a method no rule allows.
    for args in [("https://app.example", "PUT", "authorization"),
                 ("https://evil.net", "PUT", None),
                 ("https://app.example", "DELETE", None)]:
        r = options(*args)
        assert r.status == 403 and b"not allowed" in r.data, (args, r.status, r.data)
    r = http.request("OPTIONS", f"{endpoint}/{b}/pub.txt")
    assert r.status == 400, (r.status, r.data)
    # Any origin may GET: the wildcard rule answers "*".
    r = options("https://anyone.net", "GET")
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*", r.headers
    print("cors preflight ok")

    # The answer to a request with an Origin carries the matching rule's
    # headers; without an Origin, or from an origin no rule allows for the
    # method, none.
    r = http.request("GET", f"{endpoint}/{b}/pub.txt", headers={"Origin": "https://anyone.net"})
    assert r.status == 200 and r.data == b"shared", r.status
    assert r.headers["Access-Control-Allow-Origin"] == "*", r.headers
    r = http.request("GET", f"{endpoint}/{b}/pub.txt")
    assert "Access-Control-Allow-Origin" not in r.headers, r.headers
    r = http.request("DELETE", f"{endpoint}/{b}/pub.txt", headers={"Origin": "https://app.example"})
    assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers, (r.status, r.headers)
    print("cors answers ok")

    # Another app reaches none of it; deleted, preflights are refused again.
    for f in [lambda: other.get_bucket_cors(Bucket=b),
              lambda: other.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": rules}),
              lambda: other.delete_bucket_cors(Bucket=b)]:
        refused("AccessDenied", f)
    s3.delete_bucket_cors(Bucket=b)
    refused("NoSuchCORSConfiguration", lambda: s3.get_bucket_cors(Bucket=b))
    assert options("https://anyone.net", "GET").status == 403
    print("cors isolation ok")
