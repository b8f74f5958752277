#!/usr/bin/env bash
# Discovery at scale: one agent following a fake API server with 10,000 pods and 2,000 services.
# Usage: bash bench/discovery.sh     (BENCH_QUICK=1 for a short trial that keeps RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
mkdir -p bench/out
exec node bench/dist/discovery.js
