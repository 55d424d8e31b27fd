"""Human formatting of the instrument answers (`lager supply|battery|adc|load`, `lager nets`).

Click-free, like run_views.py, so the fast path (client/fastpath.py) prints exactly what the
click commands (client/commands/instruments.py) print without loading click.
"""
from __future__ import annotations

from lager import protocol

# Not typing.TYPE_CHECKING: typing costs ~5 ms of a short command's start (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:  # `lager nets` needs no kind: the registry loads only for a kind's command
    from typing import Any

    from lager.bench.kinds.spec import Kind, Verb


def show_answer(kind: Kind, verb: Verb, reading: bool, answer: dict[str, Any]) -> str:
    if verb.show is not None and (reading or verb.takes is None):
        return verb.show(answer)
    return kind.line(answer)


def kind_rows(kind: Kind, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["kind"] == kind.net_type]


def kind_table(kind: Kind, rows: list[dict[str, Any]]) -> list[str]:
    """`lager KIND` without a net: that kind's nets (rows already filtered), one per line."""
    if not rows:
        return [f"no {kind.net_type} nets on this box"]
    return [_net_line(row, row["resource"]) for row in rows]


def holder(row: dict[str, Any]) -> str:
    held = row.get("held_by")
    if not held:
        return "free"
    if held.get("run_id"):
        paused = f', paused "{held["paused"]}"' if held.get("paused") else ""
        return f"held by run {protocol.short_id(held['run_id'])} ({held.get('script')}{paused})"
    return f"held by {held.get('script')} (pid {held.get('pid')})"


def nets_table(rows: list[dict[str, Any]]) -> list[str]:
    """`lager nets`: every net, its instrument and who holds it, one per line."""
    return [_net_line(row, holder(row)) for row in rows]


def _net_line(row: dict[str, Any], last: str) -> str:
    channel = f" ch{row['channel']}" if row.get("channel") is not None else ""
    return f"{row['name']:<10} {row['kind']:<12} {row['instrument'] + channel:<16} {last}"
