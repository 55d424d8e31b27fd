"""A run's output: a bounded backlog plus the viewers currently attached.

The pump that reads the script's pipes waits for every viewer to drain before it reads more,
so a client that stops reading stalls the script (its pipe fills) instead of growing memory.
A run with no viewers (detached) only feeds the backlog, which drops its oldest output.
"""
from __future__ import annotations

from collections import deque
from typing import Protocol

STDOUT = 1
STDERR = 2
DEFAULT_BACKLOG_BYTES = 4 * 1024 * 1024


class Viewer(Protocol):
    async def output(self, stream: int, data: bytes) -> None: ...


class OutputLog:
    def __init__(self, limit: int = DEFAULT_BACKLOG_BYTES) -> None:
        self.limit = limit
        self._chunks: deque[tuple[int, bytes]] = deque()
        self._size = 0
        self.dropped = 0
        self.viewers: list[Viewer] = []

    def _keep(self, stream: int, data: bytes) -> None:
        self._chunks.append((stream, data))
        self._size += len(data)
        while self._size > self.limit and self._chunks:
            _, old = self._chunks.popleft()
            self._size -= len(old)
            self.dropped += len(old)

    async def feed(self, stream: int, data: bytes) -> None:
        self._keep(stream, data)
        for viewer in list(self.viewers):
            try:
                await viewer.output(stream, data)
            except (OSError, EOFError, ConnectionError, BrokenPipeError):
                # A viewer whose channel died stops receiving; the run and the others go on.
                self.detach(viewer)

    def attach(self, viewer: Viewer, with_backlog: bool) -> tuple[list[tuple[int, bytes]], int]:
        """Subscribe and take the backlog in one step, so no chunk is missed or doubled."""
        self.viewers.append(viewer)
        if not with_backlog:
            return [], 0
        return list(self._chunks), self.dropped

    def detach(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.remove(viewer)
