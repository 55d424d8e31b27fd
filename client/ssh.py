"""Connections to a box: paramiko over a socket we create (TCP_NODELAY), pinned host keys.

paramiko is imported here only, and only by commands that talk to a box, so `lager --help`
and usage errors never pay for it.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lager.errors import AuthFailed, ConnectionFailed, HostKeyChanged, LagerError

from .config import (
    DEFAULT_CONNECT_TIMEOUT,
    ENV_CONNECT_TIMEOUT,
    Box,
    Config,
    connect_timeout,
)

if TYPE_CHECKING:
    import paramiko

# Throughput depends on packet size and cipher (DESIGN.md): 256 KiB packets, AES-GCM first.
MAX_PACKET = 256 * 1024
WINDOW = 8 * 1024 * 1024
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")

_debug = False


def set_debug(flag: bool) -> None:
    """With --debug, paramiko's own log (tracebacks included) reaches stderr again."""
    global _debug
    _debug = flag


def _paramiko() -> Any:
    # paramiko.config imports invoke (about 0.15 s) only for `Match exec`, which lager never
    # uses; paramiko treats its absence as optional.
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    import paramiko

    if not _debug:
        # paramiko logs every failed handshake with a traceback from its own thread, and with
        # no handler configured Python prints that to stderr before lager's one line.
        logger = logging.getLogger("paramiko")
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return paramiko


def fingerprint(key_bytes: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


class Deadline:
    """One budget for TCP connect, key exchange and auth, as OpenSSH's ConnectTimeout."""

    def __init__(self, box: Box) -> None:
        self.seconds = connect_timeout(box)
        self.at = time.monotonic() + self.seconds

    def left(self) -> float:
        return max(0.01, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def too_slow(self, box: Box, stage: str) -> ConnectionFailed:
        return ConnectionFailed(
            f"box {box.name} ({box.host}:{box.port}) {stage} within {self.seconds:g}s "
            f"(raise it with {ENV_CONNECT_TIMEOUT} or `lager boxes add --connect-timeout`)")


def _open_socket(box: Box, deadline: Deadline) -> socket.socket:
    try:
        sock = socket.create_connection((box.host, box.port), timeout=deadline.left())
    except socket.gaierror as exc:
        raise ConnectionFailed(f"box {box.name}: cannot resolve host {box.host!r} "
                               f"({exc.strerror})") from None
    except ConnectionRefusedError:
        raise ConnectionFailed(f"box {box.name} ({box.host}:{box.port}) refused the "
                               "connection: is `lager-box serve` running there?") from None
    except TimeoutError:
        raise deadline.too_slow(box, "did not accept the connection") from None
    except OSError as exc:
        raise ConnectionFailed(f"box {box.name} ({box.host}:{box.port}): "
                               f"{exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def start_transport(box: Box, deadline: Deadline | None = None) -> paramiko.Transport:
    """TCP plus key exchange, before any host key check or auth, within the deadline."""
    paramiko = _paramiko()
    deadline = deadline or Deadline(box)
    sock = _open_socket(box, deadline)
    transport = paramiko.Transport(sock)
    transport.get_security_options().ciphers = CIPHERS
    transport.default_max_packet_size = MAX_PACKET
    transport.default_window_size = WINDOW
    # paramiko racing its own rekey against a busy session channel fails with "Key-exchange
    # timed out" (paramiko issue #822; seen here at ~1 GB of script output). The box rekeys
    # every REKEY_BYTES (box_agent/server.py) and hourly, so the client leaves it to the box.
    transport.packetizer.REKEY_BYTES = 1 << 62
    transport.packetizer.REKEY_PACKETS = 1 << 62
    transport.banner_timeout = transport.handshake_timeout = deadline.left()
    # With an event, start_client returns at once and we wait ourselves: without one, paramiko
    # returns silently when its timeout passes, as if the handshake had worked.
    negotiated = threading.Event()
    transport.start_client(event=negotiated)
    negotiated.wait(deadline.left())
    active = transport.is_active()
    if negotiated.is_set() and active:
        return transport
    exc = transport.get_exception()
    transport.close()
    if active:
        raise deadline.too_slow(box, "did not complete the SSH handshake")
    reason = str(exc) if exc is not None else ""
    if not reason or "protocol banner" in reason:
        reason = "the box closed the connection before the SSH greeting (is it busy, or not " \
                 "a lager box?)"
    raise ConnectionFailed(f"box {box.name} ({box.host}:{box.port}): SSH handshake "
                           f"failed: {reason}")


def load_identity(config: Config, box: Box) -> paramiko.PKey:
    paramiko = _paramiko()
    path = config.identity_path(box)
    if not path.exists():
        if box.identity:
            raise AuthFailed(f"identity file {path} does not exist")
        raise AuthFailed(f"no client key at {path}: run `lager boxes add {box.name} "
                         f"--host {box.host}` to create one")
    try:
        return paramiko.PKey.from_path(str(path))
    except paramiko.PasswordRequiredException:
        raise AuthFailed(f"identity {path} is passphrase-protected; lager needs a key "
                         "without one (or an unlocked copy)") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise AuthFailed(f"cannot read identity {path}: {exc}") from None


def check_pinned(config: Config, box: Box, transport: paramiko.Transport) -> None:
    key = transport.get_remote_server_key()
    seen = fingerprint(key.asbytes())
    pinned = config.pinned_line(box)
    if pinned is None:
        raise HostKeyChanged(f"no pinned host key for box {box.name}; pin it with "
                             f"`lager boxes add {box.name} --host {box.host} --port {box.port}`")
    _, key_type, key_b64 = pinned.split()[:3]
    if key_type != key.get_name() or key_b64 != key.get_base64():
        was = fingerprint(base64.b64decode(key_b64))
        raise HostKeyChanged(
            f"HOST KEY CHANGED for box {box.name} ({box.host}:{box.port}): pinned {was}, "
            f"box now shows {seen}. Refusing to connect. If the box was reinstalled, "
            f"re-pin with `lager boxes add {box.name} --host {box.host} --port {box.port} "
            f"--repin`")


def authenticate(config: Config, box: Box, transport: paramiko.Transport,
                 deadline: Deadline | None = None) -> None:
    paramiko = _paramiko()
    deadline = deadline or Deadline(box)
    key = load_identity(config, box)
    transport.auth_timeout = deadline.left()
    try:
        transport.auth_publickey(box.user, key)
    except paramiko.AuthenticationException:
        transport.close()
        if deadline.expired():
            raise deadline.too_slow(box, "did not answer the key authentication") from None
        pub = f"{key.get_name()} {key.get_base64()}"
        raise AuthFailed(f"box {box.name} refused key {config.identity_path(box)} "
                         f"({fingerprint(key.asbytes())}); on the box run: "
                         f"lager-box authorize '{pub}'") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise ConnectionFailed(f"box {box.name}: authentication failed: {exc}") from None


class BoxConnection:
    """An authenticated transport to one box; channels are opened on demand."""

    def __init__(self, config: Config, box: Box) -> None:
        self.box = box
        self.deadline = Deadline(box)
        self.transport = start_transport(box, self.deadline)
        try:
            check_pinned(config, box, self.transport)
        except LagerError:
            self.transport.close()
            raise
        authenticate(config, box, self.transport, self.deadline)

    def open(self, subsystem: str, env: dict[str, str] | None = None,
             pty: tuple[str, int, int] | None = None,
             on_invoke: Callable[[], None] | None = None) -> paramiko.Channel:
        """A channel to `subsystem`. on_invoke runs just before the box is asked for it: from
        then on the box may act, so a failure can no longer be taken as "never sent"."""
        paramiko = _paramiko()
        try:
            # The box may be busy but should grant a channel about as fast as it did the login.
            chan = self.transport.open_session(window_size=WINDOW, max_packet_size=MAX_PACKET,
                                               timeout=max(self.deadline.seconds,
                                                           DEFAULT_CONNECT_TIMEOUT))
            for name, value in (env or {}).items():
                chan.set_environment_variable(name, value)
            if pty:
                term, cols, rows = pty
                chan.get_pty(term=term, width=cols, height=rows)
            if on_invoke is not None:
                on_invoke()
            chan.invoke_subsystem(subsystem)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionFailed(f"box {self.box.name}: cannot open {subsystem!r}: "
                                   f"{exc}") from None
        return chan

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> BoxConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
