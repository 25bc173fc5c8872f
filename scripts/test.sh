#!/usr/bin/env bash
# The README's second command: set up this machine, then run lint, type checks, unit and
# integration tests, and the Docker end-to-end suite. Pass nox session names to run fewer
# (e.g. `bash scripts/test.sh tests`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export TESTCONTAINERS_RYUK_DISABLED=true
if [ "$#" -eq 0 ]; then
  set -- lint typecheck tests e2e
fi
exec .venv/bin/nox --no-venv -s "$@"
