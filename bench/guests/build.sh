#!/usr/bin/env bash
# Builds the benchmark's JavaScript and Python hellos into bench/guests/dist,
# against the plain wasi:http/proxy@0.2.10 world of wit/app (no Nimbus
# imports, so `wasmtime serve` runs them as they are), with the toolchains
# the examples use: componentize-js from examples/greet-js/node_modules
# (`npm ci` there) and componentize-py from target/pyenv (scripts/test).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
mkdir -p dist
[ -x "$root/examples/greet-js/node_modules/.bin/componentize-js" ] ||
  npm ci --prefix "$root/examples/greet-js" --no-audit --no-fund --loglevel=error
"$root/examples/greet-js/node_modules/.bin/componentize-js" hello-js/app.js \
  --wit "$root/wit/app" --world-name wasi:http/proxy@0.2.10 --out dist/hello-js.wasm
py=$root/target/pyenv/bin/componentize-py
if [ ! -x "$py" ]; then
  [ -x "$root/target/pyenv/bin/python" ] || python3 -m venv "$root/target/pyenv"
  "$root/target/pyenv/bin/pip" install -q --disable-pip-version-check 'componentize-py==0.25.1'
fi
(cd hello-py && "$py" -d "$root/wit/app" -w wasi:http/proxy@0.2.10 componentize app -o ../dist/hello-py.wasm)
