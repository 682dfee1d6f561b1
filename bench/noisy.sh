#!/usr/bin/env bash
# Noisy neighbours: tenant A's hello, alone and then while tenant B floods
# the same node, in one run. B does what one app may do at once:
#   sleepers   hey -c 300: invocations that sleep 2 s, more than B's
#              in-flight share (--max-app-in-flight, 250) holds
#   failures   wrk -c 16: invocations that trap (each recorded with its
#              stderr and its input, for replay)
#   queries    wrk -c 8: anonymous clients on B's public-read collection of
#              1 MiB documents, each asking for 1,000 (the largest page the
#              REST API answers: 4 MiB)
# A: wrk -c 4 on GET /hello. Target: A's p99 with B flooding within 2x of
# A's p99 alone, and no A request answered other than 200.
#
#   bench/noisy.sh [DURATION_SECONDS]      (default 15)
#   B=query bench/noisy.sh                 (only some of B's floods: any of
#                                           sleep, panic, query)
#   SEPARATE=1 bench/noisy.sh              (B on a second nimbus process on
#                                           the same cores: the reference)
#
# Needs: wrk, hey (apt; installed if missing).
set -euo pipefail
dur=${1:-15}
B=${B:-sleep,panic,query}
source "$(dirname "$0")/lib.sh"
need wrk wrk
need hey hey
bench_init noisy

# With SEPARATE=1, B runs on a node of its own: a second nimbus process on
# the same cores, the most isolation this machine can give without idling
# cores. Its A figures are the reference for what sharing one node costs.
if [ "${SEPARATE:-0}" = 1 ]; then
  nimbus_up "$work/bdata"
  burl=$url bcontrol=$control bpid=$pid bdata=$work/bdata
fi
nimbus_up "$work/data"
token=$(cat "$work/data/admin-token")
if [ "${SEPARATE:-0}" != 1 ]; then
  burl=$url bcontrol=$control bpid=$pid bdata=$work/data
fi
btoken=$(cat "$bdata/admin-token")
mkdir -p "$work/a" "$work/b"
cat > "$work/a/nimbus.toml" <<TOML
[app]
name = "quiet"

[functions.hello]
component = "$guests/hello.wasm"
max_concurrency = 64

[[triggers.http]]
route = "/hello"
function = "hello"
TOML
cat > "$work/b/nimbus.toml" <<TOML
[app]
name = "noisy"

[collections.big]
access = "public-read"

[functions.chaos]
component = "$guests/chaos.wasm"
max_concurrency = 1000
timeout_ms = 10000

[functions.data]
component = "$guests/data.wasm"
collections = ["big"]

[[triggers.http]]
route = "/b/{*rest}"
function = "chaos"
TOML
"$nimbus" deploy "$work/a" --data-dir "$work/data" >&2
"$nimbus" deploy "$work/b" --data-dir "$bdata" >&2

# Twelve documents of 1 MiB in B's collection.
python3 - "$bcontrol" "$btoken" <<'PY'
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
for i in range(12):
    body = json.dumps({"pad": "y" * ((1 << 20) - 16)}).encode()
    req = urllib.request.Request(f"{url}/v1/apps/noisy/docs/big/d{i}", data=body, method="PUT",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    urllib.request.urlopen(req).read()
PY
cat > "$work/query.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"limit": 1000}'
wrk.headers["Content-Type"] = "application/json"
LUA
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{"limit": 1000}' "$burl/v1/apps/noisy/docs/big/_query")
[ "$code" = 200 ] || { echo "an anonymous query of B's collection answered $code" >&2; exit 1; }

# a_load NAME: A's hello for $dur seconds; prints "req/s p50 p99 non2xx errors".
a_load() {
  wrk -t1 -c4 -d"${dur}s" --latency "$url/hello" > "$work/$1.txt"
  echo "$(awk '/Requests\/sec/ {print $2}' "$work/$1.txt") $(awk '$1=="50%" {print $2}' "$work/$1.txt") $(awk '$1=="99%" {print $2}' "$work/$1.txt") $(awk '/Non-2xx/ {print $5}' "$work/$1.txt") $(awk '/Socket errors/ {print $4+$6+$8+$10}' "$work/$1.txt")"
}

echo "warm-up" >&2
wrk -t1 -c4 -d2s "$url/hello" > /dev/null
solo=$(a_load solo)

echo "B floods" >&2
flood=$((dur + 6))
floods=
touch "$work/b-sleep.txt" "$work/b-panic.txt" "$work/b-query.txt"
if [[ $B =~ sleep ]]; then
  hey -c 300 -z "${flood}s" -t 30 "$burl/b/sleep?ms=2000" > "$work/b-sleep.txt" 2>&1 &
  floods="$floods $!"
fi
if [[ $B =~ panic ]]; then
  wrk -t1 -c16 -d"${flood}s" "$burl/b/panic" > "$work/b-panic.txt" 2>&1 &
  floods="$floods $!"
fi
if [[ $B =~ query ]]; then
  wrk -t1 -c8 -d"${flood}s" -s "$work/query.lua" "$burl/v1/apps/noisy/docs/big/_query" > "$work/b-query.txt" 2>&1 &
  floods="$floods $!"
fi
sleep 3
noisy=$(a_load noisy)
# shellcheck disable=SC2086 # one pid per word
wait $floods

b_sleep=$(grep -E "^ *\[[0-9]+\]" "$work/b-sleep.txt" | awk '{printf "%s%s x %s", sep, $1, $2; sep=", "}' || true)
b_panic=$(awk '/requests in/ {print $1}' "$work/b-panic.txt")
b_query=$(awk '/requests in/ {print $1}' "$work/b-query.txt")
b_query_bytes=$(awk '/requests in/ {print $5}' "$work/b-query.txt")

python3 - "$solo" "$noisy" "$dur" "$b_sleep" "$b_panic" "$b_query" "$b_query_bytes" <<'PY'
import sys
solo, noisy, dur, b_sleep, b_panic, b_query, b_query_bytes = sys.argv[1:]
def ms(t):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if t.endswith(unit) and t[:-len(unit)].replace(".", "", 1).isdigit():
            return float(t[:-len(unit)]) * f
    raise ValueError(t)
def parse(x):
    v = x.split() + ["0", "0"]
    return float(v[0]), ms(v[1]), ms(v[2]), int(v[3] or 0), int(v[4] or 0)
s, n = parse(solo), parse(noisy)
print(f"A's hello, wrk -c4, {dur}s each")
print(f"  alone:        {s[0]:>8.0f} req/s  p50 {s[1]:.2f} ms  p99 {s[2]:.2f} ms  non-2xx {s[3]}  socket errors {s[4]}")
print(f"  B flooding:   {n[0]:>8.0f} req/s  p50 {n[1]:.2f} ms  p99 {n[2]:.2f} ms  non-2xx {n[3]}  socket errors {n[4]}")
print(f"  p99 ratio (flooding / alone): {n[2] / s[2]:.2f}   (target: at most 2.00, with 0 errors)")
print(f"B meanwhile: sleepers answered by status {b_sleep or 'none'}; {b_panic} failures; {b_query} queries ({b_query_bytes} read)")
PY
kill $pid $bpid 2>/dev/null || true
