"""`lager python SCRIPT` over the quick SSH client (client/quick_ssh.py): a run without paramiko.

Importing paramiko, and the parts of cryptography it loads, took about 40 of the ~120 ms before
a run's first output byte on loopback, and the box waited for our key exchange all that time
(issue 13). Here the run starts on the quick client instead: key exchange, login and the run
channel in three flights, the run request and the script with the channel's first requests. Its
output is read by a thread of its own, which decrypts the box's large packets into pooled
buffers (client/plain_pool.py) and hands their data to the follower as views, as the lean path
of a paramiko transport does (client/fast_recv.py). The follower (client/follow.py) cannot tell
the difference: RunChannel is the part of paramiko's Channel it uses.

What the quick client cannot carry, such a run gets over a full (paramiko) connection, made only
when it is needed:
  - after a lost link the follower reattaches over a full connection (client/reconnect.py), as
    every run does;
  - a run serves its user's other terminals (client/run_keeper.py) over a second, full
    connection (client/side_keeper.py), made in the background from the run's first pause,
    or once it has gone on a second; a request that comes before it is up waits for it. A
    short run, or a short stream, never pays for it.

Used only where the quick client is complete: a box reached directly with lager's own ed25519 key
and a plain pin, a foreground run not waiting in a reservation queue. Anything else, and any
refusal before the run request went out (another key type, a changed pin...), takes the full way,
which does the same or says precisely why not. LAGER_QUICK_RUN=0 turns it off (A/B measurements).
"""
from __future__ import annotations

import itertools
import os
import struct
import threading
import time
from collections import deque

from lager import protocol
from lager.errors import ConnectionFailed, refusal

from . import preconnect, quick_keys
from . import quick_ssh as q
from .config import Box, Config, connect_timeout
from .plain_pool import PlainPool
from .quick_channel import (
    CLOSE,
    DATA,
    EOF,
    EXTENDED_DATA,
    MAX_DATA,
    OPEN,
    REQUEST,
    WINDOW_ADJUST,
    QuickChannel,
    usable,
)
from .quick_packets import Packets
from .ssh_wire import GLOBAL_REQUEST, REQUEST_FAILURE, REQUEST_SUCCESS

# Not typing.TYPE_CHECKING: a run's start does without importing typing where it can.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from .context import LagerContext
    from .run_client import RunRequest

VERSION = q.VERSION
_LENGTH = struct.Struct(">I")
_DATA_HEAD = struct.Struct(">II")  # recipient channel, data length
# Window given back once a quarter of it is read (client/chan_buffer.py has the reasons).
_GIVE_BACK = protocol.CLIENT_WINDOW // 4


def planned(box: Box, detach: bool, wait: float | None) -> bool:
    """Whether a run's start tries the quick client (see the module)."""
    return os.environ.get("LAGER_QUICK_RUN") != "0" and not detach and wait is None \
        and usable(box)


class RunChannel(QuickChannel):
    """The run's channel: paramiko's Channel API as the follower uses it, fed by a reader
    thread (start_reading) once the run request is out."""

    def __init__(self, transport: q.Transport, box: Box) -> None:
        super().__init__(transport, box.name)
        self.box = box
        self._pieces: dict[int, deque[bytes | memoryview]] = {1: deque(), 2: deque()}
        self._cond = threading.Condition()
        # The follower select()s on fileno(): this pipe is readable while something waits.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._signalled = False
        self._taken = 0  # bytes read by the follower and not yet given back to the box
        self._status_seen = False
        self._closing = False  # we are closing: a read error is not a lost link
        self.heard_at = time.monotonic()
        self.pool = PlainPool()
        self.reader: threading.Thread | None = None
        self.lost_because = ""

    def opening(self) -> bytes:
        # The box's largest packets and the client's window, as the full path asks
        # (client/ssh.py): the quick default suits short answers, not a stream.
        return (bytes([OPEN]) + q.string(b"session") + q.u32(0)
                + q.u32(protocol.CLIENT_WINDOW) + q.u32(protocol.MAX_PACKET))

    # --- incoming, on the reader thread (and during start(), on the caller's) ---

    def _dispatch(self, payload: bytes | memoryview) -> None:  # type: ignore[override]
        kind = payload[0]
        if kind in (DATA, EXTENDED_DATA) and len(payload) >= 9:
            if _DATA_HEAD.unpack_from(payload, 1)[0] != 0:
                return
            head = 9 if kind == DATA else 13
            if len(payload) < head:
                raise q.Lost("a short data packet")
            length = _LENGTH.unpack_from(payload, head - 4)[0]
            if head + length > len(payload):
                raise q.Lost("a data packet longer than its packet")
            data = payload[head:head + length]
            if isinstance(data, memoryview):
                data = data.toreadonly()
            self._queue(1 if kind == DATA else 2, data)
            return
        if kind in (REQUEST_SUCCESS, REQUEST_FAILURE):
            return  # a keepalive's answer: hearing from the box is all it was for
        payload = bytes(payload)
        super()._dispatch(payload)
        if kind == REQUEST:
            r = q.Reader(payload, 1)
            if r.u32() == 0 and r.string() == b"exit-status":
                with self._cond:
                    self._status_seen = True  # after the status itself is set
                    self._cond.notify_all()
        elif kind in (EOF, CLOSE):
            self._wake(at_end=True)

    def _queue(self, stream: int, data: bytes | memoryview) -> None:
        if data:
            with self._cond:
                self._pieces[stream].append(data)
                self._wake_locked()

    def _wake(self, at_end: bool = False) -> None:
        with self._cond:
            self._wake_locked(at_end)

    def _wake_locked(self, at_end: bool = False) -> None:
        """Under _cond: the pipe is readable exactly while a piece waits (or from the end on,
        when the follower stops select()ing on it): a byte left with nothing to take would
        have the follower's select() return at once, again and again, through a pause."""
        self._cond.notify_all()
        if self._signalled and not at_end:
            return
        self._signalled = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # full: readable either way

    # --- the reader thread ---

    def start_reading(self) -> None:
        self.reader = threading.Thread(target=self._read_loop, daemon=True,
                                       name="lager-quick-run")
        self.reader.start()

    def _read_loop(self) -> None:
        t = self.transport
        packets = Packets(t, self.pool)
        packets.take_over()
        interval = self.box.server_alive_interval
        patience = interval * max(1, self.box.server_alive_count_max)
        t.sock.settimeout(interval if interval > 0 else None)
        try:
            while not self.closed:
                try:
                    payload = packets.next()
                except TimeoutError:
                    # ServerAliveInterval / ServerAliveCountMax, as the full path
                    # (client/proxyjump.py keepalive): a box silent that long is gone.
                    if time.monotonic() - self.heard_at >= patience:
                        raise q.Lost("Timeout, server not responding") from None
                    t.send(bytes([GLOBAL_REQUEST]) + q.string(b"keepalive@openssh.com")
                           + b"\1")
                    continue
                self.heard_at = time.monotonic()
                if payload[0] == q.KEXINIT:
                    # The box rekeys (bytes or time, box_agent/rekey_limit.py): the
                    # transport's reader does the exchange, from what was read ahead.
                    packets.give_back()
                    t.rekey(bytes(payload))
                    packets.take_over()
                    continue
                if payload[0] == GLOBAL_REQUEST:
                    t.refuse_global(bytes(payload))
                    continue
                self._dispatch(payload)
        except (q.Lost, q.Unsupported, OSError) as exc:
            if not self._closing:
                self.lost_because = str(exc) or type(exc).__name__
        finally:
            # A lost link: closed with no exit status (paramiko's -1); the follower
            # reattaches or says so.
            with self._cond:
                self.eof_received = self.closed = True
                self._cond.notify_all()
            with self.window_cond:
                self.window_cond.notify_all()
            self._wake(at_end=True)

    # --- paramiko's Channel API, the part the follower uses ---

    def fileno(self) -> int:
        return self._wake_r

    def recv_ready(self) -> bool:
        return bool(self._pieces[1])

    def recv_stderr_ready(self) -> bool:
        return bool(self._pieces[2])

    def exit_status_ready(self) -> bool:
        return self.closed or self._status_seen

    def recv_exit_status(self) -> int:
        with self._cond:
            while not self.closed and not self._status_seen:
                self._cond.wait(1.0)
        return self.exit_status

    def recv(self, size: int) -> bytes | memoryview:  # type: ignore[override]
        return self._take_piece(1, size)

    def recv_stderr(self, size: int) -> bytes | memoryview:  # type: ignore[override]
        return self._take_piece(2, size)

    def _take_piece(self, stream: int, size: int) -> bytes | memoryview:
        """The oldest piece as it came (or its first `size` bytes); b"" at the end. Waits
        while there is none and the channel is open."""
        pieces = self._pieces[stream]
        with self._cond:
            while not pieces and not self.eof_received:
                self._cond.wait(1.0)
            if not pieces:
                return b""
            piece = pieces.popleft()
            if len(piece) > size:
                pieces.appendleft(piece[size:])
                piece = piece[:size]
            if not self._pieces[1] and not self._pieces[2] and not self.eof_received:
                self._signalled = False
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
        self._taken += len(piece)
        if self._taken >= _GIVE_BACK and not self.closed:
            taken, self._taken = self._taken, 0
            try:
                self.transport.send(bytes([WINDOW_ADJUST]) + q.u32(self.remote or 0)
                                    + q.u32(taken))
            except (q.Lost, OSError):
                pass  # the reader sees the link go, and says so
        return piece

    def sendall(self, data: bytes) -> None:
        try:
            super().sendall(data)
        except q.Lost as exc:
            raise OSError(str(exc)) from None

    def close(self) -> None:
        self._closing = True
        super().close()
        if self.reader is not None and self.reader is not threading.current_thread():
            self.reader.join(2.0)


def start(obj: LagerContext, request: RunRequest) -> RunChannel | None:
    """The run started over the quick client, its channel reading; None when the quick client
    cannot take this run (the full way then starts it: nothing reached the box's run
    subsystem). ConnectionFailed once the request may have reached the box."""
    from .run_client import upload_chunks

    box = obj.box()
    return open_run(obj.config, box, upload_chunks(request, box.name))


def open_run(config: Config, box: Box, upload: Iterator[bytes]) -> RunChannel | None:
    """A `run` channel with `upload` (the request's header line and files) sent: see start."""
    from .context import read_all

    try:
        key, public_blob = quick_keys.load_ed25519(config.identity_path(box))
        pinned = quick_keys.pinned_blob(config.pinned_line(box))
    except q.Unsupported:
        return None
    timeout = connect_timeout(box)
    began = time.monotonic()
    try:
        # The connection the run began while it imported (client/preconnect.py), with our
        # version line sent, else a new one.
        sock = preconnect.take(box.host, box.port, timeout)
    except OSError:
        return None  # the full way connects again and says what is wrong in its words
    sent = preconnect.sent_version(sock) if sock is not None else None
    if sock is not None and sent is not None and sent != VERSION.decode():
        sock.close()  # paramiko's version line went out on it: not ours to use
        sock = sent = None
    try:
        if sock is None:
            sock = q.open_socket(box.host, box.port, timeout)
    except (q.Unsupported, OSError):
        return None
    transport = q.Transport(sock, pinned, VERSION, version_sent=sent is not None)
    chan = RunChannel(transport, box)
    # The request's header and, when it is small, the script go with the run's subsystem
    # request: no round trip of their own.
    first = bytearray()
    rest: list[bytes] = []
    for chunk in upload:
        if len(first) + len(chunk) > MAX_DATA:
            rest.append(chunk)
            break
        first += chunk
    try:
        sock.settimeout(max(0.01, timeout - (time.monotonic() - began)))
        transport.start(box.user, key, public_blob, [chan.opening()])
        taken = chan.start(None, None, protocol.SUB_RUN, bytes(first), False, partial=True)
        sock.settimeout(None)
    except (q.Unsupported, q.Lost, TimeoutError, OSError, ConnectionFailed) as exc:
        transport.close()
        if not chan.sent or chan.refused:
            return None  # a refused subsystem started nothing: the full way says why
        raise ConnectionFailed(
            f"lost the connection to box {box.name} as the run started ({exc}); it may have "
            "started there: check with `lager python --list`") from None
    chan.start_reading()
    try:
        # The rest of the files as they are read: never all of an upload in memory at once.
        for chunk in itertools.chain((bytes(first[taken:]),), rest, upload):
            chan.sendall(chunk)
    except OSError as exc:
        if chan.exit_status_ready() and chan.exit_status >= 0:
            # The box refused the run before taking all of it: its words, as the full way.
            status = chan.recv_exit_status()
            raise refusal("run", read_all(chan)[1], status) from None
        chan.close()
        raise ConnectionFailed(f"upload to box {box.name} failed: "
                               f"{chan.lost_because or exc}") from None
    return chan
