#!/usr/bin/env bash
# Build the box image with no image registry: wheels are made on the host, and the base image
# is the public one when it can be pulled, else a local Debian bookworm made with debootstrap
# and `docker import` (kept in Docker's image store, so later runs reuse it).
# Usage: containers/build.sh [IMAGE_TAG]    (default lager-box:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-lager-box:dev}
public_base=${LAGER_PUBLIC_BASE:-python:3.11-slim-bookworm}
local_base=lager-base:bookworm

base=""
if docker image inspect "$public_base" >/dev/null 2>&1 || \
   timeout 60 docker pull -q "$public_base" >/dev/null 2>&1; then
  base=$public_base
elif docker image inspect "$local_base" >/dev/null 2>&1; then
  base=$local_base
else
  echo "build: $public_base cannot be pulled; making $local_base with debootstrap (~70 s)" >&2
  command -v debootstrap >/dev/null || { echo "build: debootstrap is missing" >&2; exit 1; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$local_base" >/dev/null
  base=$local_base
fi

# Wheels for everything lager needs, built here so `docker build` needs no network.
wheels=containers/.wheels
rm -rf "$wheels"
.venv/bin/python -m pip wheel -q --disable-pip-version-check -w "$wheels" . 2>&1 \
  | grep -v "^WARNING: Location" || true
ls "$wheels"/lager_over_ssh-*.whl >/dev/null
# The per-run monitor in C (box_agent/monitor_build.py), built here: the image has no compiler.
# Both are Debian bookworm, so the host's build runs there.
cp "$(.venv/bin/python -m box_agent.monitor_build)" "$wheels/"

docker build -q --build-arg "BASE_IMAGE=$base" -t "$tag" -f containers/Dockerfile containers >/dev/null
echo "$tag"
