"""Lager's own groups: `lager boxes add NAME --group line1 [--group rack2]`, `lager groups`.

Kept beside boxes.json in groups.json ({group: [box, ...]}), so boxes.json keeps its format
and a lager without fleets still reads it.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from lager.errors import LagerError, UsageError

from ..config import Config

_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _path(config: Config) -> Path:
    return config.root / "groups.json"


def check_group_name(name: str) -> str:
    if not _GROUP.match(name):
        raise UsageError(f"group name {name!r} must be letters, digits, '.', '_' or '-'")
    return name


def load(config: Config) -> dict[str, list[str]]:
    path = _path(config)
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {str(g): [str(b) for b in members] for g, members in raw.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise LagerError(f"{path} is damaged ({exc}); fix or remove it") from None


def _save(config: Config, groups: dict[str, list[str]]) -> None:
    config.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = _path(config)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({g: sorted(set(m)) for g, m in sorted(groups.items()) if m},
                              indent=2))
    tmp.replace(path)


def set_box_groups(config: Config, box: str, names: list[str]) -> None:
    """BOX belongs to exactly these groups from now on (adding a known box updates it)."""
    for name in names:
        check_group_name(name)
    groups = load(config)
    for members in groups.values():
        if box in members:
            members.remove(box)
    for name in names:
        groups.setdefault(name, []).append(box)
    _save(config, groups)


def forget_box(config: Config, box: str) -> None:
    groups = load(config)
    if any(box in m for m in groups.values()):
        _save(config, {g: [b for b in m if b != box] for g, m in groups.items()})
