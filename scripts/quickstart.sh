#!/usr/bin/env bash
# The README's first command: set up this machine, then build and smoke-test the gateway-runtime
# image from the default manifests in manifests/. Extra arguments go to `gateway-builder build`.
# Local bases (built from Debian packages) are used because the upstream images cannot be pulled
# here; pass --bases upstream where they can.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/gateway-builder build --bases local --tag gateway-runtime:local "$@"
