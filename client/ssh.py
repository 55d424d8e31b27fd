"""Connections to a box: paramiko over a socket we create (TCP_NODELAY), pinned host keys.

paramiko is imported here only, and only by commands that talk to a box, so `lager --help`
and usage errors never pay for it.
"""
from __future__ import annotations

import base64
import hashlib
import socket
import sys
from typing import TYPE_CHECKING, Any

from lager.errors import AuthFailed, ConnectionFailed, HostKeyChanged, LagerError

from .config import Box, Config

if TYPE_CHECKING:
    import paramiko

CONNECT_TIMEOUT = 10.0
# Throughput depends on packet size and cipher (DESIGN.md): 256 KiB packets, AES-GCM first.
MAX_PACKET = 256 * 1024
WINDOW = 8 * 1024 * 1024
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


def _paramiko() -> Any:
    # paramiko.config imports invoke (about 0.15 s) only for `Match exec`, which lager never
    # uses; paramiko treats its absence as optional.
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    import paramiko

    return paramiko


def fingerprint(key_bytes: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _open_socket(box: Box) -> socket.socket:
    try:
        sock = socket.create_connection((box.host, box.port), timeout=CONNECT_TIMEOUT)
    except socket.gaierror as exc:
        raise ConnectionFailed(f"box {box.name}: cannot resolve host {box.host!r} "
                               f"({exc.strerror})") from None
    except ConnectionRefusedError:
        raise ConnectionFailed(f"box {box.name} ({box.host}:{box.port}) refused the "
                               "connection: is `lager-box serve` running there?") from None
    except TimeoutError:
        raise ConnectionFailed(f"box {box.name} ({box.host}:{box.port}) did not answer "
                               f"within {CONNECT_TIMEOUT:g}s") from None
    except OSError as exc:
        raise ConnectionFailed(f"box {box.name} ({box.host}:{box.port}): "
                               f"{exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def start_transport(box: Box) -> paramiko.Transport:
    """TCP plus key exchange, before any host key check or auth."""
    paramiko = _paramiko()
    sock = _open_socket(box)
    transport = paramiko.Transport(sock)
    transport.get_security_options().ciphers = CIPHERS
    transport.default_max_packet_size = MAX_PACKET
    transport.default_window_size = WINDOW
    # paramiko racing its own rekey against a busy session channel fails with "Key-exchange
    # timed out" (paramiko issue #822; seen here at ~1 GB of script output). The box rekeys
    # every REKEY_BYTES (box_agent/server.py) and hourly, so the client leaves it to the box.
    transport.packetizer.REKEY_BYTES = 1 << 62
    transport.packetizer.REKEY_PACKETS = 1 << 62
    try:
        transport.start_client(timeout=CONNECT_TIMEOUT)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise ConnectionFailed(f"box {box.name} ({box.host}:{box.port}): SSH handshake "
                               f"failed: {exc or type(exc).__name__}") from None
    return transport


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


def authenticate(config: Config, box: Box, transport: paramiko.Transport) -> None:
    paramiko = _paramiko()
    key = load_identity(config, box)
    try:
        transport.auth_publickey(box.user, key)
    except paramiko.AuthenticationException:
        transport.close()
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
        self.transport = start_transport(box)
        try:
            check_pinned(config, box, self.transport)
        except LagerError:
            self.transport.close()
            raise
        authenticate(config, box, self.transport)

    def open(self, subsystem: str, env: dict[str, str] | None = None,
             pty: tuple[str, int, int] | None = None) -> paramiko.Channel:
        paramiko = _paramiko()
        try:
            chan = self.transport.open_session(window_size=WINDOW, max_packet_size=MAX_PACKET)
            for name, value in (env or {}).items():
                chan.set_environment_variable(name, value)
            if pty:
                term, cols, rows = pty
                chan.get_pty(term=term, width=cols, height=rows)
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
