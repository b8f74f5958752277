#!/usr/bin/env bash
# zt-controller's CA: certificates signed per second through the controller (gRPC, TokenReview) against the built-in CA in-process.
# Usage: bash bench/ca-sign.sh     (BENCH_QUICK=1: 100 requests, keeps RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
mkdir -p bench/out
exec node bench/dist/ca-sign.js
