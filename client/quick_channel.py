"""One session channel over client/quick_ssh.py, opened in the same flight as the login.

The channel open goes out with the auth request; its requests (env, pty, subsystem), the first
line of data and our EOF go out together the moment the box confirms the channel. A box running
asyncssh opens a channel in a task of its own, so a request sent before its confirmation would
find the channel not yet open: that one round trip stays. A short request costs four round trips
in all (TCP, keys, login + open, request + answer) where OpenSSH spends about eight.

QuickChannel offers the part of paramiko's Channel that lager's console code uses, so the
console works over either.
"""
from __future__ import annotations

import threading
import time

from lager import protocol
from lager.errors import ConnectionFailed

from . import quick_keys
from . import quick_ssh as q
from .config import Box, Config, connect_timeout
from .ssh_wire import GLOBAL_REQUEST

OPEN, OPEN_CONFIRMATION, OPEN_FAILURE, WINDOW_ADJUST = 90, 91, 92, 93
DATA, EXTENDED_DATA, EOF, CLOSE, REQUEST, SUCCESS, FAILURE = 94, 95, 96, 97, 98, 99, 100
MAX_DATA = 32 * 1024  # what we send per packet; any box accepts it


def usable(box: Box) -> bool:
    """Only what the quick client handles alone: a direct TCP connection to the box. Boxes
    reached through ssh_config's ProxyJump or ProxyCommand, or by certificate, take the full
    way."""
    return not (getattr(box, "jumps", None) or getattr(box, "proxy_command", None)
                or getattr(box, "certificate", None) or getattr(box, "hop", False))


class QuickChannel:
    def __init__(self, transport: q.Transport, name: str) -> None:
        self.transport = transport
        self.name = name
        self.remote: int | None = None
        self.remote_window = 0
        self.remote_packet = MAX_DATA
        self.window_cond = threading.Condition()
        self.out = bytearray()
        self.err = bytearray()
        self.unacked = 0  # bytes taken by the reader that no WINDOW_ADJUST has given back yet
        self.collect = False  # a short request: all is kept, so give the window back at once
        self.eof_received = False
        self.closed = False
        self.close_sent = False
        self.exit_status = -1
        self.replies: list[str] = []  # requests sent with want_reply, oldest first
        self.refused: list[str] = []
        self.sent = False  # the channel's requests went out (start)

    # --- opening ---

    def opening(self) -> bytes:
        return (bytes([OPEN]) + q.string(b"session") + q.u32(0) + q.u32(protocol.QUICK_WINDOW)
                + q.u32(MAX_DATA))

    def _request(self, name: str, want_reply: bool, body: bytes) -> bytes:
        if want_reply:
            self.replies.append(name)
        return (bytes([REQUEST]) + q.u32(self.remote or 0) + q.string(name.encode())
                + (b"\1" if want_reply else b"\0") + body)

    def start(self, env: dict[str, str] | None, pty: tuple[str, int, int] | None,
              subsystem: str, first: bytes, eof: bool, partial: bool = False) -> int:
        """Once the box has confirmed the channel: every request, the first data and our EOF
        in one flight, then their answers. With `partial`, as much of `first` as the box's
        window and packet take (the rest is the caller's to send); the bytes of it sent.
        `sent` is true from the moment the requests may have reached the box."""
        while self.remote is None:
            self._dispatch(self.transport.read_packet())
        for name, value in (env or {}).items():
            self.transport.queue(self._request("env", False, q.string(name.encode())
                                               + q.string(value.encode())))
        if pty is not None:
            term, cols, rows = pty
            self.transport.queue(self._request(
                "pty-req", True, q.string(term.encode()) + q.u32(cols) + q.u32(rows)
                + q.u32(0) + q.u32(0) + q.string(b"\0")))
        self.transport.queue(self._request("subsystem", True, q.string(subsystem.encode())))
        fit = min(len(first), self.remote_window, self.remote_packet)
        if fit < len(first) and not partial:
            raise q.Unsupported("the first line does not fit the box's window")
        if fit:
            self.remote_window -= fit
            self.transport.queue(bytes([DATA]) + q.u32(self.remote) + q.string(first[:fit]))
        if eof:
            self.transport.queue(bytes([EOF]) + q.u32(self.remote))
        self.sent = True  # from here on the box may act on them
        self.transport.flush()
        while self.replies and not self.closed:
            self._dispatch(self.transport.read_packet())
        if self.refused == ["pty-req"]:
            # A `restrict` or `no-pty` key: the full path opens the channel again without a
            # terminal and says so (client/console_client.py).
            raise q.Unsupported("the box refused a terminal")
        if self.refused:
            raise ConnectionFailed(f"box {self.name} refused the {', '.join(self.refused)} "
                                   "request")
        return fit

    # --- incoming ---

    def _dispatch(self, payload: bytes) -> None:
        kind = payload[0]
        if kind == q.KEXINIT:
            self.transport.rekey(payload)
            return
        if kind == GLOBAL_REQUEST:
            self.transport.refuse_global(payload)
            return
        r = q.Reader(payload, 1)
        if kind < OPEN or r.u32() != 0:
            return  # not about our channel (0): nothing the box may expect an answer to
        if kind == OPEN_CONFIRMATION:
            self.remote = r.u32()
            with self.window_cond:
                self.remote_window += r.u32()
            self.remote_packet = min(MAX_DATA, r.u32()) or MAX_DATA
        elif kind == OPEN_FAILURE:
            raise q.Unsupported("the box refused the channel")
        elif kind == WINDOW_ADJUST:
            with self.window_cond:
                self.remote_window += r.u32()
                self.window_cond.notify_all()
        elif kind == DATA:
            data = r.string()
            self.out += data
            self._received(len(data))
        elif kind == EXTENDED_DATA:
            r.u32()
            data = r.string()
            self.err += data
            self._received(len(data))
        elif kind == EOF:
            self.eof_received = True
        elif kind == CLOSE:
            self.eof_received = self.closed = True
            self._send_close()
            with self.window_cond:
                self.window_cond.notify_all()
        elif kind == REQUEST:
            request, want_reply = r.string(), r.byte()
            if request == b"exit-status":
                self.exit_status = r.u32()
            elif want_reply:
                self.transport.send(bytes([FAILURE]) + q.u32(self.remote or 0))
        elif kind in (SUCCESS, FAILURE) and self.replies:
            name = self.replies.pop(0)
            if kind == FAILURE:
                self.refused.append(name)

    def _pump(self) -> None:
        self._dispatch(self.transport.read_packet())

    # --- paramiko's Channel API, the part lager uses ---

    def fileno(self) -> int:
        return self.transport.sock.fileno()

    def pending(self) -> bool:
        """Something to act on without waiting for the socket."""
        return bool(self.out) or self.eof_received or self.transport.packet_ready()

    def arrived(self) -> bool:
        """Take in what the socket has (it said it is readable) and every whole packet read
        already; True when stdout data or the end waits to be recv()'d without blocking."""
        if not self.out and not self.eof_received:
            self._pump()
        while self.transport.packet_ready():
            self._pump()
        return bool(self.out) or self.eof_received

    def recv_ready(self) -> bool:
        return bool(self.out)

    def settimeout(self, timeout: float | None) -> None:
        self.transport.sock.settimeout(timeout)

    def _received(self, size: int) -> None:
        if self.collect:
            self._give_back(size)

    def _give_back(self, size: int) -> None:
        self.unacked += size
        if self.unacked >= protocol.QUICK_WINDOW // 2 and not self.closed:
            self.transport.send(bytes([WINDOW_ADJUST]) + q.u32(self.remote or 0)
                                + q.u32(self.unacked))
            self.unacked = 0

    def _take(self, buf: bytearray, size: int) -> bytes:
        data = bytes(buf[:size])
        del buf[:size]
        if not self.collect:
            self._give_back(len(data))
        return data

    def recv(self, size: int) -> bytes:
        """Up to size bytes of stdout; b"" once the box sent EOF and all was read."""
        while not self.out and not self.eof_received:
            self._pump()
        return self._take(self.out, size)

    def recv_stderr(self, size: int) -> bytes:
        while not self.err and not self.eof_received:
            self._pump()
        return self._take(self.err, size)

    def recv_exit_status(self) -> int:
        while not self.closed:
            self._pump()
        return self.exit_status

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self.window_cond:
                while self.remote_window <= 0 and not self.closed:
                    self.window_cond.wait(1.0)
                if self.closed:
                    raise OSError("the channel is closed")
                size = min(len(view), self.remote_window, self.remote_packet)
                self.remote_window -= size
            self.transport.send(bytes([DATA]) + q.u32(self.remote or 0)
                                + q.string(bytes(view[:size])))
            view = view[size:]

    def shutdown_write(self) -> None:
        if not self.closed:
            self.transport.send(bytes([EOF]) + q.u32(self.remote or 0))

    def resize_pty(self, width: int, height: int) -> None:
        if not self.closed:
            self.transport.send(self._request("window-change", False, q.u32(width)
                                              + q.u32(height) + q.u32(0) + q.u32(0)))

    def _send_close(self) -> None:
        if not self.close_sent:
            self.close_sent = True
            try:
                self.transport.send(bytes([CLOSE]) + q.u32(self.remote or 0))
            except q.Lost:
                pass  # the box is gone already: closed either way

    def close(self) -> None:
        self._send_close()
        self.transport.close()


def open_channel(config: Config, box: Box, subsystem: str, *, first: str | None = None,
                 eof: bool = False, env: dict[str, str] | None = None,
                 pty: tuple[str, int, int] | None = None,
                 resend_safe: bool = False) -> QuickChannel:
    """A channel to `subsystem` with `first` (a line) sent and, with eof, our side closed.

    Raises Unsupported while the full path may still be taken: nothing reached the box's
    subsystem, or sending it again does no harm (resend_safe). Otherwise ConnectionFailed.
    """
    if not usable(box):
        raise q.Unsupported("the box is reached through ssh_config's proxies or certificates")
    key, public_blob = quick_keys.load_ed25519(config.identity_path(box))
    pinned = quick_keys.pinned_blob(config.pinned_line(box))
    timeout = connect_timeout(box)
    started = time.monotonic()
    try:
        sock = q.open_socket(box.host, box.port, timeout)
    except TimeoutError:
        raise _too_slow(box, timeout, "did not accept the connection") from None
    transport = q.Transport(sock, pinned)
    chan = QuickChannel(transport, box.name)
    data = (first + "\n").encode() if first is not None else b""
    try:
        sock.settimeout(max(0.01, timeout - (time.monotonic() - started)))
        transport.start(box.user, key, public_blob, [chan.opening()])
        chan.start(env, pty, subsystem, data, eof)
        sock.settimeout(None)
    except q.Unsupported:
        transport.close()
        if chan.sent and not resend_safe:
            raise _unsure(box, subsystem, "the box answered oddly") from None
        raise
    except TimeoutError:
        transport.close()
        if chan.sent and not resend_safe:
            raise _unsure(box, subsystem, "it did not answer in time") from None
        raise _too_slow(box, timeout, "did not complete the SSH handshake") from None
    except q.Lost as exc:
        transport.close()
        if chan.sent and not resend_safe:
            raise _unsure(box, subsystem, str(exc)) from None
        raise q.Unreachable(str(exc)) from None
    except ConnectionFailed:
        transport.close()
        raise
    return chan


def _too_slow(box: Box, seconds: float, stage: str) -> ConnectionFailed:
    return ConnectionFailed(
        f"box {box.name} ({box.host}:{box.port}) {stage} within {seconds:g}s "
        "(raise it with LAGER_CONNECT_TIMEOUT or `lager boxes add --connect-timeout`)")


def _unsure(box: Box, subsystem: str, why: str) -> ConnectionFailed:
    return ConnectionFailed(
        f"lost the connection to box {box.name} ({why}); the {subsystem!r} request may have "
        "reached the box, so it was not sent again: check with `lager python --list`")


def exchange(config: Config, box: Box, subsystem: str, line: str | None,
             env: dict[str, str] | None = None, resend_safe: bool = False
             ) -> tuple[str, str, int]:
    """One short request and its whole answer, as client/context.py's exchange."""
    chan = open_channel(config, box, subsystem, first=line, eof=True, env=env,
                        resend_safe=resend_safe)
    chan.collect = True
    try:
        status = chan.recv_exit_status()
    except q.Lost as exc:
        raise ConnectionFailed(f"lost the connection to box {box.name} before it answered "
                               f"the {subsystem!r} request ({exc})") from None
    finally:
        chan.close()
    out = bytes(chan.out).decode("utf-8", "replace")
    err = bytes(chan.err).decode("utf-8", "replace")
    if status < 0:
        raise ConnectionFailed(f"lost the connection to box {box.name} before it answered "
                               f"the {subsystem!r} request")
    return out, err, status

