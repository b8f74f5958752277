#!/bin/sh
# Install dependencies with the pinned pnpm (fetched through npx when pnpm is absent) and build.
# pnpm's output is kept quiet when all goes well and printed in full when the install fails.
set -eu
cd "$(dirname "$0")/.."
want="10.34.8"
if command -v pnpm >/dev/null 2>&1 && [ "$(pnpm --version 2>/dev/null)" = "$want" ]; then
  pnpm_cmd="pnpm"
else
  pnpm_cmd="npx --yes pnpm@$want"
fi
log="$(mktemp "${TMPDIR:-/tmp}/zt-setup.XXXXXX")"
trap 'rm -f "$log"' EXIT
if ! $pnpm_cmd install --frozen-lockfile --reporter=append-only >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup: '$pnpm_cmd install --frozen-lockfile' failed (its output is above)" >&2
  exit 1
fi
node_modules/.bin/tsc -b
