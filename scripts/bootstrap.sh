#!/usr/bin/env bash
# Set up a fresh machine for gateway-builder: system tools (git, shellcheck, debootstrap,
# Docker engine) and a project virtualenv in .venv with the package and its test/dev extras.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[bootstrap] $*" >&2; }

need_apt=()
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  log "installing gateway-builder (editable) with test and dev extras"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test,dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

bash scripts/ensure-docker.sh
log "ready: .venv/bin/gateway-builder $(.venv/bin/gateway-builder --version | cut -d' ' -f2)"
