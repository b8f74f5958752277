#!/usr/bin/env bash
# Resilience benchmark (issue 8): connections held through two agents on loopback (RSS,
# descriptors, idle CPU), and a peer agent SIGKILLed under open connections (time to the RST).
# Usage: bash bench/resilience.sh   (BENCH_QUICK=1 for a short trial that keeps RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 held connections need descriptors in every process (client, agents, echo server);
# the agents inherit this limit and budget their descriptors from it.
# shellcheck source=bench/nofile.sh
. bench/nofile.sh

node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
mkdir -p bench/out
exec node bench/dist/resilience.js
