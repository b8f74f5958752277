#!/usr/bin/env bash
# Where a GiB's CPU goes in each agent: perf samples of both agents under one connection's
# transfer, sorted into categories (see bench/src/profile.ts). Root (perf). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
exec node bench/dist/profile.js
