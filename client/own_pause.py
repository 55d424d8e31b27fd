"""The pause an attached run is at, as its follower saw it (#14's notices), so the run serving
as keeper (client/run_keeper.py) numbers a bare `--continue` of its own run with no round trip
to the box (ISSUE-NOTES 9; the other ids are numbered from the box's `list`, keeper_retry).

Race-free in this sense: the number handed out is the last pause the follower showed (the banner
the engineer answers), read under a lock that also covers the notices. A notice that comes while
a numbered request is in flight changes nothing for it: if pause N was resumed meanwhile (Enter,
a timeout, someone else), `ID#N` gets "already resumed" from the box and never resumes pause
N + 1; the `list` pin has the same window between its answer and the continue. Where the view
could be stale, it gives no number and the caller asks the box:
- after a resume notice, before the next pause notice (the run is running, or is pausing now);
- while the run's connection is down or being re-made (pauses may be resumed meanwhile);
  a reconnect starts from the box's Hello, which forgets the number until the box repeats
  the current pause's notice.

The number goes with the id as typed (`TYPED#N`, not the full id): the box resolves the id as it
would the bare one, so a prefix that also names another run is still refused as ambiguous.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from lager import protocol
from lager.protocol.events import Event, Hello, PauseNotice, ResumeNotice

from .run_stream import OnEvent

_T = TypeVar("_T")


class OwnPause:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run_id: str | None = None
        self._seq: int | None = None  # the pause shown last, None when none is current

    def see(self, event: Event) -> None:
        """The follower's on_event: Hello, PauseNotice and ResumeNotice, in order."""
        with self._lock:
            if isinstance(event, Hello):
                self._run_id, self._seq = event.run_id, None
            elif isinstance(event, PauseNotice) and event.run_id == self._run_id:
                self._seq = event.seq
            elif isinstance(event, ResumeNotice) and event.seq == self._seq:
                self._seq = None

    def chain(self, then: OnEvent | None) -> OnEvent:
        """An on_event that notes the event, then hands it to `then` (the caller's own)."""
        def on_event(event: Event) -> None:
            self.see(event)
            if then is not None:
                then(event)

        return on_event

    def reconnecting(self, reconnect: Callable[[int, int], _T]) -> Callable[[int, int], _T]:
        """The follower's reconnect, forgetting the number first: pauses may be resumed while
        the link is down, and the new link is up before its Hello is read."""
        def again(stdout_at: int, stderr_at: int) -> _T:
            with self._lock:
                self._seq = None
            return reconnect(stdout_at, stderr_at)

        return again

    def pin(self, line: str, link_up: Callable[[], bool]) -> str | None:
        """`TYPED#N` for a bare id that names this run while it is at pause N; else None."""
        typed = line.strip()
        if not typed or protocol.PAUSE_MARK in typed:
            return None
        with self._lock:
            if self._run_id is None or self._seq is None or \
                    not protocol.id_matches(typed, self._run_id) or not link_up():
                return None
            return f"{typed}{protocol.PAUSE_MARK}{self._seq}"
