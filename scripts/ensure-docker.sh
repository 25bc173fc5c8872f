#!/usr/bin/env bash
# Make sure a Docker engine answers on /var/run/docker.sock: install Debian's docker.io if needed
# and start dockerd in the background. Idempotent; safe to call from tests and CI.
set -euo pipefail
DOCKER=/usr/bin/docker
log() { echo "[ensure-docker] $*" >&2; }

if [ -n "${DOCKER_HOST:-}" ] && "$DOCKER" version >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 || [ ! -x "$DOCKER" ]; then
  log "installing docker.io (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q docker.io >/dev/null
fi
for tool in debootstrap; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "installing $tool"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$tool" >/dev/null
  fi
done
if "$DOCKER" version >/dev/null 2>&1; then
  exit 0
fi
log "starting dockerd"
mkdir -p /var/log
nohup dockerd --storage-driver=overlay2 >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if "$DOCKER" version >/dev/null 2>&1; then
    log "dockerd is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not start; last log lines:"
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
