#!/usr/bin/env bash
# Builds dist/app.wasm: installs componentize-js (npm) at the first build,
# then bundles the JavaScript engine and src/app.js into one component.
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm install --no-audit --no-fund --loglevel=error
npm run --silent build
