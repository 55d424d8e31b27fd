#!/usr/bin/env bash
# Shared set-up for the README commands: a .venv with lager installed, and the OS tools the
# tests and benchmarks use (OpenSSH client and server). Safe to run again.
# The editable install uses "compat" mode (a plain .pth entry): the default import-hook finder
# adds ~25 ms to every `lager` start.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install ${need_apt[*]} (needed by the tests)" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" --config-settings editable_mode=compat 2>&1 \
  | grep -v -E "^(WARNING: Location|  )" || true
.venv/bin/python -c "import lager, box_agent, client, paramiko, asyncssh, pyvisa_sim" \
  || { echo "setup: the install failed" >&2; exit 1; }
# The per-run monitor in C (box_agent/monitor/monitor.c): ~0.2 MiB a run, not ~8 in Python.
# CI must test the monitor the boxes run: there, no build is a failure, not a quiet fallback.
if ! .venv/bin/python -m box_agent.monitor_build >/dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "setup: the C monitor cannot be built (no C compiler?); CI needs it" >&2
    exit 1
  fi
  echo "setup: runs will be monitored in Python (no C compiler?)" >&2
fi
