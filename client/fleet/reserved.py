"""A box reserved by someone else, in a fleet (#18's "Shared boxes", ISSUE-NOTES 17): who holds
it, in the words `lager boxes status` uses, for the recap row, the JUnit `skipped` message and
the line an instrument command prints.

The box decides and says so with exit 75; the holder comes from the structured reason it sends
beside the refusal (`{"reserved": [hold, ...]}` on a request's stdout, or the queue's), else
from asking the box's `reservation` status right after a refused run (a run's stdout is the
script's, so the refusal there is a line and a status), else from the refusal line itself.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lager import protocol
from lager.errors import LagerError

from ..commands.boxes import _when, _who
from ..context import exchange

# The box's refusal line (box_agent/reservations.py): "box reserved: held by WHO for WHAT
# since WHEN[ (and N more)]; ...": the fallback when no structured reason came.
_LINE = re.compile(r"held by (?P<who>.+?) for (?P<what>.+?) since "
                   r"(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)")


@dataclass
class Holder:
    who: str  # `name (fingerprint) [label]`, as `lager boxes status` shows it
    reason: str  # `reserved by WHO for WHAT since WHEN`: the row's and JUnit's words
    holds: list[dict[str, Any]]  # the box's own records, for --json


def _what(hold: dict[str, Any]) -> str:
    kind = hold.get("kind")
    if kind == "run":
        run_id = str(hold.get("run_id") or "")
        paused = hold.get("paused")
        pause = f', paused at "{paused}"' if paused is not None else ""
        return f"run {protocol.short_id(run_id) if run_id else '?'} " \
               f"({hold.get('script', '')}{pause})"
    if kind == "lock":
        return "a lock" + (f" ({hold['reason']})" if hold.get("reason") else "")
    return "a run about to start"


def of_holds(holds: list[dict[str, Any]], fallback: str = "") -> Holder | None:
    """The first hold names the holder (the box lists them in that order)."""
    usable = [h for h in holds if isinstance(h, dict) and h.get("name") is not None]
    if not usable:
        return of_line(fallback) if fallback else None
    first = usable[0]
    more = f" (and {len(usable) - 1} more)" if len(usable) > 1 else ""
    since = f" since {_when(float(first['since']))}" if first.get("since") else ""
    who = _who(first)
    return Holder(who, f"reserved by {who} for {_what(first)}{since}{more}", usable)


def of_details(details: Any, fallback: str = "") -> Holder | None:
    """From the structured reason a refused request carries: {"reserved": [hold, ...]}."""
    holds = details.get("reserved") if isinstance(details, dict) else None
    return of_holds(holds if isinstance(holds, list) else [], fallback)


def of_output(out: str, fallback: str = "") -> Holder | None:
    """A refused request's stdout (its JSON line), else the refusal line."""
    for line in reversed(out.splitlines()):
        try:
            found = of_details(json.loads(line))
        except ValueError:
            continue
        if found is not None:
            return found
    return of_line(fallback) if fallback else None


def of_line(line: str) -> Holder | None:
    match = _LINE.search(line)
    if match is None:
        return None
    who = match["who"]
    return Holder(who, f"reserved by {who} for {match['what']} since {match['when']}", [])


def ask_box(conn: Any, refusal_line: str) -> Holder:
    """Who holds the box, after it refused our run: the refusal line names the holder as the
    box decided; its status adds that holder's records (or names one when the line cannot)."""
    holds: list[dict[str, Any]] = []
    try:
        out, _, status = exchange(conn, protocol.SUB_RESERVATION, json.dumps({"op": "status"}),
                                  None, timeout=30)
        if status == 0:
            holds = [h for h in json.loads(out).get("holds", []) if isinstance(h, dict)]
    except (LagerError, OSError, EOFError, ValueError, AttributeError):
        holds = []  # the refusal line still names the holder
    found = of_line(refusal_line)
    if found is not None:
        found.holds = [h for h in holds if h.get("name") is not None and _who(h) == found.who]
        return found
    found = of_holds(holds)
    if found is not None:
        return found
    text = refusal_line.strip() or "the box is reserved"
    return Holder("", text if text.startswith("reserved") else f"reserved: {text}", [])
