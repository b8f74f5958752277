#!/usr/bin/env bash
# Benchmark: direct TCP vs a stunnel pair vs the mesh (two agents, HBONE), on loopback.
# Usage: bash bench/run.sh        (BENCH_QUICK=1 for a short trial run that keeps RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 idle connections need descriptors: stunnel holds two per connection.
# shellcheck source=bench/nofile.sh
. bench/nofile.sh

# The agents (and the harness) build with the workspace; the bench builds on its own, so
# the baselines still run while the agent does not build (the mesh failure is reported).
if ! node_modules/.bin/tsc -b; then
  echo "warning: the workspace build (tsc -b) failed; the mesh path will probably not start" >&2
fi
node_modules/.bin/tsc -p bench/tsconfig.json

exec node bench/dist/run.js
