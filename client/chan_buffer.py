"""Channel buffers that keep what arrives as the packets it came in, for paramiko's channels.

paramiko's BufferedPipe keeps a channel's received bytes in one array: every packet is copied
onto its end, and every read copies out a slice (twice: a slice, then bytes) and shifts what is
left down. For a run's stream that was three of the client's ten copies of each byte, and
user-space copies were the largest part of its CPU per MB (issue 13's profile: memmove 29 %, the
AES-GCM decryption 5 %). Here a channel keeps a list of the packets' bytes as they are: a read of
all of it (the follower's) joins them once, or hands over the one packet as it is.

Only the storage changes; the waiting, events and closing are paramiko's own (BufferedPipe
calls `_buffer_frombytes`, `_buffer_tobytes`, `len()` and `del [:n]` on its buffer). The
buffers are put in place as the transport registers a channel (ChannelMap.put), before it can
receive anything.

Wakeups come in batches (WakeBatch): paramiko wakes a channel's reader for every packet it
feeds (an `os.write` to the channel's event pipe, a notify), so the transport thread and the
reading thread took turns at the GIL and the scheduler once per 256 KiB packet (issue 13's
profile: futex, pipe writes and task switches on both threads). When the transport's lean
receive path (client/fast_recv.py) says it will flush, a feed only stores the packet; the
reader is woken once for all packets fed since, before the transport thread waits on its
socket, or once `FLUSH_AT` bytes are waiting.
"""
from __future__ import annotations

from collections import deque
from typing import Any

# The follower's channel asks the box for more window once this part of it is read.
WINDOW_PARTS = 4
# Bytes fed without a wakeup before the batch is flushed anyway: the reader starts on a long
# burst while the transport thread goes on reading it (both cores busy, not one after the other).
FLUSH_AT = 1 << 20


class WakeBatch:
    """The channel buffers fed without waking their readers, for one transport. Used only on
    the transport thread (the one that feeds channels): `deferring` is set by the receive
    path while it promises to call `flush` before it waits on the socket."""

    def __init__(self) -> None:
        self.deferring = False
        # Set once a reader of this transport takes views (take_views): the receive path
        # then decrypts each packet into new bytes, which such a channel's data is a view of.
        self.views_wanted = False
        self.pending: list[Any] = []  # PacketPipes fed since the last flush
        self.pending_bytes = 0
        self.deferred = self.flushes = 0  # feeds that waited for a flush, and the flushes

    def flush(self) -> None:
        self.flushes += 1
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        for pipe in pending:
            pipe.wake()


class PacketQueue:
    """The bytes of a channel's packets, oldest first, with the array operations BufferedPipe
    uses: len, append (frombytes), the first n bytes (head), and dropping them (del [:n])."""

    def __init__(self) -> None:
        self._chunks: deque[bytes | memoryview] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def frombytes(self, data: bytes | memoryview) -> None:
        if data:
            # A memoryview is kept as it is: the lean receive path hands one (of the packet's
            # own immutable plaintext) only to a channel whose reader takes views.
            self._chunks.append(data if type(data) in (bytes, memoryview) else bytes(data))
            self._size += len(data)

    def first_size(self) -> int:
        """The length of the oldest packet's bytes (0 when empty)."""
        return len(self._chunks[0]) if self._chunks else 0

    def head(self, limit: int | None = None) -> bytes | memoryview:
        """The first `limit` bytes (all with None), without taking them: the oldest packet
        itself when that is all of them (a memoryview for a channel that takes views)."""
        if limit is None or limit >= self._size:
            if len(self._chunks) == 1:
                return self._chunks[0]
            return b"".join(self._chunks)
        parts, need = [], limit
        for chunk in self._chunks:
            if need <= 0:
                break
            parts.append(chunk if len(chunk) <= need else chunk[:need])
            need -= len(parts[-1])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __delitem__(self, key: slice) -> None:
        if not isinstance(key, slice) or key.start not in (None, 0) or key.step is not None:
            raise TypeError("only the front of a packet queue can be dropped")
        drop = self._size if key.stop is None else min(max(key.stop, 0), self._size)
        self._size -= drop
        while drop:
            first = self._chunks[0]
            if len(first) <= drop:
                self._chunks.popleft()
                drop -= len(first)
            else:
                self._chunks[0] = first[drop:]
                drop = 0


def packet_read_size(pipe: Any, default: int) -> int:
    """What a read of this channel buffer should ask for to take its oldest packet as it came:
    a read of everything joins the packets into new bytes, one more copy of all a run streams.
    `default` for a buffer that is not a PacketQueue (or holds nothing yet)."""
    buffer = getattr(pipe, "_buffer", None)
    size = buffer.first_size() if isinstance(buffer, PacketQueue) else 0
    return size or default


def take_views(chan: Any) -> bool:
    """From now on this channel's recv may hand over a packet's data as a memoryview of the
    decrypted packet (read-only, over immutable bytes), not a copy of it as bytes: for a
    reader that passes the data on to a write and keeps none of it as bytes (follow.py). Only
    the lean receive path hands views; False when this channel cannot get them."""
    pipe = getattr(chan, "in_buffer", None)
    batch = getattr(pipe, "_batch", None)
    if not isinstance(batch, WakeBatch):
        return False
    pipe.takes_views = True  # type: ignore[union-attr]
    batch.views_wanted = True
    return True


def fewer_window_adjusts(chan: Any, parts: int = WINDOW_PARTS) -> None:
    """Give the box more window once 1/`parts` of it is read, not paramiko's 1/10: each
    SSH_MSG_CHANNEL_WINDOW_ADJUST is a send from the reading thread (the socket, the transport's
    locks, the GIL back from the transport thread), a fifth of the follower's time in a
    profile of a 200 MB stream. A quarter of the 16 MiB window still leaves the box 12 MiB to
    send on while the adjustment travels (a 50 ms link at 240 MB/s)."""
    size = getattr(chan, "in_window_size", 0)
    if isinstance(size, int) and size > 0 and hasattr(chan, "in_window_threshold"):
        chan.in_window_threshold = max(chan.in_window_threshold, size // parts)


def _pipe_class() -> Any:
    from paramiko.buffered_pipe import BufferedPipe

    class PacketPipe(BufferedPipe):  # type: ignore[misc]
        """paramiko's BufferedPipe over a PacketQueue."""

        # BufferedPipe's own, set by its __init__ (declared for the type checker)
        _lock: Any
        _cv: Any
        _event: Any
        _closed: bool

        def __init__(self, batch: WakeBatch | None = None) -> None:
            super().__init__()
            self._buffer = PacketQueue()
            self._batch = batch
            self._waiting = False  # fed, its reader not woken yet (in batch.pending)
            self.takes_views = False  # its reader takes memoryviews (take_views)

        def feed(self, data: bytes | memoryview) -> None:
            """paramiko's feed (whose bytes check refuses a view), or without the wakeup while
            the batch defers it."""
            batch = self._batch
            deferring = batch is not None and batch.deferring
            with self._lock:
                self._buffer.frombytes(data)
                if not deferring:
                    if self._event is not None:
                        self._event.set()
                    self._cv.notify_all()
            if batch is None or not deferring:
                return
            batch.deferred += 1
            if not self._waiting:
                self._waiting = True
                batch.pending.append(self)
            batch.pending_bytes += len(data)
            if batch.pending_bytes >= FLUSH_AT:
                batch.flush()

        def wake(self) -> None:
            """What feed skipped: the event (the channel's fileno) and the waiters. The event
            only while data is held: a reader that took it all meanwhile cleared it, and an
            event left set with nothing to read would spin a select loop."""
            with self._lock:
                self._waiting = False
                if self._event is not None and (self._closed or len(self._buffer)):
                    self._event.set()
                self._cv.notify_all()

        def _buffer_frombytes(self, data: bytes) -> None:
            self._buffer.frombytes(data)

        def _buffer_tobytes(self, limit: int | None = None) -> bytes | memoryview:
            return self._buffer.head(limit)  # type: ignore[no-any-return]

    return PacketPipe


def channel_map(paramiko: Any) -> Any:
    """A transport's channel map that gives each channel packet-queue buffers as it is
    registered (Transport._channels). Its `wake_batch`, when a receive path sets one, is
    what those buffers batch their wakeups with."""
    pipe = _pipe_class()

    class PacketBufferedChannels(paramiko.transport.ChannelMap):  # type: ignore[misc]
        wake_batch: WakeBatch | None = None

        def put(self, chanid: int, chan: Any) -> None:
            chan.in_buffer = pipe(self.wake_batch)
            chan.in_stderr_buffer = pipe(self.wake_batch)
            super().put(chanid, chan)

    return PacketBufferedChannels()
