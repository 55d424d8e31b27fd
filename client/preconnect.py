"""The TCP connection to the box, and our SSH version, sent while the run's client still
imports (issue 13).

Before its first byte, `lager python SCRIPT` spends some 60 ms of CPU importing the modules
of a run (paramiko the biggest), and only then connects. On a network the connect is a round
trip, and the box sends its key exchange offer (KEXINIT) only once it has our version line
(asyncssh, and sshd): another round trip. So the connect starts first, in a thread (it waits
in the kernel, without the GIL), which also sends the version line paramiko would send;
client/ssh.py takes the socket when it gets there, and paramiko's transport is told that its
version line is already out (`adopt`). The box's version and offer are then waiting when
paramiko starts, and its own offer and key exchange go out together: one round trip less.

Only a box reached directly (no ProxyCommand, no ProxyJump: those open their own way), and
only once: the first connection to that host and port takes it, any other connects as always.
A failed connect is kept and raised where the connection is asked for, so its message is the
one it always was.
"""
from __future__ import annotations

import socket
import threading
import weakref

# Not typing.TYPE_CHECKING: this module is imported before typing would be (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .config import Box

_lock = threading.Lock()
_pending: dict[tuple[str, int], _Early] = {}


def address(host: str) -> str | bytes:
    """An ASCII host name as bytes: a str makes getaddrinfo load the idna codec (with
    unicodedata and stringprep), ~1.5 ms, for nothing."""
    return host.encode("ascii") if host.isascii() else host


def paramiko_version_line() -> str | None:
    """"SSH-2.0-paramiko_VERSION", as paramiko's Transport sends it, without importing
    paramiko (its version as client/paramiko_package.py reads it); None when it cannot be
    read so (then nothing is sent early, and paramiko sends its own line as always)."""
    import importlib.util

    from .paramiko_package import dist_info_version

    version = dist_info_version(importlib.util.find_spec("paramiko"))
    return None if version is None else f"SSH-2.0-paramiko_{version}"


class _Early:
    """One connect under way in its own thread: its socket (with our version line sent, when
    there is one), or what it raised."""

    def __init__(self, host: str, port: int, timeout: float, version: str | None) -> None:
        self.sock: socket.socket | None = None
        self.error: OSError | None = None
        self.version = version
        self._thread = threading.Thread(target=self._connect, args=(host, port, timeout),
                                        name="lager-preconnect", daemon=True)
        self._thread.start()

    def _connect(self, host: str, port: int, timeout: float) -> None:
        try:
            sock = socket.create_connection((address(host), port),  # type: ignore[arg-type]
                                            timeout=timeout)
        except OSError as exc:  # raised again, as it was, by take()
            self.error = exc
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.version is not None:
            try:
                sock.sendall(f"{self.version}\r\n".encode())
            except OSError:
                # The box closed at once: paramiko's handshake reads why (or the close) and
                # says it in its words; its own version line is then never needed.
                self.version = None
        self.sock = sock

    def result(self, timeout: float) -> socket.socket:
        self._thread.join(timeout)
        if self._thread.is_alive():
            # The opener's deadline passed: this socket, if it ever connects, is nobody's.
            raise TimeoutError("timed out")
        if self.error is not None:
            raise self.error
        assert self.sock is not None
        return self.sock


def start(box: Box, version: str | None = None) -> None:
    """Begin connecting to a box reached directly; nothing for any other. `version`: the
    line to send (the quick client's, client/quick_run.py), else paramiko's."""
    if box.proxy_command or box.jumps:
        return
    from lager.errors import LagerError

    from .config import connect_timeout

    try:
        timeout = connect_timeout(box)
    except LagerError:
        return  # a bad $LAGER_CONNECT_TIMEOUT: the connection proper says so
    version = version or paramiko_version_line()
    with _lock:
        key = (box.host, box.port)
        if key not in _pending:
            _pending[key] = _Early(box.host, box.port, timeout, version)


def take(host: str, port: int, timeout: float) -> socket.socket | None:
    """The early connection to host:port, waited for up to `timeout`; None when there is
    none. Raises what the connect raised (OSError, TimeoutError), as create_connection."""
    with _lock:
        early = _pending.pop((host, port), None)
    if early is None:
        return None
    sock = early.result(timeout)
    if early.version is not None:
        _version_sent[sock] = early.version
    return sock


_version_sent: weakref.WeakKeyDictionary[socket.socket, str] = weakref.WeakKeyDictionary()


def sent_version(sock: socket.socket) -> str | None:
    """The version line sent early on `sock` (taken: asked once), or None."""
    return _version_sent.pop(sock, None)


def adopt(transport: Any, sock: object) -> None:
    """A paramiko Transport about to start on `sock`: when our version line went out on it
    already, the transport's first write (that same line, from Transport.run) is not sent
    again, and the key exchange hashes the line that was sent."""
    sent = _version_sent.pop(sock, None) if isinstance(sock, socket.socket) else None
    if sent is None:
        return
    transport.local_version = sent
    packetizer = transport.packetizer
    line = f"{sent}\r\n".encode()

    def write_all(out: bytes) -> None:
        del packetizer.write_all  # paramiko's own method again, for everything after
        if out != line:  # not the version line: a paramiko that starts otherwise
            packetizer.write_all(out)

    packetizer.write_all = write_all
