#!/usr/bin/env bash
# Cost of gateway policies, one run, one server, same load generator: the
# hello function behind routes that differ only in their policy —
#   public       no policy (the baseline)
#   jwt          auth = "jwt" (a user-pool token verified per request, EdDSA)
#   ratelimit    a rate limit by IP, with a quota the load never reaches
#   jwt+limit    both, the limit counted per user
#   api_key      auth = "api_key"
# Each is loaded by wrk -c32 for DURATION seconds, twice (forward order, then
# reverse); the table gives the mean req/s and the ratio to the public route.
#
#   bench/policy.sh [DURATION_SECONDS]       (default 10)
#
# Needs: wrk (apt; installed if missing).
set -euo pipefail
dur=${1:-10}
source "$(dirname "$0")/lib.sh"
need wrk wrk
bench_init policy
hello=$guests/hello.wasm

nimbus_up "$work/data" --max-in-flight 256
mkdir -p "$work/app"
cat > "$work/app/nimbus.toml" <<TOML
[app]
name = "bench"

[auth]
access_ttl = "1h"

[functions.hello]
component = "$hello"
max_concurrency = 256

[policies.jwt]
auth = "jwt"

[policies.limited]
rate_limit = { requests = 100000000, per = "1s" }

[policies.jwt_limited]
auth = "jwt"
rate_limit = { requests = 100000000, per = "1s", by = "user" }

[policies.key]
auth = "api_key"

[[triggers.http]]
route = "/public"
function = "hello"

[[triggers.http]]
route = "/jwt"
function = "hello"
policy = "jwt"

[[triggers.http]]
route = "/limited"
function = "hello"
policy = "limited"

[[triggers.http]]
route = "/jwt-limited"
function = "hello"
policy = "jwt_limited"

[[triggers.http]]
route = "/key"
function = "hello"
policy = "key"
TOML
"$nimbus" deploy "$work/app" --data-dir "$work/data" >&2
token=$(curl -fs -X POST "$url/v1/apps/bench/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
key=$("$nimbus" keys create bench-invoke --app bench --scope invoke --data-dir "$work/data" 2>/dev/null | head -1)

# Prints req/s, after checking the route answers 200 with these headers.
load() {
  local path=$1; shift
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url$path")
  [ "$code" = 200 ] || { echo "$path answered $code" >&2; exit 1; }
  local args=()
  for h in "$@"; do [ "$h" = -H ] || args+=(-H "$h"); done
  wrk -t2 -c32 -d"${dur}s" "${args[@]}" "$url$path" > "$work/wrk.txt"
  if grep -q Non-2xx "$work/wrk.txt"; then echo "warning: $path had non-2xx responses" >&2; fi
  awk '/Requests\/sec/ {print $2}' "$work/wrk.txt"
}

curl -fs "$url/public" >/dev/null
load /public >/dev/null   # warm-up
# Two rounds, the second in reverse order, averaged: the machine's drift
# over the run does not favour the routes measured first.
routes=(public jwt ratelimit jwt+limit api_key)
declare -A SUM
run() {
  case $1 in
    public) load /public ;;
    jwt) load /jwt -H "Authorization: Bearer $token" ;;
    ratelimit) load /limited ;;
    jwt+limit) load /jwt-limited -H "Authorization: Bearer $token" ;;
    api_key) load /key -H "Authorization: Bearer $key" ;;
  esac
}
for r in "${routes[@]}"; do SUM[$r]=$(run "$r"); done
for ((i=${#routes[@]}-1; i>=0; i--)); do
  r=${routes[$i]}
  SUM[$r]=$(awk -v a="${SUM[$r]}" -v b="$(run "$r")" 'BEGIN { print a + b }')
done

echo
echo "policy cost on the hello route, wrk -t2 -c32, 2 x ${dur}s per route (forward, then reverse order), $(nproc) cores"
printf '%-12s %12s %10s\n' route req/s ratio
for r in "${routes[@]}"; do
  awk -v r="$r" -v x="${SUM[$r]}" -v b="${SUM[public]}" 'BEGIN { printf "%-12s %12.0f %10.2f\n", r, x / 2, x / b }'
done
