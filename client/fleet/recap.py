"""The recap (Ansible's PLAY RECAP) and the fleet's one exit code."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lager import protocol

from .. import EXIT_INTERRUPTED
from .targets import fold

OK, FAILED, TIMEOUT, KILLED = "ok", "failed", "timeout", "killed"
UNREACHABLE, LOST, SKIPPED, RESERVED = "unreachable", "lost", "skipped", "reserved"
WAITING = "waiting"  # in the box's queue (--wait or CI=true); never a final state
EXIT_UNREACHABLE = 255
EXIT_RESERVED = protocol.EXIT_RESERVED
_FAILED_STATES = (FAILED, TIMEOUT, KILLED)


@dataclass
class Row:
    box: str
    state: str = SKIPPED  # never started, until the run says otherwise
    exit: int | None = None
    seconds: float = 0.0
    pauses: int = 0
    run_id: str = ""
    reason: str = ""  # unreachable, lost or reserved: why, and what to run
    group: str = ""
    holder: str = ""  # reserved: who holds the box (`name (fingerprint) [label]`)
    holds: list[dict[str, Any]] = field(default_factory=list)  # the box's records of it

    def settle(self, status: int) -> None:
        self.exit = status
        if status == 0:
            self.state = OK
        elif status == protocol.EXIT_TIMED_OUT:
            self.state = TIMEOUT
        elif 128 < status <= 128 + 64:  # 128+N: the script died of signal N
            self.state = KILLED
        else:
            self.state = FAILED

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def exit_code(rows: list[Row]) -> int:
    """0 when every box exits 0. Else, when a script failed: their shared code if all failed
    boxes agree, else 1. Else, a box unreachable or lost: 255. Else, a box reserved by
    someone else: 75 (ISSUE-NOTES 17: "try later" only when nothing else went wrong)."""
    failed = {r.exit for r in rows if r.state in _FAILED_STATES}
    if failed:
        return failed.pop() if len(failed) == 1 else 1  # type: ignore[return-value]
    if any(r.state in (UNREACHABLE, LOST) for r in rows):
        return EXIT_UNREACHABLE
    if any(r.state == RESERVED for r in rows):
        return EXIT_RESERVED
    return 0


def interrupted_code(rows: list[Row]) -> int:
    """After Ctrl-C: the rows' own code when every box's run ended with a status (a script
    that catches SIGINT and exits 0 gives 0, as on one box); 130 when a box never started or
    was left before its run ended, since then nothing said how it went."""
    code = exit_code(rows)
    if code == 0 and any(r.state in (SKIPPED, WAITING) for r in rows):
        return EXIT_INTERRUPTED
    return code


def _cells(row: Row, fold_ids: bool) -> list[str]:
    short = protocol.short_id(row.run_id) if row.run_id else "-"
    exit_text = "255" if row.state == UNREACHABLE else ("-" if row.exit is None else
                                                          str(row.exit))
    return [row.state, f"exit={exit_text}", f"time={row.seconds:.1f}s",
            f"pauses={row.pauses}", "run=*" if fold_ids else f"run={short}"]


def render(rows: list[Row], gather: bool) -> list[str]:
    lines = ["=== RECAP " + "=" * 60]
    if gather:
        groups: dict[tuple[str, ...], list[str]] = {}
        for row in rows:
            key = (row.state, str(row.exit), str(row.pauses), row.reason)
            groups.setdefault(key, []).append(row.box)
        for (state, code, pauses, reason), boxes in groups.items():
            exit_text = "255" if state == UNREACHABLE else ("-" if code == "None" else code)
            lines.append(f"{fold(boxes):<24} {state:<12} exit={exit_text:<4} pauses={pauses}"
                         + (f"  {reason}" if reason else ""))
        return lines
    width = max(len(r.box) for r in rows) if rows else 8
    for row in rows:
        state, code, seconds, pauses, run = _cells(row, False)
        lines.append(f"{row.box:<{width}}  {state:<12} {code:<9} {seconds:<11} {pauses:<9} "
                     f"{run}" + (f"  {row.reason}" if row.reason else ""))
    return lines


def as_json(fleet_id: str, rows: list[Row]) -> str:
    """One object keyed by box (ISSUE-NOTES 15)."""
    return json.dumps({"fleet": fleet_id, "exit": exit_code(rows),
                       "boxes": {r.box: r.as_dict() for r in rows}})
