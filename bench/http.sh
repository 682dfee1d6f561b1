#!/usr/bin/env bash
# Side-by-side HTTP benchmark: the same hello component served by Nimbus
# (full gateway: routing, admission, limits, invocation records) and by
# `wasmtime serve` (fresh instance per request, and with instance reuse),
# loaded by the same wrk, in one run. Also times deploy -> first response.
#
#   bench/http.sh [DURATION_SECONDS]        (default 10)
#   NIMBUS_BIN=path/to/nimbus bench/http.sh (measure another build)
#
# Needs: wrk (apt), wasmtime 48.0.8 (WASMTIME=path, else installed with
# `cargo install` into ~/.cache/nimbus-bench, ~30 min once). Two layouts:
# "pinned" (server on CPU 1, wrk on CPU 0: each server gets one core) and
# "shared" (no pinning: server and wrk share both cores). Every server runs
# with RUST_LIB_BACKTRACE=0 (Nimbus sets it for itself anyway).
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
root=$(pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
WASMTIME=${WASMTIME:-}
if [ -z "$WASMTIME" ]; then
  for c in "$HOME/.cache/nimbus-bench/bin/wasmtime" /work/cache/wasmtime-cli/bin/wasmtime "$(command -v wasmtime || true)"; do
    if [ -x "$c" ] && "$c" --version | grep -q '^wasmtime 48\.0\.8'; then WASMTIME=$c; break; fi
  done
fi
if [ -z "$WASMTIME" ]; then
  echo "installing wasmtime-cli 48.0.8 into ~/.cache/nimbus-bench (about 30 minutes, once)" >&2
  cargo install wasmtime-cli --version 48.0.8 --locked --root "$HOME/.cache/nimbus-bench" >&2
  WASMTIME=$HOME/.cache/nimbus-bench/bin/wasmtime
fi

rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
# NIMBUS_BIN=path measures that build of nimbus instead of this checkout's.
[ -n "${NIMBUS_BIN:-}" ] || cargo build --release -p nimbus >&2
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml >&2
nimbus=${NIMBUS_BIN:-$root/target/release/nimbus}
hello=$root/examples/target/wasm32-wasip2/release/hello.wasm

export RUST_LIB_BACKTRACE=0

wait_http() { for _ in $(seq 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "server at $1 did not answer" >&2; return 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

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

declare -A RPS P50 P99 RSS UNC COMP CACHED LOADED STATUS
run_case() { # name url pid
  local name=$layout-$1 url=$2 pid=$3
  curl -fs "$url" >/dev/null
  for c in 1 32; do
    read -r rps p50 p99 errs < <(load "$url" "$c")
    [ "$errs" = "0" ] || echo "warning: $name had $errs non-2xx responses at $c connections" >&2
    RPS[$name,$c]=$rps; P50[$name,$c]=$p50; P99[$name,$c]=$p99
  done
  RSS[$name]="$(rss_kb "$pid") KiB (peak $(hwm_kb "$pid") KiB)"
}

measure() {
# --- wasmtime serve, fresh instance per request (its default for WASIp2)
$server_cpu "$WASMTIME" serve -S cli=y --addr 127.0.0.1:18081 "$hello" >/dev/null 2>&1 &
pid=$!; wait_http http://127.0.0.1:18081/hello
run_case wasmtime "http://127.0.0.1:18081/hello" $pid
kill $pid; wait $pid 2>/dev/null || true

# --- wasmtime serve, instances reused (no isolation between requests)
$server_cpu "$WASMTIME" serve -S cli=y --max-instance-reuse-count 100000 --addr 127.0.0.1:18082 "$hello" >/dev/null 2>&1 &
pid=$!; wait_http http://127.0.0.1:18082/hello
run_case wasmtime-reuse "http://127.0.0.1:18082/hello" $pid
kill $pid; wait $pid 2>/dev/null || true

# --- Nimbus: deploy -> first response, uncached then cached compile
mkdir -p "$work/app"
cat > "$work/app/nimbus.toml" <<EOT
[app]
name = "bench"
[functions.hello]
component = "$hello"
memory_mb = 64
max_concurrency = 1000
[[triggers.http]]
route = "/hello"
methods = ["GET"]
function = "hello"
EOT
first_response_ms() { # data_dir cache_dir port -> ms from deploy start to first 200 (server already up)
  local t0 t1
  t0=$(date +%s%N)
  "$nimbus" deploy "$work/app" --data-dir "$1" > "$work/deploy.txt" 2>&1
  until curl -fs "http://127.0.0.1:$3/hello" >/dev/null; do sleep 0.001; done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}
$server_cpu "$nimbus" up --listen 127.0.0.1:18083 --data-dir "$work/$layout-d1" --cache-dir "$work/$layout-cache" >/dev/null 2>&1 &
pid=$!; wait_http http://127.0.0.1:18083/v1/health
UNC[$layout]=$(first_response_ms "$work/$layout-d1" "$work/$layout-cache" 18083)
COMP[$layout]=$(grep -o 'compiled in [0-9]* ms' "$work/deploy.txt" || echo "?")
kill $pid; wait $pid 2>/dev/null || true
$server_cpu "$nimbus" up --listen 127.0.0.1:18083 --data-dir "$work/$layout-d2" --cache-dir "$work/$layout-cache" >/dev/null 2>&1 &
pid=$!; wait_http http://127.0.0.1:18083/v1/health
CACHED[$layout]=$(first_response_ms "$work/$layout-d2" "$work/$layout-cache" 18083)
LOADED[$layout]=$(grep -o 'loaded ([a-z ]*)' "$work/deploy.txt" || echo "?")

# --- Nimbus: full gateway on the same server
run_case nimbus "http://127.0.0.1:18083/hello" $pid
STATUS[$layout]=$(curl -fs -H "Authorization: Bearer $(cat "$work/$layout-d2/admin-token")" http://127.0.0.1:18084/v1/status)
kill $pid; wait $pid 2>/dev/null || true

}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
for layout in pinned shared; do
  if [ $layout = pinned ]; then server_cpu="taskset -c 1"; load_cpu="taskset -c 0"; else server_cpu=""; load_cpu=""; fi
  measure
done

echo
echo "## HTTP hello, ${dur}s per cell ($(date -u +%F), $(nproc) cores)"
for layout in pinned shared; do
  echo
  echo "### $layout"
  echo
  echo "| server | conns | req/s | p50 | p99 | Nimbus ÷ this (req/s) |"
  echo "|---|---|---|---|---|---|"
  for name in nimbus wasmtime wasmtime-reuse; do
    for c in 1 32; do
      k=$layout-$name
      echo "| $name | $c | ${RPS[$k,$c]} | ${P50[$k,$c]} | ${P99[$k,$c]} | $(ratio "${RPS[$layout-nimbus,$c]}" "${RPS[$k,$c]}") |"
    done
  done
  echo
  echo "| server | RSS after load |"
  echo "|---|---|"
  for name in nimbus wasmtime wasmtime-reuse; do echo "| $name | ${RSS[$layout-$name]} |"; done
done
echo
for layout in pinned shared; do
  echo "$layout: deploy -> first response: uncached ${UNC[$layout]} ms (${COMP[$layout]}), cached ${CACHED[$layout]} ms (${LOADED[$layout]}); Nimbus status after load: ${STATUS[$layout]}"
done
