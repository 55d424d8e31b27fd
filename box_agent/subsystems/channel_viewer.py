"""A run's output and events onto one client's SSH channel (`run` and `attach`).

Each write waits for the channel to drain, so a client that stops reading slows the run's feed
(box_agent/output_log.py) instead of growing the agent's memory.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncssh

from lager import protocol
from lager.protocol.codec import Message
from lager.protocol.events import NOTICE, event_record, record

from .. import fast_send
from ..file_bytes import Data, FileBytes, as_bytes
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

    async def output(self, stream: int, data: bytes | memoryview) -> None:
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

    async def output_many(self, chunks: Sequence[tuple[int, Data]]) -> None:
        """A feed's batch of the run's output (OutputLog.feed_to): one lock, one drain."""
        async with self.lock:
            await self.write_many_unlocked(chunks)

    async def write_unlocked(self, stream: int, data: bytes | memoryview) -> None:
        await self.write_many_unlocked(((stream, data),))

    async def write_many_unlocked(self, chunks: Sequence[tuple[int, Data]]) -> None:
        if self.process.is_closing():
            raise ConnectionError("channel closed")
        stdout = self.process.stdout
        # Each stream's bytes, in order, as a list of parts (framed: one stream of records).
        runs: list[tuple[asyncssh.SSHWriter[bytes], list[Data]]] = []
        for stream, data in chunks:
            target = stdout if self.framed or stream == STDOUT else self.process.stderr
            if not runs or runs[-1][0] is not target:
                runs.append((target, []))
            if self.framed:
                # The record's header goes in the packet of its data: written on its own it
                # went as a packet of its own, each with its own work on both ends (issue 13).
                runs[-1][1].append(record(stream, data))
            runs[-1][1].append(data)
        try:
            for target, parts in runs:
                self._write_run(target, parts)
            for target in {id(target): target for target, _ in runs}.values():
                await target.drain()
        except asyncssh.Error as exc:
            # A client killed mid-stream: asyncssh's ConnectionLost is no ConnectionError, and
            # let through it ended the agent's tracking of a run that was still going.
            raise ConnectionError(str(exc)) from None

    def _write_run(self, target: asyncssh.SSHWriter[bytes], parts: list[Data]) -> None:
        """Bytes of one stream, cut into packets as even as the peer's packet size allows.

        Records don't set the cuts: a 1 MiB record cut at the packet size left a 4 KiB tail
        packet per record, which took asyncssh's slow path (with an SSH_MSG_IGNORE before it)
        and cost as much as four full packets. asyncssh copies what it is given and sends a
        longer buffer by slicing a packet off its front and shifting the rest down, so even
        what must take its path goes in pieces of a packet. In what lager's client takes per
        packet (protocol.MAX_PACKET), or less when the peer takes less (OpenSSH: 32 KiB)."""
        total = sum(len(part) for part in parts)
        if not total:
            return
        room = fast_send.packet_room(target.channel, protocol.MAX_PACKET)
        count = -(-total // room)
        size, longer = divmod(total, count)  # the first `longer` packets carry one byte more
        packet: list[Data] = []
        want = size + (longer > 0)
        for part in parts:
            view = part if isinstance(part, FileBytes) else memoryview(part)
            while len(view):
                piece = view[:want]
                packet.append(piece)
                want -= len(piece)
                view = view[len(piece):]
                if not want:
                    self._write(target, packet)
                    packet = []
                    longer -= 1
                    want = size + (longer > 0)
        assert not packet, "the cuts cover the run exactly"

    def _write(self, target: asyncssh.SSHWriter[bytes], parts: list[Data]) -> None:
        # stdout's data straight into a packet when asyncssh would send it at once anyway
        # (box_agent/fast_send.py); stderr, and anything asyncssh must queue, its own way.
        if target is not self.process.stdout or not fast_send.send_now(target.channel, parts):
            target.write(b"".join(as_bytes(part) for part in parts))
