"""Where a fleet's output lands: whole lines prefixed `bench07: ` (pdsh's form, which
`clubak -b` reads), stdout and stderr kept apart; or, with --gather, identical output printed
once under its folded set (clush -b, through ClusterShell's MsgTree); and with --output-dir,
BOX.stdout, BOX.stderr and BOX.json per box.

Stdout carries only the scripts' output. Lager's own lines (fleet id, pause line, unreachable
boxes, recap) go to stderr. On a terminal the pause line is a status line redrawn in place.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from lager.console.screen import Layout, shown

from ..terminal_out import write_all

PARTIAL_FLUSH = 64 * 1024  # a line longer than this is cut, so one box cannot hold memory


class LineSplitter:
    """Whole lines out of a byte stream; a partial line is flushed once it reaches the limit."""

    def __init__(self, limit: int = PARTIAL_FLUSH) -> None:
        self.limit = limit
        self.partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.partial += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = self.partial.find(b"\n", start)
            if end < 0:
                break
            lines += self._cut(bytes(self.partial[start:end + 1]))
            start = end + 1
        del self.partial[:start]
        while len(self.partial) >= self.limit:
            lines.append(bytes(self.partial[:self.limit]) + b"\n")
            del self.partial[:self.limit]
        return lines

    def _cut(self, line: bytes) -> list[bytes]:
        """A line longer than the limit, in pieces of the limit (as if flushed while partial)."""
        if len(line) <= self.limit + 1:
            return [line]
        pieces = [line[i:i + self.limit] for i in range(0, len(line), self.limit)]
        if pieces[-1] == b"\n":
            pieces.pop()
            return [p + b"\n" for p in pieces]
        return [p + b"\n" for p in pieces[:-1]] + [pieces[-1]]

    def end(self) -> list[bytes]:
        if not self.partial:
            return []
        rest, self.partial = bytes(self.partial) + b"\n", bytearray()
        return [rest]


class Terminal:
    """The laptop's stdout and stderr, shared by every box's thread, plus one status line."""

    def __init__(self, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> None:
        self.out = stdout or sys.stdout.buffer
        self.err = stderr or sys.stderr.buffer
        self.lock = threading.Lock()
        self.tty = _isatty(self.err)
        self._status = ""
        self._printed_status = ""

    def write(self, stream: int, data: bytes) -> None:
        if not data:
            return
        with self.lock:
            self._clear()
            write_all(self.out if stream == 1 else self.err, data)
            self._draw()

    def say(self, text: str) -> None:
        """One line of lager's own, on stderr."""
        self.write(2, text.encode() + b"\n")

    def status(self, text: str) -> None:
        """The pause lines, one per breakpoint: redrawn in place on a terminal (as many as
        its height leaves room for, then how many more), else printed when they change."""
        if self.tty and text:
            # A label's control characters go as ^X: sent raw, an escape would move the
            # cursor, and the redraw would clear the wrong rows.
            text = "\n".join("".join(map(shown, line))
                             for line in _fit(text.split("\n"), self._size()[1]))
        with self.lock:
            if text == self._status:
                return
            self._clear()
            self._status = text
            if not self.tty and text and text != self._printed_status:
                write_all(self.err, text.encode() + b"\n")
                self._printed_status = text
            self._draw()

    def _size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.err.fileno())
        except (AttributeError, OSError, ValueError):
            return 80, 24
        # A terminal that reports no size (0x0, as a new pty) gets the usual 80x24.
        return size.columns or 80, size.lines or 24

    def _rows(self) -> int:
        """The terminal rows the drawn status takes: a line wider than the terminal wraps."""
        width = self._size()[0]
        return sum(_rows_of(line, width) for line in self._status.split("\n"))

    def _clear(self) -> None:
        if self.tty and self._status:
            up = self._rows() - 1
            write_all(self.err, b"\r\x1b[K" if up == 0 else f"\r\x1b[{up}A\x1b[J".encode())

    def _draw(self) -> None:
        if self.tty and self._status:
            write_all(self.err, self._status.encode())


def _rows_of(line: str, width: int) -> int:
    """Rows a line takes on a terminal `width` columns wide: a wide character (CJK, most
    emoji) takes two columns and wraps whole, a combining one none (xterm's placement)."""
    if not line:
        return 1
    return Layout("", line, width).starts[-1][0] + 1


def _fit(lines: list[str], height: int) -> list[str]:
    """At most height - 1 lines (the rest of the screen keeps the output above); the last of
    them says how many breakpoints did not fit."""
    room = max(1, height - 1)
    if len(lines) <= room:
        return lines
    shown = lines[:room - 1] if room > 1 else lines[:1]
    more = len(lines) - len(shown)
    tail = f"(+{more} more breakpoint{'s' if more > 1 else ''})"
    return [*shown, f"=== {tail}"] if room > 1 else [f"{shown[0]}  {tail}"]


class Gathered:
    """--gather: each box's lines kept per stream, printed folded at the end."""

    def __init__(self) -> None:
        from ClusterShell.MsgTree import MsgTree

        self.trees = {1: MsgTree(), 2: MsgTree()}
        self.lock = threading.Lock()

    def add(self, box: str, stream: int, line: bytes) -> None:
        with self.lock:
            self.trees[stream].add(box, line.rstrip(b"\n"))

    def print(self, terminal: Terminal) -> None:
        from ClusterShell.NodeSet import NodeSet

        for stream in (1, 2):
            for message, keys in self.trees[stream].walk():
                nodes = NodeSet.fromlist(keys)
                rule = b"-" * 15
                head = f"{nodes} ({len(nodes)})".encode()
                terminal.write(stream, b"\n".join([rule, head, rule, bytes(message)]) + b"\n")


class BoxOutput:
    """One box's two streams: to the terminal (prefixed) or the gather tree, and its files."""

    def __init__(self, box: str, terminal: Terminal, gathered: Gathered | None,
                 output_dir: Path | None) -> None:
        self.box = box
        self.terminal = terminal
        self.gathered = gathered
        self.prefix = box.encode() + b": "
        self.splitters = {1: LineSplitter(), 2: LineSplitter()}
        self.files: dict[int, BinaryIO] = {}
        self.output_dir = output_dir
        self.stderr_tail = bytearray()  # the last 64 KiB, for JUnit's failure body
        if output_dir is not None:
            for stream, suffix in ((1, "stdout"), (2, "stderr")):
                self.files[stream] = open(output_dir / f"{box}.{suffix}", "wb")  # noqa: SIM115

    def raw(self, stream: int, data: bytes) -> None:
        """What the box sent, unfiltered: the files and the stderr tail keep the banners."""
        if stream in self.files:
            self.files[stream].write(data)
        if stream == 2:
            self.stderr_tail += data
            del self.stderr_tail[:-PARTIAL_FLUSH]

    def live(self, stream: int, data: bytes,
             keep: Callable[[bytes], bool] | None = None) -> None:
        """What the live view shows; `keep` (the pause adapter) leaves banner lines out."""
        lines = self.splitters[stream].feed(data)
        self._emit(stream, [ln for ln in lines if keep(ln)] if keep is not None else lines)

    def finish(self) -> None:
        for stream in (1, 2):
            self._emit(stream, self.splitters[stream].end())
        for f in self.files.values():
            f.close()

    def _emit(self, stream: int, lines: list[bytes]) -> None:
        if not lines:
            return
        if self.gathered is not None:
            for line in lines:
                self.gathered.add(self.box, stream, line)
            return
        self.terminal.write(stream, b"".join(self.prefix + line for line in lines))

    def write_json(self, record: dict[str, Any]) -> None:
        if self.output_dir is not None:
            path = self.output_dir / f"{self.box}.json"
            path.write_text(json.dumps(record, indent=2) + "\n")


def prepare_output_dir(path: str | None) -> Path | None:
    if not path:
        return None
    target = Path(path)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from lager.errors import UsageError

        raise UsageError(f"--output-dir {path}: {exc.strerror or exc}") from None
    return target


def _isatty(out: BinaryIO) -> bool:
    try:
        return os.isatty(out.fileno())
    except (AttributeError, OSError, ValueError):
        return False
