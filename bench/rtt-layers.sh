#!/usr/bin/env bash
# Where a round trip's time goes: the 1 KiB RTT through Node relay pairs that add one layer at a
# time, beside direct TCP, stunnel and the mesh (see bench/src/rtt-layers.ts). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
exec node bench/dist/rtt-layers.js
