#!/usr/bin/env bash
# Handover measurement (root): agents replaced under load, with and without net.ipv4.tcp_migrate_req.
# Usage: sudo bash bench/handover.sh     (BENCH_QUICK=1 for a short trial that keeps RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
mkdir -p bench/out
exec node bench/dist/handover.js
