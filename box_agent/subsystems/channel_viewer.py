"""A run's output and events onto one client's SSH channel (`run` and `attach`).

Each write waits for the channel to drain, so a client that stops reading slows the run's feed
(box_agent/output_log.py) instead of growing the agent's memory.
"""
from __future__ import annotations

import asyncio

import asyncssh

from lager import protocol
from lager.protocol.codec import Message
from lager.protocol.events import NOTICE, event_record, record

from .. import fast_send
from ..output_log import STDOUT


class ChannelViewer:
    """Writes a run's output to one SSH channel, waiting for it to drain (backpressure).

    Framed (the client asked for events): every stream goes to the channel's stdout as
    records, and events go between them; otherwise stdout and stderr as they are, no events.
    """

    def __init__(self, process: asyncssh.SSHServerProcess[bytes], framed: bool = False) -> None:
        self.process = process
        self.framed = framed
        self.lock = asyncio.Lock()  # held while the backlog is written, so live output waits

    async def output(self, stream: int, data: bytes) -> None:
        async with self.lock:
            await self.write_unlocked(stream, data)

    async def event(self, event: Message) -> None:
        if self.framed:
            async with self.lock:
                await self.event_unlocked(event)

    async def event_unlocked(self, event: Message) -> None:
        if self.framed:
            if self.process.is_closing():
                raise ConnectionError("channel closed")
            self.process.stdout.write(event_record(event))
            await self.process.stdout.drain()

    def tell(self, line: str) -> None:
        """A line of the box's own for this client, now (reservations.operated): a NOTICE
        record, written whole between two records (writes never await mid-record), and not
        counted in the offsets. A plain channel gets nothing: its stderr is the script's."""
        if self.framed and not self.process.is_closing():
            data = f"lager: {line}\n".encode()
            try:
                self.process.stdout.write(record(NOTICE, data) + data)
            except (BrokenPipeError, ConnectionError, asyncssh.Error):
                return  # this client is going; the run's output feed detaches it

    async def write_unlocked(self, stream: int, data: bytes) -> None:
        if self.process.is_closing():
            raise ConnectionError("channel closed")
        target = self.process.stdout if self.framed or stream == STDOUT else self.process.stderr
        # In pieces of at most one packet: asyncssh copies what it is given and sends a longer
        # buffer by slicing a packet off its front and shifting the rest down, which for the
        # monitor's 1 MiB records cost more than encrypting them. In what lager's client takes
        # per packet (protocol.MAX_PACKET); other clients take less and asyncssh splits
        # further, which costs only on their (slower) channels.
        piece = protocol.MAX_PACKET
        view = memoryview(data)
        try:
            sent = 0
            if self.framed:
                # The record's header shares its first packet: written on its own it went as a
                # packet of its own, a fifth of a stream's packets, each with its own work on
                # both ends (issue 13).
                head = record(stream, data)
                sent = piece - len(head)
                self._write(target, head + view[:sent])
            for start in range(sent, len(view), piece):
                self._write(target, view[start:start + piece])
            await target.drain()
        except asyncssh.Error as exc:
            # A client killed mid-stream: asyncssh's ConnectionLost is no ConnectionError, and
            # let through it ended the agent's tracking of a run that was still going.
            raise ConnectionError(str(exc)) from None

    def _write(self, target: asyncssh.SSHWriter[bytes], data: bytes | memoryview) -> None:
        # stdout's data straight into a packet when asyncssh would send it at once anyway
        # (box_agent/fast_send.py); stderr, and anything asyncssh must queue, its own way.
        if target is not self.process.stdout or not fast_send.send_now(target.channel, data):
            target.write(data)  # type: ignore[arg-type]
