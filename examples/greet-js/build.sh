#!/usr/bin/env bash
# Builds dist/greet.wasm with componentize-js (from npm, pinned in
# package-lock.json) against wit/app's nimbus:app/http-app world: the
# JavaScript engine (StarlingMonkey) and src/app.js in one wasi:http 0.2
# component.
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
