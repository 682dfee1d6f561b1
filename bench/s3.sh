#!/usr/bin/env bash
# S3 benchmark, side by side in one run: Nimbus's S3 endpoint vs s3s-fs (the
# s3s project's own filesystem server), the same Python/boto3 load generator
# (bench/s3load.py: 2 processes x 8 threads), PUT then GET of 4 KiB and
# 1 MiB objects; then the peak resident memory of each server while a 1 GiB
# object is uploaded (multipart, 16 MiB parts).
#
#   bench/s3.sh [SECONDS]        (default 10 per phase)
#
# Needs: s3s-fs 0.14.1 (S3S_FS=path, else installed with `cargo install
# s3s-fs --features binary` into ~/.cache/nimbus-bench), boto3 (target/pyenv,
# made by scripts/test).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
root=$(pwd)
mkdir -p target
work=$(mktemp -d "$root/target/bench-s3.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

S3S_FS=${S3S_FS:-}
if [ -z "$S3S_FS" ]; then
  for c in "$HOME/.cache/nimbus-bench/bin/s3s-fs" /work/cache/s3s-fs/bin/s3s-fs "$(command -v s3s-fs || true)"; do
    [ -x "$c" ] && { S3S_FS=$c; break; }
  done
fi
if [ -z "$S3S_FS" ]; then
  cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$HOME/.cache/nimbus-bench" >&2
  S3S_FS=$HOME/.cache/nimbus-bench/bin/s3s-fs
fi
py=$root/target/pyenv/bin/python
[ -x "$py" ] || { python3 -m venv target/pyenv && target/pyenv/bin/pip install -q boto3; }
cargo build --release -p nimbus >&2
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml >&2
nimbus=$root/target/release/nimbus
export RUST_LIB_BACKTRACE=0

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Nimbus
nport=$(free_port)
"$nimbus" up --listen 127.0.0.1:0 --s3-listen "127.0.0.1:$nport" --data-dir "$work/nimbus" > "$work/up.log" 2>&1 &
npid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/up.log" 2>/dev/null && break; sleep 0.05; done
mkdir -p "$work/app"
printf '[app]\nname = "bench"\n[functions.hello]\ncomponent = "%s"\n' "$root/examples/target/wasm32-wasip2/release/hello.wasm" > "$work/app/nimbus.toml"
"$nimbus" deploy "$work/app" --data-dir "$work/nimbus" >&2
keys=$("$nimbus" keys create --app bench --s3 --data-dir "$work/nimbus" 2>/dev/null)
nkey=$(echo "$keys" | awk '/^access/ {print $4}')
nsec=$(echo "$keys" | awk '/^secret/ {print $4}')

# s3s-fs
sport=$(free_port)
mkdir -p "$work/s3sfs"
"$S3S_FS" --host 127.0.0.1 --port "$sport" --access-key BENCHKEY --secret-key BENCHSECRET "$work/s3sfs" > "$work/s3sfs.log" 2>&1 &
spid=$!
sleep 0.5

run() { "$py" bench/s3load.py "$1" "$2" "$3" "$4" "$5" "$secs" 2 8; }
n4=$(run "http://127.0.0.1:$nport" "$nkey" "$nsec" small 4096)
s4=$(run "http://127.0.0.1:$sport" BENCHKEY BENCHSECRET small 4096)
n1=$(run "http://127.0.0.1:$nport" "$nkey" "$nsec" large 1048576)
s1=$(run "http://127.0.0.1:$sport" BENCHKEY BENCHSECRET large 1048576)

big=$work/1g.bin
python3 -c "open('$big','wb').truncate(1<<30)"
upload() {
  "$py" - "$1" "$2" "$3" "$big" <<'PY'
import sys, boto3
from botocore.config import Config
from boto3.s3.transfer import TransferConfig
url, k, s, path = sys.argv[1:5]
c = boto3.client("s3", endpoint_url=url, aws_access_key_id=k, aws_secret_access_key=s, region_name="us-east-1",
                 config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
try: c.create_bucket(Bucket="big")
except Exception: pass
c.upload_file(path, "big", "one-gib", Config=TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4))
PY
}
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
nbefore=$(hwm $npid); upload "http://127.0.0.1:$nport" "$nkey" "$nsec"; nafter=$(hwm $npid)
sbefore=$(hwm $spid); upload "http://127.0.0.1:$sport" BENCHKEY BENCHSECRET; safter=$(hwm $spid)

python3 - "$n4" "$s4" "$n1" "$s1" "$nbefore" "$nafter" "$sbefore" "$safter" "$secs" <<'PY'
import sys
n4, s4, n1, s1 = (list(map(float, a.split())) for a in sys.argv[1:5])
nb, na, sb, sa = map(int, sys.argv[5:9])
print(f"{sys.argv[9]}s per phase, boto3 load: 2 processes x 8 threads")
for name, n, s in (("4 KiB", n4, s4), ("1 MiB", n1, s1)):
    print(f"{name} PUT  nimbus {n[0]:>7.0f} ops/s  s3s-fs {s[0]:>7.0f} ops/s  ratio {n[0]/s[0]:.2f}")
    print(f"{name} GET  nimbus {n[1]:>7.0f} ops/s  s3s-fs {s[1]:>7.0f} ops/s  ratio {n[1]/s[1]:.2f}")
print(f"peak RSS (VmHWM) during a 1 GiB multipart upload: nimbus {na/1024:.1f} MiB (before {nb/1024:.1f}), s3s-fs {sa/1024:.1f} MiB (before {sb/1024:.1f})")
PY
