#!/usr/bin/env bash
# Key-value increments from a WASI 0.3 guest under instance reuse, through
# the synchronous `wasi:keyvalue` binding (the call holds the instance) and
# through `nimbus:kv` (an async host call: the instance's other requests run
# while it waits), side by side in one run. The `examples/wasi3` guest:
# `incr` (wasi:keyvalue) and `incr3` (nimbus:kv), each on its own key, for
# a function reusing instances (16 requests at once each) and one with a
# fresh instance per request.
#
#   bench/kv3.sh [DURATION_SECONDS] [CONNECTIONS]   (default 10, 32)
#
# Needs: wrk (apt; installed if missing).
set -euo pipefail
dur=${1:-10}
conns=${2:-32}
source "$(dirname "$0")/lib.sh"
need wrk wrk
bench_init kv3

mkdir -p "$work/app"
cat > "$work/app/nimbus.toml" <<TOML
[app]
name = "bench"

[kv.counters]

[functions.reuse]
component = "$guests/wasi3.wasm"
kv = ["counters"]
max_concurrency = 1000
instance_requests = 1000000
instance_concurrency = 16

[functions.fresh]
component = "$guests/wasi3.wasm"
kv = ["counters"]
max_concurrency = 1000

[[triggers.http]]
route = "/reuse/{action}"
function = "reuse"

[[triggers.http]]
route = "/fresh/{action}"
function = "fresh"
TOML

nimbus_up "$work/d"
"$nimbus" deploy "$work/app" --data-dir "$work/d" >&2

# Prints: req/s p50 p99 non-2xx
load() {
  wrk -t2 -c"$conns" -d"${dur}s" --latency "$url$1" > "$work/wrk.txt"
  awk '/Requests\/sec/ {r=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {e=$5} END {print r, p50, p99, (e==""?0:e)}' "$work/wrk.txt"
}

echo "## KV increments from a WASI 0.3 guest, ${dur}s per cell, $conns connections ($(date -u +%F), $(nproc) cores)"
echo
echo "| function | binding | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
declare -A RPS
for round in 1 2; do
  for fn in reuse fresh; do
    for action in incr incr3; do
      read -r rps p50 p99 errs < <(load "/$fn/$action?key=$fn-$action")
      RPS[$fn,$action,$round]=$rps
      binding=$([ "$action" = incr ] && echo "wasi:keyvalue (sync)" || echo "nimbus:kv (async)")
      echo "| $fn (round $round) | $binding | $rps | $p50 | $p99 | $errs |"
    done
  done
done
echo
for round in 1 2; do
  for fn in reuse fresh; do
    awk -v a="${RPS[$fn,incr3,$round]}" -v b="${RPS[$fn,incr,$round]}" -v f="$fn" -v r="$round" \
      'BEGIN { printf "%s, round %s: nimbus:kv ÷ wasi:keyvalue = %.2f\n", f, r, a / b }'
  done
done
