"""S3 load generator for bench/s3.sh: the same client against any endpoint.

usage: s3load.py ENDPOINT KEY SECRET BUCKET OBJECT_BYTES SECONDS PROCS THREADS
Runs PROCS processes x THREADS threads, each PUTting then GETting objects of
OBJECT_BYTES for SECONDS per phase; prints "put_ops/s get_ops/s".
"""
import multiprocessing as mp
import sys
import threading
import time

import boto3
from botocore.config import Config


def client(endpoint, key, secret):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1",
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      max_pool_connections=64, retries={"max_attempts": 0}))


def worker(args, phase, q):
    endpoint, key, secret, bucket, size, seconds, threads, pid = args
    c = client(endpoint, key, secret)
    body = b"x" * size
    counts = [0] * threads

    def run(t):
        deadline = time.time() + seconds
        i = 0
        while time.time() < deadline:
            # GETs read back the first objects each thread PUT.
            k = f"p{pid}/t{t}/{i % (200 if phase == 'put' else 10)}"
            if phase == "put":
                c.put_object(Bucket=bucket, Key=k, Body=body)
            else:
                c.get_object(Bucket=bucket, Key=k)["Body"].read()
            i += 1
            counts[t] += 1

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put(sum(counts))


def phase(name, base, procs, seconds):
    q = mp.Queue()
    ps = [mp.Process(target=worker, args=(base + (p,), name, q)) for p in range(procs)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total / seconds


if __name__ == "__main__":
    endpoint, key, secret, bucket, size, seconds, procs, threads = sys.argv[1:9]
    size, seconds, procs, threads = int(size), float(seconds), int(procs), int(threads)
    c = client(endpoint, key, secret)
    try:
        c.create_bucket(Bucket=bucket)
    except Exception:
        pass
    base = (endpoint, key, secret, bucket, size, seconds, threads)
    put = phase("put", base, procs, seconds)
    get = phase("get", base, procs, seconds)
    print(f"{put:.0f} {get:.0f}")
