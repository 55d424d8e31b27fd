"""Which command lines take the fleet path. Imported by every `lager` start, so it imports
nothing: no click, no ClusterShell.

ISSUE-NOTES 15: any set syntax (brackets, `@` naming a group, a comma, `&`, `!`) is a fleet,
even when it expands to one box; a plain name, or #12's `user@host:port`, is not.
"""
from __future__ import annotations

import os

# Checked by hand, not with `re`: this module loads on every `lager` start.
_HEX = frozenset("0123456789abcdef")
_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_ID_CHARS = frozenset("0123456789abcdefABCDEF.#\u2026")
_ID_OPTIONS = ("--continue", "--console", "--kill", "--reattach")


def is_fleet_id(value: str) -> bool:
    """`f-` and 4 to 16 lower-case hex digits (lager.protocol.valid_fleet_id, without its
    imports)."""
    return value.startswith("f-") and 4 <= len(value) - 2 <= 16 and set(value[2:]) <= _HEX


def is_set_syntax(value: str | None) -> bool:
    """True for a node set, False for one box (a name, `user@host`, `host:port`, `[v6]:port`)."""
    if not value:
        return False
    value = value.strip()
    if value.startswith("[") and "]:" in value:
        return False  # `[::1]:2222`, an address with its port
    return value.startswith("@") or any(c in value for c in ",&!^[")


def _values(argv: list[str], name: str) -> list[tuple[int, str]]:
    """(index of the value, value) of each `name VALUE` / `name=VALUE` before `--`."""
    found = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            break
        if token == name and i + 1 < len(argv):
            found.append((i + 1, argv[i + 1]))
            i += 2
            continue
        if token.startswith(name + "="):
            found.append((i, token[len(name) + 1:]))
        i += 1
    return found


def box_value(argv: list[str]) -> str | None:
    given = _values(argv, "--box")
    return given[-1][1] if given else os.environ.get("LAGER_BOX")


def split_box_id(value: str) -> tuple[str, str] | None:
    """`BOX:ID`, where an id goes: BOX a plain name, ID what a banner prints (hex, `…`, #N)."""
    box, sep, run_id = value.strip().partition(":")
    if not sep or not box or not run_id or box[0] in "._-":
        return None
    if not set(box) <= _NAME or not set(run_id) <= _ID_CHARS:
        return None
    return box, run_id


def rewrite_box_id(argv: list[str]) -> list[str] | None:
    """`--continue BOX:ID` (or --console, --kill, --reattach) without a set `--box`: today's
    single-box command, `--continue ID --box BOX`. None when there is no such id."""
    for option in _ID_OPTIONS:
        for index, value in _values(argv, option):
            parts = split_box_id(value)
            if parts is None:
                continue
            box, run_id = parts
            out = list(argv)
            out[index] = f"{option}={run_id}" if out[index].startswith(option + "=") \
                else run_id
            cut = argv.index("--") if "--" in argv else len(argv)
            return [*out[:cut], "--box", box, *out[cut:]]
    return None


def wants_fleet(argv: list[str]) -> bool:
    """The fleet path: a set `--box`, `--continue f-…|all`, `--kill f-…`. An `--inventory`
    alone is not one (ISSUE-NOTES 15): a plain name stays on today's path (inventory_to_env)."""
    if not argv or argv[0] in ("boxes", "groups"):
        return False  # config commands (their --group and --inventory are their own)
    if is_set_syntax(box_value(argv)):
        return True
    if any(v == "all" or is_fleet_id(v) for _, v in _values(argv, "--continue")):
        return True
    return any(is_fleet_id(v) for _, v in _values(argv, "--kill"))


def inventory_to_env(argv: list[str]) -> list[str]:
    """The single-box path: `--inventory FILE` becomes $LAGER_INVENTORY (what the box lookup,
    client/config.py, reads when a name is no lager box), and leaves the argv, so the flag and
    the env var behave the same. Config commands keep theirs."""
    given = _values(argv, "--inventory")
    if not given or not argv or argv[0] in ("boxes", "groups"):
        return argv
    os.environ["LAGER_INVENTORY"] = given[-1][1]
    drop: set[int] = set()
    for index, _ in given:
        joined = argv[index].startswith("--inventory=")
        drop |= {index} if joined else {index - 1, index}
    return [a for i, a in enumerate(argv) if i not in drop]
