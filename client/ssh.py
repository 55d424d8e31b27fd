"""Connections to a box: paramiko over a socket we create (TCP_NODELAY), through any ProxyJump
hops (direct-tcpip channels) or a ProxyCommand, every host key checked on the way.

paramiko is imported here only, and only by commands that talk to a box, so `lager --help`
and usage errors never pay for it. Every failure is one line naming the host it happened at
(`box NAME (host:port)` or `jump host NAME (host:port)`), exit 255.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lager import protocol
from lager.errors import AuthFailed, ConnectionFailed

from . import chan_buffer, fast_recv, known_hosts, paramiko_package, preconnect
from .config import (
    DEFAULT_CONNECT_TIMEOUT,
    ENV_CONNECT_TIMEOUT,
    Box,
    Config,
    connect_timeout,
)
from .known_hosts import HostKeyPolicy, fingerprint
from .proxyjump import ProxyProcess, forward, keepalive

if TYPE_CHECKING:
    import paramiko

    from .identities import Offer

# Throughput depends on packet size and cipher (DESIGN.md): 256 KiB packets, AES-GCM first.
MAX_PACKET = protocol.MAX_PACKET  # one figure for both ends
WINDOW = protocol.CLIENT_WINDOW  # what we take in; the box's own window is protocol.WINDOW
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
# Boxes (and sshd) cut a connection off after six refused keys; offering more only gets it cut.
MAX_AUTH_TRIES = 6
_CERT = "-cert-v01@openssh.com"

_debug = False


def set_debug(flag: bool) -> None:
    """With --debug, paramiko's own log (tracebacks included) reaches stderr again."""
    global _debug
    _debug = flag


def _paramiko() -> Any:
    """The paramiko package, with paramiko.transport (and every submodule it imports) loaded.

    Without its __init__ run where that can be done (client/paramiko_package.py): lager's
    own code asks the submodules (paramiko.transport, paramiko.ssh_exception...), and the
    package completes itself the first time anything asks it for more."""
    # paramiko.config imports invoke (about 0.15 s) only for `Match exec`, which lager never
    # uses; paramiko treats its absence as optional.
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    if "paramiko" not in sys.modules:
        with _IMPORTING:  # the fleet's box threads connect at once
            if "paramiko" not in sys.modules and paramiko_package.install() is None:
                _import_whole_paramiko()
    import paramiko
    import paramiko.transport

    # paramiko.config keeps the ImportError of that import for `Match exec`; its traceback
    # would hold every frame of whoever first connected (a download's open channel file
    # among them) until the interpreter's teardown, whose order then decides whether that
    # file's __del__ still finds its module (it did not, with the package module of
    # client/paramiko_package.py). The error without the traceback says the same.
    error = getattr(sys.modules.get("paramiko.config"), "invoke_import_error", None)
    if isinstance(error, BaseException):
        error.__traceback__ = None

    if not _debug:
        # paramiko logs every failed handshake with a traceback from its own thread, and with
        # no handler configured Python prints that to stderr before lager's one line.
        logger = logging.getLogger("paramiko")
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return paramiko


_IMPORTING = threading.Lock()


def _import_whole_paramiko() -> None:
    """`import paramiko` the usual way, its __init__ and all, but without importlib.metadata
    when its version can be read beside it (paramiko_package.metadata_answering)."""
    import importlib.util

    version = paramiko_package.dist_info_version(importlib.util.find_spec("paramiko"))
    with contextlib.nullcontext() if version is None else \
            paramiko_package.metadata_answering(version):
        import paramiko  # noqa: F401


class Deadline:
    """One budget for TCP connect, key exchange and auth, as OpenSSH's ConnectTimeout."""

    def __init__(self, box: Box) -> None:
        self.seconds = connect_timeout(box)
        self.at = time.monotonic() + self.seconds

    def left(self) -> float:
        return max(0.01, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def extend(self, seconds: float) -> None:
        """Time spent on our side (a passphrase being typed) is not the box's delay."""
        self.at += seconds

    def too_slow(self, box: Box, stage: str) -> ConnectionFailed:
        return ConnectionFailed(
            f"{box.label} {stage} within {self.seconds:g}s "
            f"(raise it with {ENV_CONNECT_TIMEOUT} or `lager boxes add --connect-timeout`)")


def _open_socket(box: Box, deadline: Deadline) -> socket.socket:
    try:
        # The connection a run began while it imported (client/preconnect.py), else a new one.
        sock = preconnect.take(box.host, box.port, deadline.left()) or socket.create_connection(
            (preconnect.address(box.host), box.port), timeout=deadline.left())  # type: ignore[arg-type]
    except socket.gaierror as exc:
        raise ConnectionFailed(f"{box.label}: cannot resolve host {box.host!r} "
                               f"({exc.strerror})") from None
    except ConnectionRefusedError:
        hint = "is `lager-box serve` running there?" if not box.hop else "is sshd running there?"
        raise ConnectionFailed(f"{box.label} refused the connection: {hint}") from None
    except TimeoutError:
        raise deadline.too_slow(box, "did not accept the connection") from None
    except OSError as exc:
        raise ConnectionFailed(f"{box.label}: {exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@functools.cache
def _transport_class() -> Any:
    paramiko = _paramiko()

    class AuthHandler(paramiko.auth_handler.AuthOnlyHandler):  # type: ignore[misc, name-defined]
        """paramiko's AuthOnlyHandler makes the event its answer sets only after sending the
        request: an answer that comes back first (a busy machine, a fast box) sets the old
        event, and the login then waits out its whole timeout although the box said yes."""

        def send_auth_request(self, username: str, method: str,
                              finish_message: Callable[[Any], None] | None = None) -> Any:
            self.auth_method = method
            self.username = username
            m = paramiko.message.Message()
            m.add_byte(paramiko.common.cMSG_USERAUTH_REQUEST)
            m.add_string(username)
            m.add_string("ssh-connection")
            m.add_string(method)
            if finish_message is not None:
                finish_message(m)
            self.auth_event = event = threading.Event()
            with self.transport.lock:
                self.transport._send_message(m)
            return self.wait_for_response(event)

    class LagerTransport(paramiko.transport.ServiceRequestingTransport):  # type: ignore[misc, name-defined]
        """paramiko's transport that asks for the ssh-userauth service once, not before every
        key: asyncssh (the box) drops a connection that asks twice, so a second key offered
        never got its turn.

        It asks for a host certificate first when a known_hosts CA line could vouch for the
        host (paramiko always lists plain keys first, so a box with both never shows its
        certificate)."""

        certs_first = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._service_accepted = threading.Event()
            super().__init__(*args, **kwargs)
            # Received data kept as packets, not copied into one array (client/chan_buffer.py).
            self._channels = chan_buffer.channel_map(paramiko)
            fast_recv.install(self)  # AES-GCM packets read without paramiko's copies

        def _parse_service_accept(self, m: Any) -> None:
            super()._parse_service_accept(m)
            self._service_accepted.set()

        def ensure_session(self) -> None:
            """paramiko asks for ssh-userauth, then polls for the answer in 0.1 s sleeps: every
            full connection waited up to 100 ms for an answer that took a round trip (issue
            13). The same request, woken by the answer itself."""
            if self.active and self.initial_kex_done and not self._service_userauth_accepted:
                m = paramiko.message.Message()
                m.add_byte(paramiko.common.cMSG_SERVICE_REQUEST)
                m.add_string("ssh-userauth")
                self._send_message(m)
                while not self._service_accepted.wait(0.1) and self.active:
                    pass
                if self._service_userauth_accepted:
                    self.auth_handler = self.get_auth_handler()
                    return
            super().ensure_session()  # says what is wrong (a transport that is gone)

        def get_auth_handler(self) -> Any:
            return AuthHandler(self)

        @property
        def preferred_keys(self) -> tuple[str, ...]:
            keys = tuple(super().preferred_keys)
            if not self.certs_first:
                return keys
            return tuple(k for k in keys if k.endswith(_CERT)) + \
                tuple(k for k in keys if not k.endswith(_CERT))

    return LagerTransport


def start_transport(box: Box, deadline: Deadline | None = None, sock: Any = None,
                    certs_first: bool = False,
                    proxy: ProxyProcess | None = None) -> paramiko.Transport:
    """TCP (or the given channel or socket) plus key exchange, before any host key check or
    auth, within the deadline."""
    deadline = deadline or Deadline(box)
    sock = sock if sock is not None else _open_socket(box, deadline)
    transport = _transport_class()(sock)
    preconnect.adopt(transport, sock)  # our version line may be out already
    transport.certs_first = certs_first
    transport.get_security_options().ciphers = CIPHERS
    transport.default_max_packet_size = MAX_PACKET
    transport.default_window_size = WINDOW
    # paramiko racing its own rekey against a busy session channel fails with "Key-exchange
    # timed out" (paramiko issue #822; seen here at ~1 GB of script output). The box rekeys
    # at its --rekey-limit (box_agent/rekey_limit.py), so the client leaves it to the box.
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
    if proxy is not None and proxy.last_words():
        reason = f"ProxyCommand said: {proxy.last_words()}"
    elif not reason or "protocol banner" in reason:
        reason = "the box closed the connection before the SSH greeting (is it busy, or not " \
                 "a lager box?)" if not box.hop else "it closed the connection before the SSH " \
                 "greeting"
    raise ConnectionFailed(f"{box.label}: SSH handshake failed: {reason}")


def authenticate(config: Config, box: Box, transport: paramiko.Transport,
                 deadline: Deadline | None = None) -> Offer:
    """The configured key, then the agent's, at most MAX_AUTH_TRIES; the one that worked."""
    from .identities import Identities

    paramiko = _paramiko()
    deadline = deadline or Deadline(box)
    ids = Identities(config, box, deadline.extend)
    refused: list[Offer] = []
    try:
        for offer in ids.offers():
            if len(refused) >= MAX_AUTH_TRIES or not transport.is_active():
                break
            transport.auth_timeout = deadline.left()
            try:
                transport.auth_publickey(box.user, offer.key)
                return offer
            except paramiko.ssh_exception.BadAuthenticationType as exc:
                transport.close()
                raise AuthFailed(f"{box.label} takes no public keys (it offers "
                                 f"{', '.join(exc.allowed_types) or 'nothing'})") from None
            except paramiko.ssh_exception.AuthenticationException:
                if deadline.expired():
                    transport.close()
                    raise deadline.too_slow(box, "did not answer the key authentication") \
                        from None
                refused.append(offer)
            except (paramiko.ssh_exception.SSHException, OSError, EOFError) as exc:
                if refused and not transport.is_active():
                    break  # cut off after too many refused keys
                transport.close()
                raise ConnectionFailed(f"{box.label}: authentication failed: {exc}") from None
    finally:
        ids.close()
    transport.close()
    raise _refusal(config, box, refused, ids)


def _refusal(config: Config, box: Box, refused: list[Offer], ids: Any) -> AuthFailed:
    locked = "; ".join(f"{p} needs its passphrase and there is no terminal to ask for it "
                       f"(`ssh-add {p}` puts it in ssh-agent)" for p in ids.locked)
    if not refused:
        if locked:
            return AuthFailed(f"{box.label}: no key to offer: {locked}")
        if not box.hop and not box.ssh and config.default_key_path in ids.missing:
            return AuthFailed(f"no client key at {config.default_key_path}: run `lager boxes "
                              f"add {box.name} --host {box.host}` to create one")
        missing = ", ".join(str(p) for p in ids.missing)
        return AuthFailed(f"{box.label}: no key to offer" +
                          (f": {missing} does not exist" if missing else "") +
                          ", and ssh-agent holds none (give an IdentityFile in ssh_config, or "
                          "`lager boxes add` creates lager's own key)")
    first = refused[0]
    more = f" and {len(refused) - 1} more ({', '.join(o.what for o in refused[1:])})" \
        if len(refused) > 1 else ""
    fix = f"on the box run: lager-box authorize '{first.public_line}'" if not box.hop else \
        "add one of them to that host's authorized_keys"
    text = f"{box.label} refused key {first.what} ({fingerprint(first.key.asbytes())}){more}; " \
           f"{fix}"
    return AuthFailed(text + (f"; not offered: {locked}" if locked else ""))


def load_identity(config: Config, box: Box) -> paramiko.PKey:
    """The key this client presents first (its public half is enough to name it)."""
    from .identities import Identities, load_key, public_blob

    paramiko = _paramiko()
    ids = Identities(config, box)
    try:
        for path, explicit in ids.files():
            key = load_key(path, box, explicit)
            if key is not None:
                return key
            blob = public_blob(path) if path.exists() else None
            if blob is not None:
                return paramiko.pkey.PKey.from_type_string(known_hosts.sshcert.key_type_of(blob),
                                                      blob)
        if ids.agent_keys:
            return ids.agent_keys[0]
    finally:
        ids.close()
    raise AuthFailed(f"no client key at {config.identity_path(box)}: run `lager boxes add "
                     f"{box.name} --host {box.host}` to create one")


class BoxConnection:
    """An authenticated transport to one box, through its jump hosts; channels on demand."""

    def __init__(self, config: Config, box: Box, policy: HostKeyPolicy | None = None,
                 login: bool = True) -> None:
        self.config = config
        self.box = box
        self.policy = policy or HostKeyPolicy(config, box)
        self.transports: list[paramiko.Transport] = []
        self.proxy: ProxyProcess | None = None
        self.offer: Offer | None = None
        self.pty_refused = False
        try:
            self._reach(login)
        except BaseException:
            self.close()
            raise
        self.transport = self.transports[-1]

    def _reach(self, login: bool) -> None:
        path = [*self.box.jumps, self.box]
        sock: Any = None
        for i, node in enumerate(path):
            deadline = Deadline(node)
            if i == 0 and node.proxy_command:
                self.proxy = ProxyProcess(node)
                sock = self.proxy.sock
            elif i > 0:
                sock = forward(path[i - 1], self.transports[-1], node, deadline)
            transport = start_transport(node, deadline, sock, self.policy.wants_cert(node),
                                        self.proxy if i == 0 else None)
            self.transports.append(transport)
            self.policy.check(node, transport)
            if node is self.box:
                self.deadline = deadline
                if login:
                    self.login()
            else:
                authenticate(self.config, node, transport, deadline)
                keepalive(node, transport)

    def login(self) -> None:
        self.offer = authenticate(self.config, self.box, self.transports[-1], self.deadline)
        keepalive(self.box, self.transports[-1])

    def open(self, subsystem: str, env: dict[str, str] | None = None,
             pty: tuple[str, int, int] | None = None,
             on_invoke: Callable[[], None] | None = None) -> paramiko.Channel:
        """A channel to `subsystem`. on_invoke runs just before the box is asked for it: from
        then on the box may act, so a failure can no longer be taken as "never sent".

        A key with `no-pty` (or `restrict`) gets its terminal refused, and paramiko closes the
        channel on any refused request: then the channel is opened again without one, and
        `pty_refused` says so (as ssh's "PTY allocation request failed")."""
        paramiko = _paramiko()
        try:
            chan = self._session(env)
            if pty:
                term, cols, rows = pty
                try:
                    chan.get_pty(term=term, width=cols, height=rows)
                except paramiko.ssh_exception.SSHException:
                    if not self.transport.is_active():
                        raise
                    self.pty_refused = True
                    chan = self._session(env)
            if on_invoke is not None:
                on_invoke()
            chan.invoke_subsystem(subsystem)
        except (paramiko.ssh_exception.SSHException, OSError, EOFError) as exc:
            raise ConnectionFailed(f"box {self.box.name}: cannot open {subsystem!r}: "
                                   f"{exc}") from None
        return chan

    def _session(self, env: dict[str, str] | None) -> paramiko.Channel:
        # The box may be busy but should grant a channel about as fast as it did the login.
        chan = self.transport.open_session(window_size=WINDOW, max_packet_size=MAX_PACKET,
                                           timeout=max(self.deadline.seconds,
                                                       DEFAULT_CONNECT_TIMEOUT))
        for name, value in (env or {}).items():
            chan.set_environment_variable(name, value)
        return chan

    def close(self) -> None:
        for transport in reversed(self.transports):
            transport.close()
        if self.proxy is not None:
            self.proxy.close()

    def __enter__(self) -> BoxConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

