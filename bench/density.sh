#!/usr/bin/env bash
# Density: many distinct functions on one node. Deploys APPS apps of
# PER_APP functions each (default 500 x 20 = 10,000), every function its
# own component (the hello of examples/ with a custom section naming it,
# so each one hashes, compiles and caches apart), to one `nimbus up` with
# its default settings; then reports:
#   - the total deploy time and the node's RSS once idle;
#   - the first request to every function (one client, sequential): p50,
#     p99, max, and the RSS after;
#   - the same after a restart of the node on the same data dir (every
#     function cold: its native code read back from the compile cache).
#
#   bench/density.sh                   (500 apps x 20 functions)
#   APPS=50 PER_APP=20 bench/density.sh      (1,000 functions)
#   NIMBUS_ARGS="--loaded-capacity 20000" bench/density.sh
set -euo pipefail
APPS=${APPS:-500}
PER_APP=${PER_APP:-20}
# A node restoring thousands of functions takes more than nimbus_up's
# default 10 s to listen: wait up to 10 min.
export UP_TRIES=${UP_TRIES:-12000}
. "$(dirname "$0")/lib.sh"
bench_init density
total=$((APPS * PER_APP))
echo "generating $total components" >&2
python3 - "$guests/hello.wasm" "$work/apps" "$APPS" "$PER_APP" <<'PY'
import os, sys
hello, out, apps, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = open(hello, "rb").read()
def leb(n):
    b = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        b.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(b)
for a in range(apps):
    d = os.path.join(out, f"a{a}")
    os.makedirs(d)
    toml = [f'[app]\nname = "a{a}"\n']
    for f in range(per):
        name, payload = b"nimbus-density", f"a{a}/f{f}".encode()
        body = leb(len(name)) + name + payload
        # A custom section (id 0) appended to the component.
        open(os.path.join(d, f"f{f}.wasm"), "wb").write(base + b"\x00" + leb(len(body)) + body)
        toml.append(f'[functions.f{f}]\ncomponent = "f{f}.wasm"\n\n[[triggers.http]]\nroute = "/a{a}/f{f}"\nmethods = ["GET"]\nfunction = "f{f}"\n')
    open(os.path.join(d, "nimbus.toml"), "w").write("\n".join(toml))
PY
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$1/status"; }
# shellcheck disable=SC2086
nimbus_up "$work/d" --cache-dir "$work/cache" ${NIMBUS_ARGS:-}
echo "node at $url; deploying $APPS apps" >&2
t0=$(date +%s%N)
for a in $(seq 0 $((APPS - 1))); do
  "$nimbus" deploy "$work/apps/a$a" --data-dir "$work/d" > "$work/deploy.log" 2>&1 || { cat "$work/deploy.log" >&2; exit 1; }
  [ $(((a + 1) % 50)) -ne 0 ] || echo "  $((a + 1)) apps deployed, $(( ($(date +%s%N) - t0) / 1000000000 )) s, RSS $(rss "$pid")" >&2
done
deploy_s=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 5
idle=$(rss "$pid")
first_requests() { # url -> "p50 p99 max" of one GET to every function, in ms
  python3 - "$1" "$APPS" "$PER_APP" <<'PY'
import http.client, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); apps, per = int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection(u.hostname, u.port)
times = []
for a in range(apps):
    for f in range(per):
        t = time.perf_counter()
        conn.request("GET", f"/a{a}/f{f}")
        r = conn.getresponse(); body = r.read()
        times.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            sys.exit(f"/a{a}/f{f}: {r.status} {body[:200]!r}")
times.sort()
q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
print(f"{q(0.5):.2f} {q(0.99):.2f} {times[-1]:.2f}")
PY
}
read -r p50 p99 max < <(first_requests "$url")
after=$(rss "$pid")
kill "$pid"; wait "$pid" 2>/dev/null || true
t0=$(date +%s%N)
# shellcheck disable=SC2086
nimbus_up "$work/d" --cache-dir "$work/cache" ${NIMBUS_ARGS:-}
until curl -fs "$url/a0/f0" >/dev/null 2>&1; do sleep 0.01; done
restart_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 2
restarted_idle=$(rss "$pid")
read -r rp50 rp99 rmax < <(first_requests "$url")
restarted_after=$(rss "$pid")
echo "## Density: $total functions in $APPS apps ($(date -u +%F), $(nproc) cores)"
echo
echo "| | value |"
echo "|---|---|"
echo "| deploy, all apps | $((deploy_s / 1000)) s ($((deploy_s / total)) ms per function) |"
echo "| RSS idle after deploying | $idle |"
echo "| first request to each, after deploy: p50 / p99 / max | $p50 / $p99 / $max ms |"
echo "| RSS after those | $after |"
echo "| restart -> first 200 | $restart_ms ms |"
echo "| RSS idle after the restart | $restarted_idle |"
echo "| first request to each, after the restart: p50 / p99 / max | $rp50 / $rp99 / $rmax ms |"
echo "| RSS after those | $restarted_after |"
