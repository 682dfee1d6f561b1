#!/usr/bin/env bash
# One, two and three Nimbus nodes on one PostgreSQL, beside one node on the
# embedded SQLite, on this machine: hello requests per second, and async
# events per second (accepted -> delivered -> settled).
#
#   bench/cluster.sh [DURATION_SECONDS] [CONNECTIONS]     (default 10 48)
#
# Needs: wrk and PostgreSQL (apt; scripts/postgres starts a private server
# on loopback, fsync on, synchronous_commit off: the durability class of
# SQLite's WAL + synchronous=NORMAL that the embedded default uses).
#
# Every node, the database and the load generator share the same cores:
# adding nodes here adds processes, not hardware. The load is split evenly
# over the nodes (one wrk per node, CONNECTIONS in all), as a load balancer
# would.
set -euo pipefail
dur=${1:-10}
conns=${2:-48}
source "$(dirname "$0")/lib.sh"
need wrk wrk
bench_init cluster

pg_port=25440
pg_dir=/tmp/nimbus-bench-pg-$pg_port
./scripts/postgres stop "$pg_dir"
rm -rf "$pg_dir"
admin=$(NIMBUS_PG_DURABLE=1 ./scripts/postgres start "$pg_dir" "$pg_port")
trap 'kill $(jobs -p) 2>/dev/null || true; ./scripts/postgres stop "$pg_dir"; rm -rf "$work" "$pg_dir"' EXIT

hello_app 64
async_lua

# load PHASE URL...: one wrk per URL at once, CONNECTIONS split among them;
# prints the summed requests/s and the requests sent.
load() {
  local script=$1
  shift
  local n=$#
  local c=$(( conns / n ))
  local i=0 wrks=()
  for u in "$@"; do
    if [ -n "$script" ]; then
      wrk -t1 -c"$c" -d"${dur}s" -s "$script" "$u/hello" > "$work/wrk.$i" &
    else
      wrk -t1 -c"$c" -d"${dur}s" "$u/hello" > "$work/wrk.$i" &
    fi
    wrks+=($!)
    i=$(( i + 1 ))
  done
  wait "${wrks[@]}"
  local rps=0 sent=0 errs=0
  for j in $(seq 0 $(( n - 1 ))); do
    rps=$(python3 -c "print($rps + $(awk '/Requests\/sec/ {print $2}' "$work/wrk.$j"))")
    sent=$(( sent + $(awk '/requests in/ {print $1}' "$work/wrk.$j") ))
    errs=$(( errs + $(awk '/Non-2xx/ {print $5}' "$work/wrk.$j" | grep . || echo 0) ))
  done
  echo "$rps $sent $errs"
}

depth() { async_depth "$1" "$token"; } # cluster-wide: the queue is in the database

# scenario NAME NODES [--database URL]: starts the nodes, deploys, measures.
scenario() {
  local name=$1 nodes=$2
  shift 2
  local urls=() pids=() shared="$work/$name-shared"
  for i in $(seq 1 "$nodes"); do
    nimbus_up "$work/$name-$i" --shared-dir "$shared" "$@"
    urls+=("$url")
    pids+=("$pid")
  done
  token=$(cat "$shared/admin-token")
  "$nimbus" deploy "$work/app" --data-dir "$work/$name-1" >&2
  for u in "${urls[@]}"; do
    until curl -fs "$u/hello" >/dev/null; do sleep 0.05; done
  done
  # Warm-up: compile caches, connection pools.
  local saved=$dur
  dur=2
  load "" "${urls[@]}" > /dev/null
  dur=$saved
  load "" "${urls[@]}" > "$work/hello.sum"
  read -r rps _ herr < "$work/hello.sum"
  local t0 tl t1 left
  t0=$(date +%s.%N)
  load "$work/async.lua" "${urls[@]}" > "$work/async.sum"
  read -r _ sent aerr < "$work/async.sum"
  tl=$(date +%s.%N)
  left=$(depth "${urls[0]}")
  while [ "$(depth "${urls[0]}")" != "0" ]; do sleep 0.1; done
  t1=$(date +%s.%N)
  python3 - "$name" "$nodes" "$rps" "$herr" "$sent" "$aerr" "$t0" "$tl" "$t1" "$left" <<'PY'
import sys
name, nodes, rps, herr, sent, aerr, t0, tl, t1, left = sys.argv[1:]
t0, tl, t1 = float(t0), float(tl), float(t1)
events = int(sent) / (t1 - t0)
print(f"{name:<14} nodes {nodes}  hello {float(rps):>8.0f} req/s (non-2xx {herr})  "
      f"events {events:>7.0f}/s ({sent} accepted, non-2xx {aerr}; {left} unfinished when sending stopped, drained in {t1-tl:.1f}s)")
PY
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}

echo "duration ${dur}s per phase, $conns connections in all"
scenario sqlite 1
for n in 1 2 3; do
  db="nimbus_bench_$n"
  psql -q "$admin" -c "CREATE DATABASE $db"
  scenario "postgres-$n" "$n" --database "${admin%/*}/$db" --db-connections 16
done
