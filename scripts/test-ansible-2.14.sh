#!/usr/bin/env bash
# The deployment role under the oldest ansible-core it promises (#19): Debian 12's 2.14, beside
# the test dependency's current one that the suite itself uses. Makes a venv of its own with
# ansible-core 2.14 from PyPI (.venv-ansible-2.14/, kept for the next time), checks it is
# 2.14, and runs the deploy tier's three-box test with that ansible-playbook
# (LAGER_ANSIBLE_PLAYBOOK): the role applied to 3 containers over OpenSSH, then a second run
# that must report changed=0.
#
#   bash scripts/test-ansible-2.14.sh                       # the three-box test
#   bash scripts/test-ansible-2.14.sh -k "deploys_three or spec_example"   # more of the tier
#
# Needs a Docker engine (scripts/docker-up.sh starts one). LAGER_ANSIBLE_PLAYBOOK already set:
# that playbook is used instead (Debian's /usr/bin/ansible-playbook, say), checked the same.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/pytest ] || bash scripts/setup.sh
VENV=${LAGER_ANSIBLE_214_VENV:-.venv-ansible-2.14}
if [ -z "${LAGER_ANSIBLE_PLAYBOOK:-}" ]; then
  if [ ! -x "$VENV/bin/ansible-playbook" ]; then
    echo "test-ansible-2.14: making $VENV with ansible-core 2.14 (from PyPI)" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "ansible-core>=2.14,<2.15" \
      2>&1 | grep -v -E "^WARNING: Location" || true
  fi
  LAGER_ANSIBLE_PLAYBOOK="$(cd "$VENV/bin" && pwd)/ansible-playbook"
fi
version=$("$LAGER_ANSIBLE_PLAYBOOK" --version 2>/dev/null | head -1 || true)
case "$version" in
  *"[core 2.14."*) echo "test-ansible-2.14: $version ($LAGER_ANSIBLE_PLAYBOOK)" >&2 ;;
  *) echo "test-ansible-2.14: $LAGER_ANSIBLE_PLAYBOOK is not ansible-core 2.14: ${version:-it does not run}" >&2
     exit 1 ;;
esac
bash scripts/docker-up.sh
export LAGER_ANSIBLE_PLAYBOOK
if [ $# -eq 0 ]; then
  set -- -k deploys_three
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_deploy.py "$@"
