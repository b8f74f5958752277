#!/usr/bin/env bash
# Data-path levers: one connection through the mesh pair per setting (see bench/src/levers.ts).
# Usage: BENCH_LEVERS='base;name=ENV=VALUE,ENV2=VALUE' bash bench/levers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
exec node bench/dist/levers.js
