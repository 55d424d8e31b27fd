#!/usr/bin/env bash
# Build the "bare host" image the deployment test applies the role to, tagged by a hash of
# this directory's build inputs, so an unchanged image is reused instead of rebuilt.
# Prints the tag. The base is the box image's (containers/build.sh makes it when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hash=$(cat "$here/Dockerfile" "$here/build.sh" | sha256sum | cut -c1-12)
tag="lager-bare-host:$hash"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"; exit 0
fi
base=lager-base:bookworm
if ! docker image inspect "$base" >/dev/null 2>&1; then
  if timeout 60 docker pull -q debian:bookworm >/dev/null 2>&1; then
    base=debian:bookworm
  else
    echo "bare-host: making $base with debootstrap (~70 s)" >&2
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" >/dev/null
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import - "$base" >/dev/null
  fi
fi
docker build -q --build-arg "BASE_IMAGE=$base" -t "$tag" "$here" >/dev/null
echo "$tag"
