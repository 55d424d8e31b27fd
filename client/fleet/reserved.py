"""A box reserved by someone else, in a fleet (#18's "Shared boxes", ISSUE-NOTES 17): who holds
it, in the words `lager boxes status` uses, for the recap row, the JUnit `skipped` message and
the line an instrument command prints.

The box decides and says so with exit 75; the holder comes from the structured reason it sends
beside the refusal (a Refusal, `{"reserved": [hold, ...]}`, on a request's stdout or the
queue's), else from asking the box's `reservation` status right after a refused run (a run's
stdout is the script's, so the refusal there is a line and a status), else from the refusal
line itself. Holds are lager.protocol.reservation's typed Hold, worded by its who()/what().
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lager import protocol
from lager.errors import LagerError
from lager.protocol.codec import ProtocolError
from lager.protocol.reservation import Hold, ReservationStatus, StatusRequest, when

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


def _holds(raw: Any) -> list[Hold]:
    """The box's hold records that read as holds (a malformed one is left out, not fatal)."""
    holds = []
    for item in raw if isinstance(raw, list) else []:
        try:
            holds.append(Hold.from_dict(item))
        except ProtocolError:
            continue
    return holds


def of_holds(holds: list[Hold], fallback: str = "") -> Holder | None:
    """The first hold names the holder (the box lists them in that order)."""
    if not holds:
        return of_line(fallback) if fallback else None
    first = holds[0]
    more = f" (and {len(holds) - 1} more)" if len(holds) > 1 else ""
    since = f" since {when(first.since)}" if first.since else ""
    return Holder(first.who(), f"reserved by {first.who()} for {first.what()}{since}{more}",
                  [h.to_dict() for h in holds])


def of_details(details: Any, fallback: str = "") -> Holder | None:
    """From the structured reason a refused request carries: {"reserved": [hold, ...]}."""
    raw = details.get("reserved") if isinstance(details, dict) else None
    return of_holds(_holds(raw), fallback)


def of_line(line: str) -> Holder | None:
    match = _LINE.search(line)
    if match is None:
        return None
    who = match["who"]
    return Holder(who, f"reserved by {who} for {match['what']} since {match['when']}", [])


def ask_box(conn: Any, refusal_line: str) -> Holder:
    """Who holds the box, after it refused our run: the refusal line names the holder as the
    box decided; its status adds that holder's records (or names one when the line cannot)."""
    holds: list[Hold] = []
    try:
        out, _, status = exchange(conn, protocol.SUB_RESERVATION,
                                  StatusRequest().as_line(), None, timeout=30)
        if status == 0:
            holds = ReservationStatus.decode(out).holds
    except (LagerError, OSError, EOFError, AttributeError):
        holds = []  # the refusal line still names the holder (ProtocolError is a LagerError)
    found = of_line(refusal_line)
    if found is not None:
        found.holds = [h.to_dict() for h in holds if h.who() == found.who]
        return found
    found = of_holds(holds)
    if found is not None:
        return found
    text = refusal_line.strip() or "the box is reserved"
    return Holder("", text if text.startswith("reserved") else f"reserved: {text}", [])
