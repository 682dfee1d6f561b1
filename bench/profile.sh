#!/usr/bin/env bash
# Where a fresh-instance request's time goes: `nimbus up` serving one hello
# (bench/guests: py or js, or a .wasm path) to one wrk connection (server on
# CPU 1, wrk on CPU 0), profiled with `perf record --call-graph dwarf`, then
# its page faults per request counted with `perf stat`.
#
#   bench/profile.sh [py|js|path.wasm] [SECONDS]     (default: py, 4)
#   NIMBUS_ARGS="--keep-resident-kb 65536" bench/profile.sh py
#
# Needs perf (apt: linux-perf) and wrk. Prints the top symbols (inclusive)
# and the faults per request; perf.data stays in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
which=${1:-py}; secs=${2:-4}
case "$which" in py|js) wasm=$root/bench/guests/dist/hello-$which.wasm ;; *) wasm=$(realpath "$which") ;; esac
. bench/lib.sh
need perf linux-perf
need wrk wrk
[ -n "${NIMBUS_BIN:-}" ] || cargo build --release -p nimbus >&2
case "$which" in py|js) [ -f "$wasm" ] || bench/guests/build.sh >&2 ;; esac
nimbus=${NIMBUS_BIN:-$root/target/release/nimbus}
w=$(mktemp -d); mkdir -p "$w/app"
cat > "$w/app/nimbus.toml" <<EOT
[app]
name = "bench"
[functions.hello]
component = "$wasm"
memory_mb = 64
max_concurrency = 1000
[[triggers.http]]
route = "/hello"
methods = ["GET"]
function = "hello"
EOT
port=18095
# shellcheck disable=SC2086
taskset -c 1 "$nimbus" up ${NIMBUS_ARGS:-} --listen 127.0.0.1:$port --data-dir "$w/d" --cache-dir "$w/cache" >"$w/up.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -fs http://127.0.0.1:$port/v1/health >/dev/null; do sleep 0.1; done
"$nimbus" deploy "$w/app" --data-dir "$w/d" >/dev/null
until curl -fs http://127.0.0.1:$port/hello >/dev/null; do sleep 0.05; done
taskset -c 0 wrk -t1 -c1 -d3s http://127.0.0.1:$port/hello >/dev/null   # warm-up
taskset -c 0 wrk -t1 -c1 -d$((secs + 3))s http://127.0.0.1:$port/hello > "$w/wrk-perf.txt" &
load=$!
sleep 1
perf record -F 499 --call-graph dwarf,16384 -p $pid -o "$w/perf.data" -- sleep "$secs" >/dev/null 2>&1
wait $load
perf stat -e page-faults -p $pid -o "$w/stat.txt" -- sleep 5 &
stat=$!
taskset -c 0 wrk -t1 -c1 -d5s http://127.0.0.1:$port/hello > "$w/wrk-stat.txt"
wait $stat
rps=$(awk '/Requests\/sec/ {print $2}' "$w/wrk-stat.txt")
faults=$(awk '/page-faults/ {gsub(",", "", $1); print $1}' "$w/stat.txt")
echo "req/s while profiled: $(awk '/Requests\/sec/ {print $2}' "$w/wrk-perf.txt"); while counted: $rps"
echo "page faults per request: $(python3 -c "print(round($faults / ($rps * 5), 1))")"
perf report -i "$w/perf.data" --children --sort sym --percent-limit 3 2>/dev/null | grep -E '^ +[0-9]' | cut -c1-160 | head -40
echo "perf.data: $w/perf.data"
