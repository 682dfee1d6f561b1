#!/usr/bin/env bash
# Realtime: CONNECTIONS (default 10,000) idle WebSocket connections to one
# node on loopback, and broadcasts to all of them, beside the ceiling: a
# plain tokio-tungstenite server (bench/wsload's wsceiling) on the same
# machine, in the same run, driven by the same client (wsload).
#
# Nimbus serves examples/chat: every connection's connect function
# subscribes it to the room's channel; a broadcast is one more connection
# sending `say bN`, whose message function (a fresh instance) publishes to
# the channel. The ceiling broadcasts whatever a client sends, with no
# function in between. Each reports:
#   - the server's RSS with one connection, then with CONNECTIONS more
#     idle ones: the difference per connection (target: <= 20 KiB);
#   - BROADCASTS broadcasts, one at a time, each timed from the send of the
#     triggering message to its arrival at the last connection: p50, p99,
#     max (target: p99 <= 100 ms for 10,000).
#
#   bench/realtime.sh
#   CONNECTIONS=2000 BROADCASTS=20 bench/realtime.sh
set -euo pipefail
CONNECTIONS=${CONNECTIONS:-10000}
BROADCASTS=${BROADCASTS:-50}
. "$(dirname "$0")/lib.sh"
bench_init realtime
cargo build --release -p nimbus-wsload >&2
wsload=$root/target/release/wsload
wsceiling=$root/target/release/wsceiling
# The client and the server each hold one end of every connection.
want=$((CONNECTIONS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
  ulimit -n "$want" || { echo "needs $want open files per process; the hard limit is $(ulimit -Hn)" >&2; exit 1; }
fi

echo "== ceiling: tokio-tungstenite broadcast server =="
"$wsceiling" > "$work/ceiling.log" 2>&1 &
ceiling_pid=$!
for _ in $(seq 100); do grep -q listening "$work/ceiling.log" && break; sleep 0.05; done
ceiling_url=$(grep -o 'ws://[0-9.:]*' "$work/ceiling.log")
"$wsload" --label ceiling --url "$ceiling_url/" --connections "$CONNECTIONS" \
  --broadcasts "$BROADCASTS" --pid "$ceiling_pid" | tee "$work/ceiling.out"
kill "$ceiling_pid"

echo "== nimbus: examples/chat, a function per broadcast =="
mkdir -p "$work/chat"
cat > "$work/chat/nimbus.toml" <<TOML
[app]
name = "chat"

[functions.chat]
component = "$guests/chat.wasm"

[[triggers.websocket]]
route = "/rooms/{room}"
connect = "chat"
message = "chat"
TOML
nimbus_up "$work/data" --max-connections $((CONNECTIONS + 100)) \
  --max-app-connections $((CONNECTIONS + 100))
"$nimbus" deploy "$work/chat" --data-dir "$work/data" >&2
ws_url=${url/http:/ws:}
"$wsload" --label nimbus --url "$ws_url/rooms/bench?name=load" --connections "$CONNECTIONS" \
  --broadcasts "$BROADCASTS" --say "say " --pid "$pid" | tee "$work/nimbus.out"
kill "$pid"

echo "== side by side =="
python3 - "$work/ceiling.out" "$work/nimbus.out" <<'PY'
import sys
def results(path):
    out = {}
    for line in open(path):
        if line.startswith("RESULT "):
            for kv in line.split()[2:]:
                k, v = kv.split("=")
                out[k] = float(v)
    return out
c, n = results(sys.argv[1]), results(sys.argv[2])
for key, label in [("per_connection_kib", "RSS per idle connection, KiB"),
                   ("broadcast_p50_ms", "broadcast p50, ms"),
                   ("broadcast_p99_ms", "broadcast p99, ms"),
                   ("broadcast_max_ms", "broadcast max, ms")]:
    ratio = n[key] / c[key] if c.get(key) else float("nan")
    print(f"{label:32} ceiling {c.get(key, float('nan')):8.2f}   nimbus {n.get(key, float('nan')):8.2f}   nimbus/ceiling {ratio:5.2f}")
PY
