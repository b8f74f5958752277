#!/bin/sh
# Install dependencies with the pinned pnpm (fetched through npx when pnpm is absent) and build.
set -eu
cd "$(dirname "$0")/.."
want="10.34.8"
if command -v pnpm >/dev/null 2>&1 && [ "$(pnpm --version 2>/dev/null)" = "$want" ]; then
  pnpm_cmd="pnpm"
else
  pnpm_cmd="npx --yes pnpm@$want"
fi
$pnpm_cmd install --frozen-lockfile --reporter=append-only >/dev/null
node_modules/.bin/tsc -b
