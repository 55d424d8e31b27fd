"""Breakpoints across a fleet: one aggregated line per breakpoint, Enter resumes the boxes
paused at that moment (never a later pause), each pause keeping its own timer on its box.

The view is fed PauseEvents, a small interface of its own, by one adapter function
(pause_adapter.py); issue 14's structured pause notice can feed it instead without a change
here.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .targets import fold


@dataclass(frozen=True)
class PauseEvent:
    box: str
    run_id: str
    seq: int
    label: str | None
    file: str
    line: int
    deadline: float | None  # time.monotonic() of its auto-resume; None: it waits for a resume

    @property
    def where(self) -> tuple[str, int, str]:
        return (self.file, self.line, self.label or "")


Resume = Callable[[PauseEvent], None]


class PauseBoard:
    """Which box is paused where; draws the aggregated line through `show`."""

    def __init__(self, fleet_id: str, show: Callable[[str], None], resume: Resume,
                 say: Callable[[str], None] | None = None) -> None:
        self.fleet_id = fleet_id
        self.show = show
        self.say = say or (lambda _text: None)
        self.resume_one = resume
        self.lock = threading.Lock()
        self.paused: dict[str, PauseEvent] = {}
        self.live: set[str] = set()  # boxes whose run has started and not ended
        self.started_boxes: set[str] = set()  # the denominator: every box whose run started
        self.pauses_seen: dict[str, int] = {}

    def started(self, box: str) -> None:
        with self.lock:
            self.live.add(box)
            self.started_boxes.add(box)
        self._redraw()

    def ended(self, box: str) -> None:
        with self.lock:
            self.live.discard(box)
            self.paused.pop(box, None)
        self._redraw()

    def paused_at(self, event: PauseEvent) -> None:
        with self.lock:
            self.paused[event.box] = event
            self.pauses_seen[event.box] = self.pauses_seen.get(event.box, 0) + 1
        self._redraw()

    def resumed(self, box: str, seq: int | None = None) -> None:
        with self.lock:
            current = self.paused.get(box)
            if current is not None and (seq is None or current.seq <= seq):
                del self.paused[box]
        self._redraw()

    def enter(self) -> list[PauseEvent]:
        """Resume what is paused now. A pause that begins after this moment is not touched:
        each resume names its pause (`ID#N`), so a late one answers "already resumed"."""
        with self.lock:
            now = list(self.paused.values())
        if not now:
            self.say("lager: nothing is paused; Enter resumes only the boxes paused when it "
                     "is pressed")
        else:
            self.say(f"lager: resuming {fold([e.box for e in now])}")
        for event in now:
            self.resume_one(event)
        return now

    def lines(self) -> list[str]:
        with self.lock:
            paused = list(self.paused.values())
            live = sorted(self.live)
            total = len(self.started_boxes)
        if not paused:
            return []
        by_where: dict[tuple[str, int, str], list[PauseEvent]] = {}
        for event in paused:
            by_where.setdefault(event.where, []).append(event)
        running = [b for b in live if b not in self.paused]
        out = []
        for (file, line, label), events in sorted(by_where.items(),
                                                  key=lambda kv: -len(kv[1])):
            text = f'"{label}" ' if label else ""
            others = f"(running: {fold(running)})  " if running else ""
            out.append(f"=== {len(events)}/{total} paused at {file}:{line} {text}{others}"
                       f"resume: Enter, or lager python --continue {self.fleet_id}")
        return out

    def _redraw(self) -> None:
        lines = self.lines()
        self.show("\n".join(lines))
