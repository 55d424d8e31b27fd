"""Where a run's output lands on the client, plus the live auto-resume countdown.

Output is written by writer threads, in the order it arrived, so the loop that talks to the
box (client/follow.py) never waits on a slow reader: a stalled pipe or terminal can hold up the
output, never Ctrl-C. When stdout and stderr end in one place (both terminals, as a rule the
same one, or one pipe or file: `2>&1 | tee`), one writer takes both in arrival order, so a
banner never shows before the line printed ahead of it; otherwise each stream has its own
writer, so a stalled `| less` never holds back stderr.

The loop keeps the queue short (it stops reading the channel while the queue is full, which is
what backpressures the box), except after Ctrl-C: from then on what the reader cannot take is
dropped and counted, as a terminal flushes its output queue on ^C.

The countdown is one status line under the banner, redrawn in place once a second; it is only
drawn when stderr is a terminal, never into pipes or CI logs. Its deadline comes from the box's
pause notice (`event`), never from the banner's text.
"""
from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections import deque

# The console's path uses write_all alone: typing and the event classes (dataclasses) are
# loaded where a run's output needs them, not for every console (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from lager.protocol.events import Event

HIGH_WATER = 1 << 20  # bytes queued on a stream above which the loop stops reading the box
# After Ctrl-C, bytes kept for a reader that is not keeping up; stderr (the script's last words,
# a traceback) gets more room than a stdout flood.
LOSSY_KEEP = {1: 256 * 1024, 2: 4 << 20}


def write_all(out: BinaryIO, data: bytes | memoryview) -> None:
    """Every byte, to the file descriptor itself: a buffered writer on a pipe was seen to drop
    data when the client was stopped and continued (Ctrl-Z, then fg) mid-write."""
    out.flush()
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        out.write(data)
        out.flush()
        return
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


class _Stream:
    """One output stream's queue, drained by its own thread: a stalled stdout reader never
    holds back stderr (where the script's last words and lager's notices go)."""

    def __init__(self, number: int, out: BinaryIO) -> None:
        self.number = number
        self.out = out
        # (arrival number, bytes): a memoryview when the channel handed one (follow.py)
        self.queue: deque[tuple[int, bytes | memoryview]] = deque()
        self.queued = 0
        self.writing = False
        self.broken = False  # the reader went away (EPIPE and the like)


class RunOutput:
    def __init__(self, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 countdown: bool | None = None, wake: Callable[[], None] | None = None) -> None:
        self.countdown = sys.stderr.isatty() if countdown is None else countdown
        self._streams = {1: _Stream(1, stdout or sys.stdout.buffer),
                         2: _Stream(2, stderr or sys.stderr.buffer)}
        self.stderr = self._streams[2].out
        # The countdown line is redrawn on stderr; stdout output must clear it first only when
        # both go to a terminal (then, as a rule, the same one).
        self._stdout_on_tty = self.countdown and _isatty(self._streams[1].out)
        one_target = _one_target(self._streams[1].out, self.stderr)
        self._arrivals = 0
        self._wake = wake or (lambda: None)
        self._lock = threading.Lock()  # the terminal, shared by the writers and the countdown
        self._more = threading.Condition()
        self._closing = False
        self._lossy = False
        self.dropped = 0
        self._deadline: float | None = None
        self._status_shown = False
        self._at_line_start = True
        self._stop = threading.Event()
        streams = list(self._streams.values())
        for served in [streams] if one_target else [[s] for s in streams]:
            threading.Thread(target=self._writer, args=(served,), daemon=True,
                             name=f"lager-output-{'+'.join(str(s.number) for s in served)}"
                             ).start()
        if self.countdown:
            threading.Thread(target=self._tick, daemon=True, name="lager-countdown").start()

    # --- the loop's side: never blocks ---

    def write(self, stream: int, data: bytes | memoryview, keep: bool = False) -> None:
        if not data:
            return
        with self._more:
            target = self._streams[stream]
            if target.broken:
                return
            if self._lossy and not keep and target.queued + len(data) > LOSSY_KEEP[stream]:
                self.dropped += len(data)
                return
            self._arrivals += 1
            target.queue.append((self._arrivals, data))
            target.queued += len(data)
            self._more.notify_all()

    def event(self, event: Event) -> None:
        """A pause notice starts the countdown (when it has a deadline); a resume ends it."""
        from lager.protocol.events import PauseNotice, ResumeNotice

        if isinstance(event, PauseNotice):
            self._deadline = event.deadline_monotonic()
        elif isinstance(event, ResumeNotice):
            self._deadline = None

    def notice(self, text: str) -> None:
        """A line from lager itself: never dropped."""
        self.write(2, f"lager: {text}\n".encode(), keep=True)

    @property
    def broken(self) -> bool:
        return any(stream.broken for stream in self._streams.values())

    def has_room(self) -> bool:
        return all(stream.queued < HIGH_WATER for stream in self._streams.values())

    def idle(self) -> bool:
        with self._more:
            return not any(s.queue or s.writing for s in self._streams.values())

    def lossy(self) -> None:
        """From now on, output the reader does not take in time is dropped (after Ctrl-C),
        and the backlog is cut to what is kept, as a terminal discards its queue on ^C."""
        with self._more:
            self._lossy = True
            for number, stream in self._streams.items():
                kept: deque[tuple[int, bytes | memoryview]] = deque()
                size = 0
                for item in stream.queue:
                    if size + len(item[1]) <= LOSSY_KEEP[number]:
                        kept.append(item)
                        size += len(item[1])
                    else:
                        self.dropped += len(item[1])
                stream.queued -= sum(len(data) for _, data in stream.queue) - size
                stream.queue = kept

    def close(self) -> None:
        self._stop.set()
        with self._more:
            self._closing = True
            self._more.notify_all()

    # --- the writer threads ---

    def _writer(self, streams: list[_Stream]) -> None:
        """Writes what `streams` queue, oldest arrival first."""
        while True:
            with self._more:
                while not any(s.queue for s in streams) and not self._closing:
                    self._more.wait()
                waiting = [s for s in streams if s.queue]
                if not waiting:
                    break
                stream = min(waiting, key=lambda s: s.queue[0][0])
                _, data = stream.queue.popleft()
                stream.writing = True
            try:
                if not stream.broken:
                    self._write(stream, data)
            except OSError:
                stream.broken = True
            finally:
                with self._more:
                    stream.queued -= len(data)
                    stream.writing = False
                self._wake()
        if any(s.number == 2 for s in streams):
            with self._lock:
                self._clear_status()
        self._wake()

    def _write(self, stream: _Stream, data: bytes | memoryview) -> None:
        if stream.number == 1 and not self._stdout_on_tty:
            write_all(stream.out, data)
            return
        with self._lock:
            self._clear_status()
            write_all(stream.out, data)
            self._at_line_start = data[-1:] == b"\n"

    def _clear_status(self) -> None:
        if self._status_shown:
            write_all(self.stderr, b"\r\x1b[K")
            self._status_shown = False

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self._deadline is None or not self._at_line_start:
                    continue
                left = max(0, round(self._deadline - time.monotonic()))
                write_all(self.stderr, f"\r    ... auto-resume in {left}s "
                           "(Enter resumes now)\x1b[K".encode())
                self._status_shown = True


def _one_target(stdout: BinaryIO, stderr: BinaryIO) -> bool:
    """Whether both streams end in one place: a terminal each (as a rule the same one), or
    one pipe or file (`2>&1 | tee log`). One writer then keeps the order they arrived in, and
    costs nothing: a reader that stalls one stream stalls the other anyway."""
    if _isatty(stdout) and _isatty(stderr):
        return True
    try:
        out, err = os.fstat(stdout.fileno()), os.fstat(stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)


def _isatty(out: BinaryIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, OSError, ValueError):
        return False
