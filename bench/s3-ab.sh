#!/usr/bin/env bash
# Two Nimbus builds side by side on the S3 endpoint, in one run: the same
# boto3 load (bench/s3load.py, 2 processes x 8 threads, PUT then GET of
# 4 KiB and 1 MiB objects) against each, alternating which goes first,
# ROUNDS times (use an even number); then the
# second build again on a bucket with versioning enabled (every PUT keeps
# the version it replaces). Prints the median ops/s of each and the ratios.
#
#   bench/s3-ab.sh BEFORE_BINARY AFTER_BINARY [SECONDS] [ROUNDS]
#
# e.g. git worktree add /tmp/before 780d9cc && (cd /tmp/before && cargo build
# --release -p nimbus) and the current target/release/nimbus. Needs boto3 in
# target/pyenv (made by scripts/test) and the example guests built.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
a=$1 b=$2 secs=${3:-5} rounds=${4:-2}
work=$(mktemp -d "$root/target/bench-s3ab.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
py=$root/target/pyenv/bin/python
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # NAME BINARY -> prints "URL KEY SECRET"
  local dir=$work/$1 port
  port=$(free_port)
  mkdir -p "$dir/app"
  "$2" up --listen 127.0.0.1:0 --s3-listen "127.0.0.1:$port" --data-dir "$dir/data" > "$dir/up.log" 2>&1 &
  for _ in $(seq 200); do grep -q "listening on" "$dir/up.log" 2>/dev/null && break; sleep 0.05; done
  printf '[app]\nname = "bench"\n[functions.hello]\ncomponent = "%s"\n' "$root/examples/target/wasm32-wasip2/release/hello.wasm" > "$dir/app/nimbus.toml"
  "$2" deploy "$dir/app" --data-dir "$dir/data" >/dev/null 2>&1
  local keys
  keys=$("$2" keys create --app bench --s3 --data-dir "$dir/data" 2>/dev/null)
  echo "http://127.0.0.1:$port $(echo "$keys" | awk '/^access/ {print $4}') $(echo "$keys" | awk '/^secret/ {print $4}')"
}
read -r aurl akey asec <<<"$(start a "$a")"
read -r burl bkey bsec <<<"$(start b "$b")"
"$py" - "$burl" "$bkey" "$bsec" <<'PY'
import sys, boto3
from botocore.config import Config
url, k, s = sys.argv[1:4]
c = boto3.client("s3", endpoint_url=url, aws_access_key_id=k, aws_secret_access_key=s, region_name="us-east-1",
                 config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
for b in ["vsmall", "vlarge"]:
    c.create_bucket(Bucket=b)
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
PY
load() { "$py" bench/s3load.py "$1" "$2" "$3" "$4" "$5" "$secs" 2 8; }
out=$work/results
# The slot that goes first measures faster PUTs whatever it runs (an A/A
# run showed 0.88-0.92 for the second): the order alternates each round.
for r in $(seq "$rounds"); do
  for size in small large; do
    bytes=4096; [ "$size" = large ] && bytes=1048576
    if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
    for who in $order; do
      if [ "$who" = a ]; then
        echo "a $size $(load "$aurl" "$akey" "$asec" "$size" "$bytes")" >> "$out"
      else
        echo "b $size $(load "$burl" "$bkey" "$bsec" "$size" "$bytes")" >> "$out"
      fi
    done
    echo "v $size $(load "$burl" "$bkey" "$bsec" "v$size" "$bytes")" >> "$out"
  done
done
python3 - "$out" "$secs" "$rounds" <<'PY'
import statistics, sys, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, size, put, get = line.split()
    runs[(who, size)].append((float(put), float(get)))
med = {k: (statistics.median(p for p, _ in v), statistics.median(g for _, g in v)) for k, v in runs.items()}
print(f"{sys.argv[2]} s per phase, {sys.argv[3]} rounds, medians; boto3 load: 2 processes x 8 threads")
print(f"{'':14} {'before':>9} {'after':>9} {'after/before':>12} {'after, versioned':>16} {'versioned/after':>15}")
for size, name in (("small", "4 KiB"), ("large", "1 MiB")):
    for i, op in enumerate(("PUT", "GET")):
        a, b, v = med[("a", size)][i], med[("b", size)][i], med[("v", size)][i]
        print(f"{name} {op:8} {a:9.0f} {b:9.0f} {b/a:12.2f} {v:16.0f} {v/b:15.2f}")
PY
