#!/usr/bin/env bash
# The cost of durable commits: bench/events.sh and bench/data.sh run
# against a build from before SQLite commits were fsynced (synchronous =
# NORMAL, storage events in a separate transaction) and against this
# checkout's build (synchronous = FULL, each acknowledged write fsynced
# before its answer), alternating in one run, with the ratios of every
# figure.
#
#   bench/durable.sh BASELINE_NIMBUS [DURATION_SECONDS] [ROUNDS]   (default 10 1)
#
# BASELINE_NIMBUS is a `nimbus` binary built from an older commit, e.g.
#   git worktree add ../old 0e292ee
#   (cd ../old && CARGO_TARGET_DIR=../target-old cargo build --release -p nimbus)
#   bench/durable.sh ../target-old/release/nimbus
# Each round runs old, then new, for each script; about 7 minutes a round
# at 10 s.
set -euo pipefail
baseline=$(realpath "${1:?usage: bench/durable.sh BASELINE_NIMBUS [DURATION_SECONDS] [ROUNDS]}")
dur=${2:-10}
rounds=${3:-1}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
cargo build --release -p nimbus >&2
current=$PWD/target/release/nimbus
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$rounds"); do
  for script in events data; do
    for which in old new; do
      bin=$baseline
      [ "$which" = new ] && bin=$current
      echo "round $r: $script.sh, $which build" >&2
      NIMBUS_BIN=$bin "$here/$script.sh" "$dur" > "$out/$script-$which-$r.txt"
    done
  done
done
python3 - "$out" "$rounds" <<'PY'
import re, sys, pathlib
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
figures = [
    ("events", r"sync   POST /hello:\s+([0-9.]+)", "sync invocations, req/s"),
    ("events", r"async  accepted:\s+([0-9.]+)", "async accepted (202), /s"),
    ("events", r"async  processed:\s+([0-9.]+)", "async processed, events/s"),
    ("data", r"KV SET  REST\s+([0-9.]+)", "KV SET over REST, ops/s"),
    ("data", r"KV GET  REST\s+([0-9.]+)", "KV GET over REST, ops/s"),
    ("data", r"KV GET  from a guest, 1 op per request:\s+([0-9.]+)", "KV GET from a guest, req/s"),
    ("data", r"KV INCR from a guest, 1 op per request:\s+([0-9.]+)", "KV INCR from a guest, req/s"),
    ("data", r"top-10 by score[^:]*:\s+([0-9.]+)", "top-10 query (indexed), /s"),
]
print(f"{'figure':<32} {'round':>5} {'before':>10} {'after':>10} {'after/before':>13}")
for script, rx, name in figures:
    for r in range(1, rounds + 1):
        old = float(re.search(rx, (out / f"{script}-old-{r}.txt").read_text()).group(1))
        new = float(re.search(rx, (out / f"{script}-new-{r}.txt").read_text()).group(1))
        print(f"{name:<32} {r:>5} {old:>10.0f} {new:>10.0f} {new / old:>13.2f}")
print()
for f in sorted(out.iterdir()):
    print(f"== {f.name}")
    print(f.read_text())
PY
