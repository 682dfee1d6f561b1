#!/usr/bin/env bash
# A public S3 conformance suite against Nimbus: MinIO's functional tests of
# minio-py (the Python suite of MinIO's Mint), from the minio 7.2.20 sdist on
# PyPI, run test by test by bench/s3conformance.py, which prints each result
# and a tally per area (docs/S3.md quotes it).
#
#   bench/s3-conformance.sh
#
# Needs python3 with venv (scripts/test installs it). Takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mkdir -p target
work=$(mktemp -d "$root/target/s3-conformance.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

venv=$root/target/conformance-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check 'minio==7.2.20'
suite=$root/target/minio-7.2.20/tests/functional/tests.py
if [ ! -f "$suite" ]; then
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: 'minio==7.2.20' -d "$work/sdist"
  tar xzf "$work/sdist/minio-7.2.20.tar.gz" -C "$root/target" minio-7.2.20/tests/functional/tests.py
fi

cargo build --release -p nimbus >&2
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml >&2
nimbus=$root/target/release/nimbus
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
"$nimbus" up --listen 127.0.0.1:0 --s3-listen "127.0.0.1:$port" --data-dir "$work/nimbus" > "$work/up.log" 2>&1 &
for _ in $(seq 200); do grep -q "listening on" "$work/up.log" 2>/dev/null && break; sleep 0.05; done
mkdir -p "$work/app"
printf '[app]\nname = "conformance"\n[functions.hello]\ncomponent = "%s"\n' "$root/examples/target/wasm32-wasip2/release/hello.wasm" > "$work/app/nimbus.toml"
"$nimbus" deploy "$work/app" --data-dir "$work/nimbus" >&2
keys=$("$nimbus" keys create --app conformance --s3 --data-dir "$work/nimbus" 2>/dev/null)
key=$(echo "$keys" | awk '/^access/ {print $4}')
secret=$(echo "$keys" | awk '/^secret/ {print $4}')

"$venv/bin/python" bench/s3conformance.py "$suite" "127.0.0.1:$port" "$key" "$secret"
