#!/usr/bin/env bash
# Long run of the property tests of the parsers a tenant controls: the
# manifest, route patterns, field paths and keys, traceparent, cron,
# durations, time zones, networks and access rules (nimbus-core), the
# document query language (nimbus-store) and the CloudEvents headers
# (nimbus-events). Same fixed seed as the suite, many more cases per
# property; release build.
#
#   bench/proptest.sh [CASES]       (default 100000)
#
# Prints cargo's test output; exits non-zero on the first failing property,
# whose minimal input proptest prints.
set -euo pipefail
cases=${1:-100000}
cd "$(dirname "$0")/.."
export NIMBUS_PROPTEST_CASES=$cases
start=$(date +%s)
cargo test --release -p nimbus-core -p nimbus-store -p nimbus-events --test props
echo "proptest: $cases cases per property in $(( $(date +%s) - start )) s"
