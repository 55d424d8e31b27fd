"""A loopback TCP proxy that delays each direction by a set time: a slow link on one machine.

`python bench/delay_proxy.py --delay-ms 25 --to 127.0.0.1:2222` listens on a free loopback port
(printed as `delay-proxy listening on 127.0.0.1:PORT`) and forwards every connection to the
target, holding each chunk for the delay before it goes on. 25 ms each way is a 50 ms round trip.

It models latency only, never bandwidth: every byte that arrives is read at once and queued with
its due time, so a flow is limited by its own windows (the bandwidth-delay product), as on a real
long link, and not by the proxy. Order is kept: one queue per direction, written in arrival order.
Backpressure starts only when one direction holds more than MAX_IN_FLIGHT bytes, far above what
the window of any SSH channel here allows.
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections import deque

MAX_IN_FLIGHT = 256 * 1024 * 1024
_EOF = object()  # the sender shut down its write side: shut down ours, the delay later
_CLOSE = object()  # the sender's socket is gone: close ours, the delay later
Item = bytes | object


class _Side(asyncio.Protocol):
    """One socket of a proxied connection. What it reads goes, delayed, out of its peer."""

    def __init__(self, delay: float, loop: asyncio.AbstractEventLoop) -> None:
        self.delay = delay
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.due: deque[tuple[float, Item]] = deque()  # what goes out of *this* socket
        self.queued = 0
        self.timer: asyncio.TimerHandle | None = None
        self.reading_paused = False
        self.closed = False

    # --- reading ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The kernel's buffers carry the flow; never let asyncio push back on it before ours.
        transport.set_write_buffer_limits(high=MAX_IN_FLIGHT)
        self._flush()  # anything that arrived for us while we were connecting

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.schedule(data)
        if self.peer.queued > MAX_IN_FLIGHT and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True

    def eof_received(self) -> bool:
        assert self.peer is not None
        self.peer.schedule(_EOF)
        return True  # keep our own write side: the other direction may still be flowing

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None:
            self.peer.schedule(_CLOSE)

    # --- writing, the delay later ---

    def schedule(self, item: Item) -> None:
        self.due.append((self.loop.time() + self.delay, item))
        if isinstance(item, bytes):
            self.queued += len(item)
        if self.timer is None and self.transport is not None:
            self.timer = self.loop.call_at(self.due[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is None:
            return
        now = self.loop.time()
        while self.due and self.due[0][0] <= now:
            _, item = self.due.popleft()
            if isinstance(item, bytes):
                self.queued -= len(item)
                if not transport.is_closing():
                    transport.write(item)
            elif item is _EOF:
                if not transport.is_closing() and transport.can_write_eof():
                    transport.write_eof()
            else:
                transport.close()
        peer = self.peer
        if peer is not None and peer.reading_paused and self.queued < MAX_IN_FLIGHT // 2 \
                and peer.transport is not None:
            peer.transport.resume_reading()
            peer.reading_paused = False
        if self.due:
            self.timer = self.loop.call_at(self.due[0][0], self._flush)


class DelayProxy:
    """Listens on loopback; every accepted connection is paired with one to the target."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self.server: asyncio.AbstractServer | None = None
        self._dialing: set[asyncio.Task[None]] = set()  # held: the loop keeps tasks weakly

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accepted, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    def _accepted(self) -> _Side:
        loop = asyncio.get_running_loop()
        inbound, outbound = _Side(self.delay, loop), _Side(self.delay, loop)
        inbound.peer, outbound.peer = outbound, inbound

        async def dial() -> None:
            try:
                await loop.create_connection(lambda: outbound, *self.target)
            except OSError:
                if inbound.transport is not None:
                    inbound.transport.abort()

        task = loop.create_task(dial())
        self._dialing.add(task)
        task.add_done_callback(self._dialing.discard)
        return inbound


async def _serve(target: str, delay_ms: float, port: int) -> None:
    host, _, target_port = target.rpartition(":")
    proxy = DelayProxy((host, int(target_port)), delay_ms / 1000.0)
    listen = await proxy.start(port=port)
    print(f"delay-proxy listening on 127.0.0.1:{listen}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--to", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay, ms")
    parser.add_argument("--port", type=int, default=0, help="listen port (0: a free one)")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.to, args.delay_ms, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
