#!/usr/bin/env bash
# Data services benchmark, one run, same machine and load generator:
#   1. KV over REST (Nimbus control API, wrk -c32) vs Redis (redis-benchmark
#      -c32, the same GET/SET of a small value) -> ops/s and the ratio;
#   2. KV from a guest: one wasi:keyvalue get (or increment) per request,
#      through the gateway (a fresh instance per request);
#   3. leaderboard top-10 over 100,000 documents: ordered by `score`, which
#      the manifest indexes, and, for contrast, by `rank` (same values), which
#      no index covers.
#
#   bench/data.sh [DURATION_SECONDS]       (default 10)
#
# Needs: wrk, redis-server and redis-benchmark (apt; installed if missing).
set -euo pipefail
dur=${1:-10}
source "$(dirname "$0")/lib.sh"
need wrk wrk
need redis-server redis-server
bench_init data
guest=$guests/data.wasm

nimbus_up "$work/data"
token=$(cat "$work/data/admin-token")
mkdir -p "$work/app"
cat > "$work/app/nimbus.toml" <<TOML
[app]
name = "bench"

[kv.s]

[collections.board]
indexes = [["-score"]]

[collections.plain]

[functions.api]
component = "$guest"
kv = ["s"]
collections = ["board", "plain"]
max_concurrency = 64

[[triggers.http]]
route = "/kv/{*rest}"
function = "api"

[[triggers.http]]
route = "/incr/{*rest}"
function = "api"
TOML
"$nimbus" deploy "$work/app" --data-dir "$work/data" >&2

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --save '' --appendonly no --daemonize no > "$work/redis.log" 2>&1 &
sleep 0.5

# wrk: $1 = lua script, $2 = url; prints "req/s p50 p99 non2xx"
load() {
  wrk -t2 -c32 -d"${dur}s" --latency -s "$1" "$2" > "$work/wrk.txt"
  echo "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt") $(awk '$1=="50%" {print $2}' "$work/wrk.txt") $(awk '$1=="99%" {print $2}' "$work/wrk.txt") $(awk '/Non-2xx/ {print $5}' "$work/wrk.txt")"
}
cat > "$work/get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat > "$work/set.lua" <<LUA
wrk.method = "PUT"
wrk.body = "xxx"
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat > "$work/plain.lua" <<LUA
LUA
cat > "$work/incr.lua" <<LUA
wrk.method = "POST"
LUA

curl -fs -X PUT -H "authorization: Bearer $token" --data xxx "$url/v1/apps/bench/kv/s/key" >/dev/null
echo "warm-up" >&2
wrk -t2 -c32 -d2s -s "$work/get.lua" "$url/v1/apps/bench/kv/s/key" >/dev/null

rest_set=$(load "$work/set.lua" "$url/v1/apps/bench/kv/s/key")
rest_get=$(load "$work/get.lua" "$url/v1/apps/bench/kv/s/key")
redis=$(redis-benchmark -p "$port" -c 32 -n 300000 -d 3 -t set,get -q 2>/dev/null | tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests per second')
redis_set=$(echo "$redis" | awk '/^SET/ {print $2}')
redis_get=$(echo "$redis" | awk '/^GET/ {print $2}')
guest_get=$(load "$work/plain.lua" "$url/kv/s/key")
guest_incr=$(load "$work/incr.lua" "$url/incr/s/counter")

# 100,000 documents, in bulk writes of 10,000, into both collections.
python3 - "$url" "$token" <<'PY'
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
for coll in ("board", "plain"):
    for chunk in range(10):
        # "rank" carries the same values as "score" but no index covers it.
        docs = [{"id": f"g{i:06}", "player": f"p{i % 997}", "score": (i * 7919) % 1000003,
                 "rank": (i * 7919) % 1000003}
                for i in range(chunk * 10000, (chunk + 1) * 10000)]
        req = urllib.request.Request(f"{url}/v1/apps/bench/docs/{coll}", data=json.dumps(docs).encode(),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"}, method="POST")
        urllib.request.urlopen(req).read()
PY
for field in score rank; do
cat > "$work/q-$field.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"order_by": [["$field", "desc"]], "limit": 10}'
wrk.headers["Authorization"] = "Bearer $token"
LUA
done
q_board=$(load "$work/q-score.lua" "$url/v1/apps/bench/docs/board/_query")
q_plain=$(load "$work/q-rank.lua" "$url/v1/apps/bench/docs/plain/_query")

python3 - "$rest_set" "$rest_get" "$redis_set" "$redis_get" "$guest_get" "$guest_incr" "$q_board" "$q_plain" "$dur" <<'PY'
import sys
def f(x): return [v for v in x.split()]
rs, rg, ds, dg, gg, gi, qb, qp, dur = sys.argv[1:]
rs, rg, gg, gi, qb, qp = map(f, (rs, rg, gg, gi, qb, qp))
ds, dg = float(ds), float(dg)
print(f"{dur}s per cell, 32 connections")
print(f"KV SET  REST {float(rs[0]):>9.0f} ops/s (p50 {rs[1]}, p99 {rs[2]})   redis {ds:>9.0f} ops/s   ratio {float(rs[0])/ds:.2f}")
print(f"KV GET  REST {float(rg[0]):>9.0f} ops/s (p50 {rg[1]}, p99 {rg[2]})   redis {dg:>9.0f} ops/s   ratio {float(rg[0])/dg:.2f}")
print(f"KV GET  from a guest, 1 op per request: {float(gg[0]):>9.0f} req/s (p50 {gg[1]}, p99 {gg[2]})")
print(f"KV INCR from a guest, 1 op per request: {float(gi[0]):>9.0f} req/s (p50 {gi[1]}, p99 {gi[2]})")
print(f"top-10 by score over 100,000 docs (indexed):  {float(qb[0]):>8.0f} queries/s  p50 {qb[1]}  p99 {qb[2]}")
print(f"top-10 by rank over 100,000 docs (no index):   {float(qp[0]):>8.0f} queries/s  p50 {qp[1]}  p99 {qp[2]}")
PY
