"""The adapter from a box's run channel to PauseEvents (pauses.py).

A box with issue 14's framed run channel sends a structured PauseNotice before each banner:
`pause_event_of` turns it into a PauseEvent. RunStream leaves the banner's bytes out of the
live view (ISSUE-NOTES 16: the aggregated line replaces them); --output-dir and the JUnit body
keep them.

A box older than #14 sends no notice. There the cue is the banner's first line on the run's
stderr, and the data (run id, pause number, label, file, line, deadline) is the box's own
record of the pause, read from its `list` answer: nothing is taken from the banner's text.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lager.protocol.events import PauseNotice

from .pauses import PauseEvent

_START = b"=== lager breakpoint"
_RESUMED = (b"=== resumed", b"=== auto-resumed")
_DETAIL = b"    "
LOOKUP_FOR = 10.0  # the pause reaches the agent's registry about when its banner does


class BannerCue:
    """Per box: hides banner lines from the live view and reports pauses and resumes."""

    def __init__(self, on_pause: Callable[[], None], on_resume: Callable[[], None]) -> None:
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.in_banner = False

    def keep(self, line: bytes) -> bool:
        """False for a banner line (the live view leaves it out)."""
        if line.startswith(_START):
            self.in_banner = True
            self.on_pause()
            return False
        if self.in_banner and line.startswith(_DETAIL):
            return False
        self.in_banner = False
        if line.startswith(_RESUMED):
            self.on_resume()
            return False
        return True


def pause_event_of(box: str, notice: PauseNotice) -> PauseEvent:
    """Issue 14's pause notice as the fleet's PauseEvent."""
    return PauseEvent(box=box, run_id=notice.run_id, seq=notice.seq, label=notice.label,
                      file=notice.file, line=notice.line, deadline=notice.deadline_monotonic())


def pause_event(box: str, run_id: str, row: dict[str, Any] | None) -> PauseEvent | None:
    """A `list` row's pause as a PauseEvent (None when the run is not paused)."""
    pause = (row or {}).get("pause")
    if not pause or (row or {}).get("state") != "paused":
        return None
    remaining = pause.get("remaining")
    return PauseEvent(box=box, run_id=run_id, seq=int(pause["seq"]), label=pause.get("label"),
                      file=str(pause["file"]), line=int(pause["line"]),
                      deadline=None if remaining is None else time.monotonic() + remaining)


def lookup(box: str, rows: Callable[[], list[dict[str, Any]]], match: Callable[[dict[str, Any]],
           bool], seen_seq: int) -> PauseEvent | None:
    """The run's current pause, newer than seen_seq; waits (briefly) for the registry to have
    it, since the banner and the registration travel by different paths."""
    until = time.monotonic() + LOOKUP_FOR
    delay = 0.02
    while True:
        row = next((r for r in rows() if match(r)), None)
        event = pause_event(box, str((row or {}).get("id", "")), row)
        if event is not None and event.seq > seen_seq:
            return event
        if row is not None and row.get("state") == "exited":
            return None
        if time.monotonic() > until:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
