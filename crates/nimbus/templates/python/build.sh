#!/usr/bin/env bash
# Builds dist/app.wasm with componentize-py (`pip install
# componentize-py==0.25.1`): bindings for wit/ are generated, then app.py is
# bundled with CPython into one component.
set -euo pipefail
cd "$(dirname "$0")"
command -v componentize-py >/dev/null || {
  echo "componentize-py not found: pip install componentize-py==0.25.1" >&2
  exit 1
}
mkdir -p dist
componentize-py -d wit -w nimbus:app/http-app componentize app -o dist/app.wasm
