"""`lager python --console` through the box's keeper (issue 13): the console opens in about
the time a `--list` through the keeper takes, with no handshake and no paramiko in the client.

A console is a stream both ways, which the keeper's request socket (one request, one answer)
does not carry, so a keeper (client/mux.py, or a run serving as one, client/run_keeper.py)
also listens on a second socket beside it, STREAM_SUFFIX, with the same rules: 0600 in the
0700 mux dir, the peer's uid checked, nothing when LAGER_MUX=0. On it, frames both ways
(one type byte, a 4-byte length, the payload):

  client -> keeper: Q StreamOpen first; then D data, R StreamResize, E (EOF)
  keeper -> client: K once the console's channel is open, then O stdout, X stderr, S
                    StreamExit; or F StreamRefused instead of K when it could not be opened
                    (the client then opens the console another way: nothing of its input is
                    lost). The typed payloads are lager.protocol.channel's.

Opening a console twice does no harm (it only looks), so any failure before the console
answered lets the client take the quick SSH client instead.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from lager.protocol.codec import ProtocolError
from lager.protocol.keeper import StreamExit, StreamOpen, StreamRefused, StreamResize

TYPE_CHECKING = False  # typing is not loaded at run time on the console's path (issue 13)
if TYPE_CHECKING:
    from typing import Any

    from .ssh import BoxConnection

STREAM_SUFFIX = ".stream"
_HEAD = struct.Struct(">cI")
MAX_FRAME = 1 << 20
CONNECT_TIMEOUT = 2.0
OPEN_TIMEOUT = 15.0  # the keeper opening the console's channel (a busy box)


def _refusal(payload: bytes) -> str:
    try:
        return StreamRefused.decode(payload).error
    except ProtocolError as exc:
        return str(exc)


def stream_path(keeper_path: Path) -> Path:
    return keeper_path.with_name(keeper_path.stem + STREAM_SUFFIX + keeper_path.suffix)


def _send(sock: socket.socket, kind: bytes, payload: bytes, lock: threading.Lock) -> None:
    with lock:
        sock.sendall(_HEAD.pack(kind, len(payload)) + payload)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _recv_frame(sock: socket.socket) -> tuple[bytes, bytes]:
    kind, size = _HEAD.unpack(_recv_exact(sock, _HEAD.size))
    if size > MAX_FRAME:
        raise EOFError
    return kind, _recv_exact(sock, size)


# --- the keeper's side ---

class StreamServer:
    """Serves console streams over `current()`, the keeper's connection as it is now."""

    def __init__(self, keeper_path: Path, current: Callable[[], BoxConnection]) -> None:
        self.path = stream_path(keeper_path)
        self.current = current
        self.server: socket.socket | None = None
        self.inode = 0

    def start(self) -> StreamServer:
        tmp = self.path.with_suffix(f".{os.getpid()}")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(tmp))
            os.chmod(tmp, 0o600)
            server.listen(16)
            os.replace(tmp, self.path)
            self.inode = os.stat(self.path).st_ino
        except OSError:
            server.close()
            return self  # no console through this keeper; the quick client opens it
        self.server = server
        threading.Thread(target=self._accept, daemon=True, name="lager-keeper-streams").start()
        return self

    def _accept(self) -> None:
        server = self.server
        assert server is not None
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True,
                             name="lager-keeper-stream").start()

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        try:
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()
        except OSError:
            pass
        try:
            server.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        server.close()

    def _serve(self, client: socket.socket) -> None:
        with client:
            creds = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                      struct.calcsize("3i"))
            if struct.unpack("3i", creds)[1] != os.getuid():
                return
            lock = threading.Lock()
            try:
                client.settimeout(CONNECT_TIMEOUT)
                kind, raw = _recv_frame(client)
                client.settimeout(None)
                if kind != b"Q":
                    raise NotThroughKeeper("a stream starts with its request")
                request = StreamOpen.decode(raw)
                pty = request.pty
                from . import keeper_channels  # the keeper's side only: not a client's

                chan, refused = keeper_channels.open_stream(
                    self.current(), request.subsystem,
                    tuple(pty) if pty else None)  # type: ignore[arg-type]
                if refused:
                    # A `restrict` key: the client's own path says so and keeps its terminal
                    # cooked (console_client.open_console); a relay here would go raw.
                    chan.close()
                    raise NotThroughKeeper("the box refused a terminal")
            except Exception as exc:  # noqa: BLE001 - told to the client, which goes another way
                try:
                    _send(client, b"F", StreamRefused(error=str(exc)).encode(), lock)
                except OSError:
                    pass
                return
            try:
                _send(client, b"K", b"", lock)
                self._relay(client, chan, request, lock)
            except OSError:
                pass  # the client went away
            finally:
                chan.close()

    @staticmethod
    def _relay(client: socket.socket, chan: Any, request: StreamOpen,
               lock: threading.Lock) -> None:
        if request.line is not None:
            chan.sendall((request.line + "\n").encode())

        def pump(read: Callable[[int], bytes], kind: bytes) -> None:
            try:
                while data := read(1 << 16):
                    _send(client, kind, data, lock)
            except OSError:
                pass

        out = threading.Thread(target=pump, args=(chan.recv, b"O"), daemon=True)
        err = threading.Thread(target=pump, args=(chan.recv_stderr, b"X"), daemon=True)
        out.start()
        err.start()

        def from_client() -> None:
            try:
                while True:
                    kind, payload = _recv_frame(client)
                    if kind == b"D":
                        chan.sendall(payload)
                    elif kind == b"R":
                        size = StreamResize.decode(payload)
                        chan.resize_pty(width=size.cols, height=size.rows)
                    elif kind == b"E":
                        chan.shutdown_write()
            except (OSError, EOFError, ProtocolError):
                chan.close()  # the client went away: so does its console

        threading.Thread(target=from_client, daemon=True).start()
        out.join()
        err.join()
        status = chan.recv_exit_status()
        try:
            _send(client, b"S", StreamExit(status=status).encode(), lock)
        except OSError:
            pass


# --- the client's side: the channel API client/console_client.py relays ---

class NotThroughKeeper(Exception):
    """No keeper stream to use, or it could not open the console: open it another way."""


class KeeperChannel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.out = bytearray()
        self.err = bytearray()
        self.ended = False
        self.lost = False  # the keeper went away before the console's end
        self.exit_status = -1

    def _read_frame(self) -> None:
        try:
            kind, payload = _recv_frame(self.sock)
        except (OSError, EOFError):
            self.ended = self.lost = True
            return
        if kind == b"O":
            self.out += payload
        elif kind == b"X":
            self.err += payload
        elif kind == b"S":
            self.exit_status = StreamExit.decode(payload).status
            self.ended = True
        elif kind == b"F":
            self.ended = True
            raise NotThroughKeeper(StreamRefused.decode(payload).error)

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        return bool(self.out) or self.ended

    def arrived(self) -> bool:
        if not self.pending():
            self._read_frame()
        return self.pending()

    def recv(self, size: int) -> bytes:
        while not self.out and not self.ended:
            self._read_frame()
        data = bytes(self.out[:size])
        del self.out[:size]
        return data

    def recv_stderr(self, size: int) -> bytes:
        while not self.ended:
            self._read_frame()
        data = bytes(self.err[:size])
        del self.err[:size]
        return data

    def recv_exit_status(self) -> int:
        while not self.ended:
            self._read_frame()
        if self.lost:
            from lager.errors import ConnectionFailed

            raise ConnectionFailed("lost the connection keeper (and the box's console through "
                                   "it) before the console ended")
        return self.exit_status

    def sendall(self, data: bytes) -> None:
        _send(self.sock, b"D", data, self.lock)

    def shutdown_write(self) -> None:
        _send(self.sock, b"E", b"", self.lock)

    def resize_pty(self, width: int, height: int) -> None:
        _send(self.sock, b"R", StreamResize(cols=width, rows=height).encode(), self.lock)

    def close(self) -> None:
        self.sock.close()


def open_console(keeper_path: Path, run_id: str, subsystem: str,
                 pty: tuple[str, int, int] | None) -> KeeperChannel:
    """A console channel through the keeper; NotThroughKeeper before anything was shown."""
    path = stream_path(keeper_path)
    if not path.exists():
        raise NotThroughKeeper("no keeper")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(str(path))
        chan = KeeperChannel(sock)
        _send(sock, b"Q", StreamOpen(subsystem=subsystem, line=run_id,
                                     pty=list(pty) if pty else None).encode(), chan.lock)
        sock.settimeout(OPEN_TIMEOUT)
        kind, payload = _recv_frame(sock)  # K, or F: before any input of ours is taken
    except (OSError, EOFError) as exc:
        sock.close()
        raise NotThroughKeeper(str(exc) or "the keeper went away") from None
    if kind != b"K":
        sock.close()
        raise NotThroughKeeper(_refusal(payload))
    sock.settimeout(None)
    return chan


def keeper_console(keeper_path: Path, run_id: str) -> int | None:
    """`lager python --console ID` through the keeper: its exit code, or None when there is
    no keeper stream or it could not open the console (the caller opens it another way)."""
    from lager import protocol

    # The relay is the one every console uses; it takes any channel with paramiko's API.
    from .console_client import _interactive, _pty, _session

    interactive = _interactive()
    try:
        chan = open_console(keeper_path, run_id, protocol.SUB_CONSOLE, _pty(interactive))
    except NotThroughKeeper:
        return None
    try:
        return _session(chan, interactive)
    finally:
        chan.close()
