#!/usr/bin/env bash
# Data-path workers: throughput and agent CPU at 16 connections with ZTUNNEL_WORKER_THREADS=1, 2, 4,
# beside a stunnel pair in the same run. Usage: bash bench/workers.sh   (BENCH_QUICK=1: a short trial)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json
mkdir -p bench/out
exec node bench/dist/workers.js
