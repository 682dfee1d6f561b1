#!/usr/bin/env bash
# What observing costs: hello-route throughput with metering, logs, metrics
# and tracing on (the default) against a server started with
# --no-telemetry (no invocation records, logs, usage, metrics or trace
# context), same component, same load generator, one run. Both servers run
# side by side; the routes are loaded in turn, ROUNDS times in the order
# on, off, off, on (so the machine's drift favours neither), and the table
# gives mean req/s and the on/off ratio. The target is a ratio >= 0.95.
#
#   bench/operate.sh [DURATION_SECONDS] [ROUNDS]     (defaults: 10, 2)
#
# Needs: wrk (apt; installed if missing).
set -euo pipefail
dur=${1:-10}
rounds=${2:-2}
source "$(dirname "$0")/lib.sh"
need wrk wrk
bench_init operate

hello_app 256

# NAME EXTRA_ARGS...: starts a server and deploys the app; sets $url and $control. Not
# run in a $(...) subshell: the server must stay this shell's job, so the
# exit trap stops it.
start() {
  local name=$1; shift
  nimbus_up "$work/$name" --max-in-flight 256 "$@"
  NIMBUS_SERVER=$control NIMBUS_TOKEN=$(cat "$work/$name/admin-token") "$nimbus" deploy "$work/app" >&2
  curl -fs "$url/hello" >/dev/null
}
start on; on=$url; on_control=$control
start off --no-telemetry; off=$url

load() {  # URL: req/s
  wrk -t2 -c32 -d"${dur}s" "$1/hello" > "$work/wrk.txt"
  if grep -q Non-2xx "$work/wrk.txt"; then echo "warning: $1 had non-2xx responses" >&2; fi
  awk '/Requests\/sec/ {print $2}' "$work/wrk.txt"
}

load "$on" >/dev/null; load "$off" >/dev/null   # warm-up
sum_on=0; sum_off=0
for ((i = 0; i < rounds; i++)); do
  a=$(load "$on"); b=$(load "$off"); c=$(load "$off"); d=$(load "$on")
  echo "round $((i + 1)): on $a, off $b, off $c, on $d" >&2
  sum_on=$(awk -v s="$sum_on" -v a="$a" -v d="$d" 'BEGIN { print s + a + d }')
  sum_off=$(awk -v s="$sum_off" -v b="$b" -v c="$c" 'BEGIN { print s + b + c }')
done
records=$(NIMBUS_SERVER=$on_control NIMBUS_TOKEN=$(cat "$work/on/admin-token") "$nimbus" usage --app bench --since 1h --json \
  | awk -F': ' '/"invocations"/ { gsub(/,/, "", $2); print $2; exit }')
dropped=$(curl -fs -H "Authorization: Bearer $(cat "$work/on/admin-token")" "$on_control/v1/status" | grep -o '"records_dropped":[0-9]*' | cut -d: -f2)

echo
echo "telemetry cost on the hello route, wrk -t2 -c32, $((2 * rounds)) x ${dur}s per server (order on, off, off, on), $(nproc) cores"
printf '%-28s %12s %8s\n' server req/s ratio
awk -v on="$sum_on" -v off="$sum_off" -v n="$((2 * rounds))" 'BEGIN {
  printf "%-28s %12.0f %8.2f\n", "off (--no-telemetry)", off / n, 1
  printf "%-28s %12.0f %8.3f\n", "on (records+logs+metrics+traces)", on / n, on / off
}'
echo "the 'on' server metered $records invocations in its usage report ($dropped records dropped)"
