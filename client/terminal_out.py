"""Where a run's output lands on the client, plus the live auto-resume countdown.

The countdown is one status line under the banner, redrawn in place once a second; it is only
drawn when stderr is a terminal, never into pipes or CI logs.
"""
from __future__ import annotations

import os
import re
import select
import sys
import threading
import time
from typing import BinaryIO

_BANNER_TIMEOUT = re.compile(rb"^    auto-resume in ([0-9.e+]+)s$", re.M)
_RESUMED = re.compile(rb"^=== (resumed|auto-resumed after)", re.M)


def write_all(out: BinaryIO, data: bytes) -> None:
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


class RunOutput:
    def __init__(self, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 countdown: bool | None = None) -> None:
        self.stdout = stdout or sys.stdout.buffer
        self.stderr = stderr or sys.stderr.buffer
        self.countdown = sys.stderr.isatty() if countdown is None else countdown
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._status_shown = False
        self._at_line_start = True
        self._stop = threading.Event()
        if self.countdown:
            threading.Thread(target=self._tick, daemon=True, name="lager-countdown").start()

    def write(self, stream: int, data: bytes) -> None:
        with self._lock:
            self._clear_status()
            out = self.stdout if stream == 1 else self.stderr
            write_all(out, data)
            self._at_line_start = data.endswith(b"\n")
            if stream == 2 and self.countdown:
                self._watch(data)

    def notice(self, text: str) -> None:
        self.write(2, f"lager: {text}\n".encode())

    def _watch(self, data: bytes) -> None:
        if _RESUMED.search(data):
            self._deadline = None
        match = _BANNER_TIMEOUT.search(data)
        if match:
            self._deadline = time.monotonic() + float(match.group(1))

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

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._clear_status()
            self.stderr.flush()
