#!/usr/bin/env bash
# The reference app under load: PLAYERS simulated Connect Four players
# (bench/gameload.mjs, HTTP only, no browser) sign up, pair up and play
# games for DURATION seconds against the game as `scripts/demo` deploys it
# (examples/game on the embedded default), once per think time given
# (mean pause before a move, in ms; 0 = move as soon as it is your turn).
# Prints, per run: moves/s, move latency p50/p90/p99/max, how soon the
# opponent saw each move (long poll), finished games, errors.
#
#   bench/game.sh [DURATION_SECONDS] [PLAYERS] [THINK_MS...]   (defaults: 60, 200, 500 0)
#
# Needs: Node.js 18+ (apt nodejs; installed if missing).
set -euo pipefail
dur=${1:-60}
players=${2:-200}
shift $(( $# > 2 ? 2 : $# ))
thinks=("$@")
[ ${#thinks[@]} -gt 0 ] || thinks=(500 0)
source "$(dirname "$0")/lib.sh"
need node nodejs
bench_init game

for think in "${thinks[@]}"; do
  # A fresh server per run, so no run inherits another's data.
  nimbus_up "$work/data-$think" --max-in-flight 1000
  "$nimbus" deploy examples/game --server "$control" --data-dir "$work/data-$think" >/dev/null
  echo "== $players players, ${dur}s, mean think time ${think} ms" >&2
  node bench/gameload.mjs "$url" "$players" "$dur" "$think"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
