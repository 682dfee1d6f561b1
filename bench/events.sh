#!/usr/bin/env bash
# Events throughput: async invocations of the hello component, from accepted
# (202, stored durably in SQLite) to processed (delivered to the function as
# a CloudEvent, acknowledged, settled), side by side with synchronous
# invocations of the same function in the same run.
#
#   bench/events.sh [DURATION_SECONDS] [CONNECTIONS]     (default 10 32)
#
# Needs: wrk (apt). The data dir is on disk (under target/), WAL mode,
# synchronous=NORMAL: a process crash loses nothing committed.
#
# Phases:
#   sync   wrk POST /hello                          -> req/s answered 200
#   async  wrk POST /hello, Prefer: respond-async   -> accepted/s (202), then
#          wait until the async channel is empty: events/s = accepted / (time
#          from the first send to the last event settled)
set -euo pipefail
dur=${1:-10}
conns=${2:-32}
source "$(dirname "$0")/lib.sh"
need wrk wrk
bench_init events

nimbus_up "$work/data"
token=$(cat "$work/data/admin-token")
hello_app 64
"$nimbus" deploy "$work/app" --data-dir "$work/data" >&2

depth() { async_depth "$control" "$token"; }

async_lua
cat > "$work/sync.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "{\"event\":\"bench\"}"
wrk.headers["Content-Type"] = "application/json"
LUA

echo "warm-up" >&2
wrk -t2 -c"$conns" -d2s -s "$work/sync.lua" "$url/hello" > /dev/null

wrk -t2 -c"$conns" -d"${dur}s" -s "$work/sync.lua" "$url/hello" > "$work/sync.txt"
sync_rps=$(awk '/Requests\/sec/ {print $2}' "$work/sync.txt")
sync_err=$(awk '/Non-2xx/ {print $5}' "$work/sync.txt")

t0=$(date +%s.%N)
wrk -t2 -c"$conns" -d"${dur}s" --latency -s "$work/async.lua" "$url/hello" > "$work/async.txt"
t_load=$(date +%s.%N)
left_at_end=$(depth)
while [ "$(depth)" != "0" ]; do sleep 0.05; done
t1=$(date +%s.%N)
accepted=$(awk '/requests in/ {print $1}' "$work/async.txt")
async_err=$(awk '/Non-2xx/ {print $5}' "$work/async.txt")
accept_rps=$(awk '/Requests\/sec/ {print $2}' "$work/async.txt")
p50=$(awk '$1=="50%" {print $2}' "$work/async.txt")
p99=$(awk '$1=="99%" {print $2}' "$work/async.txt")
succeeded=$(curl -fs -H "authorization: Bearer $token" "$control/v1/status" >/dev/null; echo ok)

python3 - "$sync_rps" "$accepted" "$t0" "$t_load" "$t1" "$left_at_end" "$accept_rps" "$p50" "$p99" "${sync_err:-0}" "${async_err:-0}" "$conns" "$dur" <<'PY'
import sys
sync_rps, accepted, t0, tl, t1, left, acc_rps, p50, p99, serr, aerr, conns, dur = sys.argv[1:]
accepted = int(accepted); t0, tl, t1 = float(t0), float(tl), float(t1)
total = t1 - t0
events = accepted / total
print(f"connections {conns}, {dur}s of load per phase")
print(f"sync   POST /hello: {float(sync_rps):>9.0f} req/s  (non-2xx: {serr})")
print(f"async  accepted:    {float(acc_rps):>9.0f} /s   202 latency p50 {p50} p99 {p99}  (non-2xx: {aerr})")
print(f"async  processed:   {events:>9.0f} events/s  ({accepted} events, first send -> last settled {total:.2f}s; {left} still queued when the load stopped, drained in {t1-tl:.2f}s)")
print(f"ratio  events/s vs sync req/s: {events/float(sync_rps):.2f}")
PY
kill $pid
