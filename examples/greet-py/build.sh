#!/usr/bin/env bash
# Builds dist/greet.wasm with componentize-py (PyPI, `pip install
# componentize-py==0.25.1`): bindings for wit/app's nimbus:app/http-app
# world are generated, then app.py is bundled with CPython into one
# wasi:http 0.2 component.
set -euo pipefail
cd "$(dirname "$0")"
py=$(command -v componentize-py || true)
# The repository's test venv (scripts/test installs it there).
[ -n "$py" ] || [ ! -x ../../target/pyenv/bin/componentize-py ] || py=../../target/pyenv/bin/componentize-py
if [ -z "$py" ]; then
  echo "componentize-py not found: pip install componentize-py==0.25.1" >&2
  exit 1
fi
mkdir -p dist
"$py" -d ../../wit/app -w nimbus:app/http-app componentize app -o dist/greet.wasm
