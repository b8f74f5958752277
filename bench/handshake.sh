#!/usr/bin/env bash
# Connection setup on a fresh pool (issue 10): certificate issuance and first HBONE connections
# for 50 identities x 4 destinations, with this tree and with a former commit's identity code
# ("before", default 3ce1a57), measured side by side in one run. No root needed.
# Usage: bash bench/handshake.sh   (BENCH_QUICK=1 for a short trial that keeps RESULTS.md;
#                                   BENCH_BEFORE_REF=<commit> for another "before")
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${BENCH_BEFORE_REF:-3ce1a57}"

node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench/tsconfig.json

# The "before" build: that commit's tree (git archive, so no worktree is registered), its
# dependencies from the local pnpm store, built with its own tsc. Removed at the end.
before="$(mktemp -d "${TMPDIR:-/tmp}/zt-bench-before-XXXXXX")"
trap 'rm -rf "$before"' EXIT
git archive "$ref" | tar -x -C "$before"
(
  cd "$before"
  npx --yes pnpm@10.34.8 install --frozen-lockfile --prefer-offline >/dev/null 2>&1 ||
    { echo "handshake: pnpm install failed in the '$ref' tree" >&2; exit 1; }
  node_modules/.bin/tsc -b
)

mkdir -p bench/out
BENCH_BEFORE_ROOT="$before" BENCH_BEFORE_REF="$ref" node bench/dist/handshake.js
