#!/usr/bin/env bash
# Admin listing benchmark (issue 12): what /debug/connections and the admin page cost with 10,000 connections open.
# Usage: bash bench/admin-list.sh   (BENCH_QUICK=1 for a short trial that keeps RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 held connections need descriptors in every process (client, agents, echo server);
# the agents inherit this limit and budget their descriptors from it.
# shellcheck source=bench/nofile.sh
. bench/nofile.sh

node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
mkdir -p bench/out
exec node bench/dist/admin-list.js
