"""A run's output as the agent serves it: the log on disk plus the viewers attached now.

The run's monitor writes the log (`box_agent/runlog.py`); the agent feeds each new stretch of
it to the attached viewers, waiting for every one of them to drain before it asks the monitor
for more. So a client that stops reading slows the script (the monitor stops reading its
pipes) instead of growing memory, and a run with no viewers (detached, or its client gone)
only grows the log, which keeps its newest bytes up to its limit.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from lager.protocol.codec import Message

from .file_bytes import Data, as_bytes
from .runlog import STDERR, STDOUT, LogReader

__all__ = ["STDERR", "STDOUT", "OutputLog", "Viewer"]


class Viewer(Protocol):
    async def output(self, stream: int, data: bytes | memoryview) -> None: ...

    async def event(self, event: Message) -> None:
        """A pause or resume notice, in order with the output (viewers that asked for them)."""


# What one turn of the feed reads and hands to each viewer at once. A viewer with
# `output_many` takes it in one call (one lock, one drain, packets cut across records), so
# the per-chunk work happens per batch; the monitor's window (under 4 MiB past what the
# viewers have) keeps a batch about this big while a run streams. Long records come as
# FileBytes (box_agent/file_bytes.py), read straight into the packets they go in.
FEED_BATCH = 4 * 1024 * 1024


class OutputLog:
    def __init__(self, directory: Path, end: int = 0) -> None:
        self.reader = LogReader(directory)
        self.end = end  # everything before this offset has been fed to the viewers
        self.viewers: list[Viewer] = []

    async def feed_to(self, end: int) -> None:
        """Deliver the log from where we are up to `end` to every attached viewer."""
        while self.end < end:
            files: list[int] = []  # a batch's long records stay on disk until sent
            try:
                batch = list(self.reader.read(self.end, end, budget=FEED_BATCH, files=files))
                if not batch:
                    return  # a gap (a full disk lost a record): nothing more to feed
                # Before any await: a viewer attaching meanwhile takes all of this batch as
                # its backlog and is not in the list it goes to (no chunk missed or doubled).
                self.end = batch[-1].end
                chunks = [(chunk.stream, chunk.data) for chunk in batch]
                for viewer in list(self.viewers):
                    try:
                        await _give(viewer, chunks)
                    except (OSError, EOFError, ConnectionError):
                        # A viewer whose channel died stops receiving; the run goes on.
                        self.detach(viewer)
            finally:
                for fd in files:
                    os.close(fd)

    async def announce(self, event: Message) -> None:
        """An event for every attached viewer, between the output before and after it."""
        for viewer in list(self.viewers):
            try:
                await viewer.event(event)
            except (OSError, EOFError, ConnectionError):
                self.detach(viewer)

    def attach(self, viewer: Viewer, with_backlog: bool) -> tuple[
            Iterator[tuple[int, bytes | memoryview]], int]:
        """Subscribe and take the backlog in one step, so no chunk is missed or doubled.

        The backlog is read from disk as it is consumed; `dropped` counts the output bytes
        the log no longer holds."""
        self.viewers.append(viewer)
        if not with_backlog:
            return iter(()), 0
        start, until = self.reader.first_offset(), self.end
        backlog = ((c.stream, as_bytes(c.data))
                   for c in self.reader.read(start, until, budget=1 << 62, views=True))
        return backlog, self.reader.dropped()

    def attach_at(self, viewer: Viewer, stdout_bytes: int, stderr_bytes: int) -> tuple[
            Iterator[tuple[int, bytes | memoryview]], int]:
        """Subscribe a viewer that already has this much of each stream: it gets the rest,
        no byte twice. `dropped` counts what it lacks that the log no longer holds."""
        self.viewers.append(viewer)
        offset, seen = self.reader.locate(stdout_bytes, stderr_bytes, self.end)
        want = {STDOUT: stdout_bytes, STDERR: stderr_bytes}
        first = self.reader.first_before()
        lacking = max(0, first[0] - stdout_bytes) + max(0, first[1] - stderr_bytes)

        def rest() -> Iterator[tuple[int, bytes | memoryview]]:
            for chunk in self.reader.read(offset, self.end, budget=1 << 62, views=True):
                skip = max(0, want[chunk.stream] - seen[chunk.stream])
                seen[chunk.stream] += len(chunk.data)
                if skip < len(chunk.data):
                    yield chunk.stream, as_bytes(chunk.data)[skip:]
        return rest(), lacking

    def detach(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.remove(viewer)


async def _give(viewer: Viewer, chunks: list[tuple[int, Data]]) -> None:
    output_many = getattr(viewer, "output_many", None)
    if output_many is not None:  # it takes FileBytes (ChannelViewer)
        await output_many(chunks)
        return
    for stream, data in chunks:
        await viewer.output(stream, as_bytes(data))
