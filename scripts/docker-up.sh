#!/usr/bin/env bash
# Make a Docker engine answer on this machine: install Debian's docker.io and docker-compose
# when absent, start dockerd in the background when it is not running, wait until it answers.
# Exits non-zero when that cannot be done (test.sh makes that fatal in CI).
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker-up: no Docker engine answers, and starting one needs root" >&2
  exit 1
fi
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "docker-up: installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A dockerd killed with its session leaves a pid file and maybe a dying process behind; start
# one whenever none is alive and answering, and start again if the one we started died.
start_dockerd() {
  echo "docker-up: starting dockerd" >&2
  nohup dockerd >>/var/log/lager-dockerd.log 2>&1 &
  started=$!
}
started=""
live=""
for pid in $(pgrep -x dockerd || true); do
  grep -q '^State:.*[RSD]' "/proc/$pid/status" 2>/dev/null && live=$pid
done
[ -n "$live" ] || start_dockerd
for _ in $(seq 120); do
  docker info >/dev/null 2>&1 && exit 0
  if [ -n "$started" ] && ! kill -0 "$started" 2>/dev/null; then
    rm -f /var/run/docker.pid
    start_dockerd
  fi
  sleep 1
done
echo "docker-up: dockerd did not answer within 120 s; see /var/log/lager-dockerd.log" >&2
tail -n 20 /var/log/lager-dockerd.log >&2 || true
exit 1
