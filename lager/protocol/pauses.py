"""The `pauses` subsystem: the box's paused runs, then every change, one JSON line each.

Opened (`ssh -s box pauses`, or a standalone keeper: client/pause_table.py), the box writes one
PauseSnapshot (every run paused now, with its pause number), then one line per change, as it
happens: a PauseNotice when a run pauses at N, a ResumeNotice when pause N is over (`how`:
enter, continue, timeout, or `gone` when the run's script went away while paused). Both are
the run channel's own event messages (lager.protocol.events) without their banners. The
snapshot and the watcher's registration happen in one step of the box's event loop, so no
change falls between them. The box takes no input on this channel (a byte sent is refused in
one line), and drops a watcher that lets its unread lines pile up (BACKLOG_LIMIT): it may
open the subsystem again and gets a new snapshot.
"""
from __future__ import annotations

from .codec import Message, decode_one_of, field, message
from .events import PauseNotice, ResumeNotice

# How many bytes of unsent lines the box holds for one watcher before it drops it.
BACKLOG_LIMIT = 64 * 1024
# Longest line a watcher should accept (a snapshot of many paused runs is one line).
MAX_WATCH_LINE = 4 * 1024 * 1024
# ResumeNotice.how when the pause ended without a resume (the script exited or was killed).
GONE = "gone"


@message
class PauseSnapshot(Message):
    """The first line on `pauses`: every run paused now, as its PauseNotice (no banner)."""

    OP = "snapshot"
    WHAT = "pause snapshot"
    v: int
    paused: list[PauseNotice] = field(default_factory=list)


WatchRecord = PauseSnapshot | PauseNotice | ResumeNotice


def decode_watch_record(data: bytes | str) -> WatchRecord:
    return decode_one_of(data, (PauseSnapshot, PauseNotice, ResumeNotice),  # type: ignore
                         "pauses record")
