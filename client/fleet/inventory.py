"""Boxes and groups from an Ansible inventory, through `ansible-inventory -i FILE --list`.

That JSON is what every inventory plugin speaks (YAML, INI, executable scripts, NetBox), so
lager parses none of their formats. Each host's `ansible_host` is its address, `lager_port`
(default 2222) and `lager_user` (default lager) how lager reaches it. It takes about 0.6 s, so
a command runs it once.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lager import protocol
from lager.errors import UsageError

from ..config import ENV_INVENTORY, Box

_IMPLICIT_GROUPS = frozenset({"all", "ungrouped"})


@dataclass
class Inventory:
    source: str
    boxes: dict[str, Box] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    implicit: dict[str, list[str]] = field(default_factory=dict)  # @all, @ungrouped


def inventory_file(given: str | None) -> str | None:
    return given or os.environ.get(ENV_INVENTORY) or None


def _run(path: str) -> dict[str, Any]:
    tool = shutil.which("ansible-inventory")
    if tool is None:
        raise UsageError(f"--inventory {path}: `ansible-inventory` is not installed "
                         "(pip install ansible-core)")
    if not Path(path).exists():
        raise UsageError(f"--inventory {path}: no such file")
    # Without this, an inventory no plugin can parse is a warning and an empty list.
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "false"}
    done = subprocess.run([tool, "-i", path, "--list"], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=120)
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else "no reason")
        raise UsageError(f"--inventory {path}: ansible-inventory cannot read it: "
                         f"{why.removeprefix('[ERROR]: ').strip()[:300]}")
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise UsageError(f"--inventory {path}: ansible-inventory printed no JSON") from None
    if not isinstance(data, dict):
        raise UsageError(f"--inventory {path}: ansible-inventory printed no JSON object")
    return data


def _members(data: dict[str, Any], group: str, seen: set[str]) -> set[str]:
    """A group's hosts, its children's included (a group listing itself does not loop)."""
    if group in seen:
        return set()
    seen.add(group)
    entry = data.get(group) or {}
    hosts = {str(h) for h in entry.get("hosts", [])}
    for child in entry.get("children", []):
        hosts |= _members(data, str(child), seen)
    return hosts


def _port(raw: Any, host: str, path: str) -> int:
    try:
        port = int(raw)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise UsageError(f"--inventory {path}: host {host}: lager_port {raw!r} is not a port")
    return port


def read(path: str) -> Inventory:
    data = _run(path)
    hostvars: dict[str, Any] = (data.get("_meta") or {}).get("hostvars") or {}
    inv = Inventory(source=path)
    hosts = _members(data, "all", set())
    for name in sorted(hosts | set(hostvars)):
        values = hostvars.get(name) or {}
        inv.boxes[name] = Box(name=name, host=str(values.get("ansible_host") or name),
                              port=_port(values.get("lager_port", protocol.DEFAULT_PORT),
                                         name, path),
                              user=str(values.get("lager_user") or "lager"), inventory=path)
    # An empty group shows only as some group's child.
    named = {g for g in data if g != "_meta"}
    named |= {str(c) for entry in data.values() if isinstance(entry, dict)
              for c in entry.get("children", [])}
    for group in sorted(named):
        members = sorted(_members(data, group, set()))
        (inv.implicit if group in _IMPLICIT_GROUPS else inv.groups)[group] = members
    inv.implicit["all"] = sorted(inv.boxes)  # every host, whether or not a group names it
    if not inv.boxes:
        raise UsageError(f"--inventory {path}: the inventory names no hosts")
    return inv
