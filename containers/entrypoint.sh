#!/bin/sh
# Provision box keys, then run the agent in the foreground (as PID 1's child under `init`).
# Box keys come from a mounted file (/etc/lager/authorized_keys) and/or the env var
# LAGER_BOX_AUTHORIZED_KEYS (one OpenSSH public key per line); both may be given.
set -eu
state=${LAGER_BOX_STATE:-/var/lib/lager-box}

authorize_lines() {
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    lager-box authorize --state-dir "$state" "$line" >/dev/null
  done
}
if [ -f /etc/lager/authorized_keys ]; then
  authorize_lines < /etc/lager/authorized_keys
fi
if [ -n "${LAGER_BOX_AUTHORIZED_KEYS:-}" ]; then
  printf '%s\n' "$LAGER_BOX_AUTHORIZED_KEYS" | authorize_lines
fi

set -- --listen "0.0.0.0:2222" --state-dir "$state" --name "${LAGER_BOX_NAME:-$(hostname)}" "$@"
if [ -n "${LAGER_RUN_AS:-}" ]; then
  set -- "$@" --run-as "$LAGER_RUN_AS"
fi
if [ -n "${LAGER_BENCH:-}" ]; then
  set -- "$@" --bench "$LAGER_BENCH"
fi
exec lager-box serve "$@"
