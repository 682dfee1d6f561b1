#!/usr/bin/env bash
# A node's own cold start (scale to zero at the process level): from
# starting `nimbus up` on an existing data dir with the hello app deployed
# (its native code in the compile cache) to the first 200 from GET /hello,
# side by side with `wasmtime serve` on the same component precompiled
# (`wasmtime compile`, served with --allow-precompiled: its fastest start).
# Rounds alternate the servers; bench/coldstart.py does the timing.
#
#   bench/coldstart.sh [ROUNDS]                  (default 20)
#   COMPARE=path/to/other/nimbus bench/coldstart.sh   (a second build, same run)
#   NIMBUS_BIN=path/to/nimbus bench/coldstart.sh      (measure another build)
#
# Needs a wasmtime CLI (WASMTIME=path, else bench/lib.sh fetches 49.0.4).
set -euo pipefail
rounds=${1:-20}
. "$(dirname "$0")/lib.sh"
bench_init coldstart
wasmtime_cli
hello_app 100
"$nimbus" up --listen 127.0.0.1:18190 --data-dir "$work/d" --cache-dir "$work/cache" > "$work/first.log" 2>&1 &
first=$!
until curl -fs http://127.0.0.1:18190/v1/health >/dev/null 2>&1; do sleep 0.05; done
"$nimbus" deploy "$work/app" --data-dir "$work/d" >&2
curl -fs http://127.0.0.1:18190/hello >/dev/null
kill $first; wait $first 2>/dev/null || true
"$WASMTIME" compile -S cli=y "$guests/hello.wasm" -o "$work/hello.cwasm"

up() { echo "$1 up --listen 127.0.0.1:18190 --data-dir $work/d --cache-dir $work/cache"; }
servers=("nimbus=http://127.0.0.1:18190/hello=$(up "$nimbus")")
[ -z "${COMPARE:-}" ] || servers+=("compare=http://127.0.0.1:18190/hello=$(up "$COMPARE")")
servers+=("wasmtime=http://127.0.0.1:18197/=$WASMTIME serve -S cli=y --allow-precompiled --addr 127.0.0.1:18197 $work/hello.cwasm")
echo "## Process start -> first 200, $rounds rounds ($(date -u +%F), $(nproc) cores, $("$WASMTIME" --version))"
python3 bench/coldstart.py "$rounds" "${servers[@]}"
