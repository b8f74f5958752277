#!/usr/bin/env bash
# Capture benchmark (root): plain TCP between pods of an emulated cluster, direct vs captured.
# Usage: sudo bash bench/capture.sh     (BENCH_QUICK=1 for a short trial that keeps RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
mkdir -p bench/out
exec node bench/dist/capture.js
