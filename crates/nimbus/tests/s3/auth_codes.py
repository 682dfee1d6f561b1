"""Authentication failures answered with S3's status and code, one by one
(AWS's documented answers), by requests signed with botocore's own SigV4
signer and then broken, sent over plain HTTP. Run by boto3_suite.py."""
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def run(s3, endpoint, key, secret):
    b = "auth-codes"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    creds = Credentials(key, secret)
    url = f"{endpoint}/{b}/k"

    def send(method, target, headers, data=None):
        req = urllib.request.Request(target, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, ""
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            return e.code, body.split("<Code>")[1].split("</Code>")[0] if "<Code>" in body else body

    def signed(c=creds, drop=(), data=None, method="GET", target=url, sha="UNSIGNED-PAYLOAD"):
        r = AWSRequest(method=method, url=target, data=data, headers={"x-amz-content-sha256": sha})
        SigV4Auth(c, "s3", "us-east-1").add_auth(r)
        h = {k: v for k, v in r.headers.items() if k.lower() not in drop}
        return send(method, target, h, data)

    presigned = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=60)
    base = f"{url}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={key}%2F20261206%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261206T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
    cases = [
        ("a signed request", signed(), (200, "")),
        ("an unknown key", signed(c=Credentials("NKNOSUCHKEY000000000", "x" * 40)), (403, "InvalidAccessKeyId")),
        ("a wrong secret", signed(c=Credentials(key, "y" * 40)), (403, "SignatureDoesNotMatch")),
        ("no signature, private object", send("GET", url, {}), (403, "AccessDenied")),
        ("another scheme", send("GET", url, {"Authorization": "Bearer xyz"}), (400, "InvalidArgument")),
        ("a SigV4 header without Credential",
         send("GET", url, {"Authorization": "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + "0" * 64,
                           "x-amz-date": "20261206T000000Z", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}),
         (400, "AuthorizationHeaderMalformed")),
        ("no x-amz-date", signed(drop=("x-amz-date",)), (403, "AccessDenied")),
        ("no x-amz-content-sha256", signed(drop=("x-amz-content-sha256",)), (400, "InvalidRequest")),
        ("a payload hash that does not match",
         signed(method="PUT", target=f"{endpoint}/{b}/k2", data=b"hello", sha="0" * 64),
         (400, "XAmzContentSHA256Mismatch")),
        ("a presigned URL with a wrong signature", send("GET", presigned[:-64] + "0" * 64, {}),
         (403, "SignatureDoesNotMatch")),
        ("a presigned URL with a short signature", send("GET", presigned[:-1], {}), (403, "SignatureDoesNotMatch")),
        ("a presigned URL without its signature", send("GET", base, {}), (400, "AuthorizationQueryParametersError")),
        ("a presigned URL of another algorithm",
         send("GET", base.replace("HMAC-SHA256", "HMAC-SHA512") + "&X-Amz-Signature=" + "0" * 64, {}),
         (400, "AuthorizationQueryParametersError")),
        ("a presigned URL with a garbled credential",
         send("GET", base.replace(f"{key}%2F", "garbage%2F%2F") + "&X-Amz-Signature=" + "0" * 64, {}),
         (400, "AuthorizationQueryParametersError")),
        ("a presigned URL valid for more than a week",
         send("GET", base.replace("X-Amz-Expires=60", "X-Amz-Expires=604801") + "&X-Amz-Signature=" + "0" * 64, {}),
         (400, "AuthorizationQueryParametersError")),
    ]
    for name, got, want in cases:
        assert got == want, f"{name}: answered {got}, S3 answers {want}"
    print("auth codes ok")
