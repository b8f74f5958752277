#!/usr/bin/env bash
# zt-controller's delta xDS server pushing 10,000 workloads to 50 clients over loopback TLS, then single pod changes.
# Usage: bash bench/controller-push.sh     (BENCH_QUICK=1: 1,000 workloads, keeps RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
mkdir -p bench/out
exec node bench/dist/controller-push.js
