#!/usr/bin/env bash
# The whole test suite, every tier, from a fresh clone: `bash scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/docker-up.sh ]; then
  # The container tier needs a Docker engine; in CI it must run, so a failure here is fatal.
  bash scripts/docker-up.sh || { [ "${CI:-}" = true ] && exit 1; echo "test: no Docker engine; the container tier will be skipped" >&2; }
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
