"""The SSH server: box-key auth lives here; the work lives in the subsystem handlers."""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import traceback
from pathlib import Path
from typing import Any, cast

import asyncssh

from lager import protocol
from lager.errors import LagerError, Reserved

from . import fast_send, late_adjust
from .authkeys import CERT_TYPE_HOST, Login, SSHOpenSSHCertificate
from .preauth import Gate, Limits, Listener, Pending, Throttle, source_of
from .rekey_limit import RekeyLimit
from .reservations import Reservations
from .runs import Caller, Supervisor
from .state import StateDir
from .subsystems import HANDLERS, SUBSYSTEMS, Context, fail

log = logging.getLogger("lager-box.server")

ENCRYPTION = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
              "aes128-ctr", "aes256-ctr")
# What OpenSSH 8.8+ accepts by default: no ssh-dss, and no SHA-1 RSA signatures (`ssh-rsa`).
# RSA keys still log in, signing with rsa-sha2-256/512.
SIGNATURE_ALGS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                  "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256")
_LISTEN_BACKLOG = 512


class BoxSSHServer(asyncssh.SSHServer):
    """Public-key and certificate auth against the box keys (box_agent/authkeys.py); the user
    name is kept for the audit record (and is what a certificate must name, as in sshd)."""

    def __init__(self, agent: Agent, entry: Pending) -> None:
        self.agent = agent
        self.entry = entry
        self.user = ""
        self.peer = entry.peer
        self.login: Login | None = None
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.entry.attach(conn)
        fast_send.speed_up(conn)  # a run's output: fewer copies per packet (issue 13)
        late_adjust.tolerate(conn)  # paramiko's window adjust after its CLOSE, as sshd takes it
        peer = conn.get_extra_info("peername")
        addr = str(peer[0]) if peer else self.peer
        self.conn = conn
        self.login = Login(self.agent.state.box_keys, self.peer, addr,
                           self.agent.limits.max_auth_tries, self._refused)
        # asyncssh never shows the server a user certificate itself, only its CA: every offer
        # passes through the Login first, which tells expired from wrong-principal.
        setattr(conn, "validate_public_key",  # noqa: B010 - an instance attribute on purpose
                self.login.wrap(conn.validate_public_key))

    def _refused(self, kind: str, message: str) -> None:
        self.agent.throttle.event(logging.WARNING, kind, "%s", message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.agent.gate.done(self.entry)

    def begin_auth(self, username: str) -> bool:
        self.user = username
        # asyncssh asks its authorized-keys object about every key, and about every user
        # certificate's CA, and applies the options it returns (no-pty refuses the terminal).
        # Ours is the Login, which duck-types SSHAuthorizedKeys.validate. Set here, because
        # asyncssh reloads its options (and drops this) just before each begin_auth.
        assert self.conn is not None  # connection_made comes first
        self.conn.set_authorized_keys(cast(Any, self.login))
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # asked only when no authorized_keys line let the key in (already logged)

    def auth_completed(self) -> None:
        self.agent.gate.done(self.entry)
        match = self.login.match if self.login else None
        if match is None:
            log.info("auth for %r from %s succeeded", self.user, self.peer)
        elif match.cert_id is not None:
            log.info("auth for %r from %s succeeded with certificate %r of key %s (CA of "
                     "authorized_keys line %d)", self.user, self.peer, match.cert_id,
                     match.fingerprint, match.line.number)
        else:
            log.info("auth for %r from %s succeeded with key %s %s", self.user, self.peer,
                     match.fingerprint, match.comment)

    def caller(self) -> Caller:
        match = self.login.match if self.login else None
        if match is None:
            return Caller(self.user, "", "")
        if match.cert_id is not None:  # the key id and the principal the login was for
            return Caller(self.user, f"certificate {match.cert_id!r}", match.fingerprint,
                          f"cert:{match.cert_id}:{self.user}")
        return Caller(self.user, match.comment, match.fingerprint, f"key:{match.fingerprint}")


def host_keys(state: StateDir, host_cert: Path | None) -> \
        asyncssh.SSHKey | tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]:
    """The host key, with its certificate when `--host-cert` gave one: clients that trust
    the CA in an `@cert-authority` known_hosts line need no pin."""
    key = state.host_key()
    if host_cert is None:
        return key
    try:
        cert = asyncssh.read_certificate(str(host_cert))
    except (OSError, asyncssh.KeyImportError, ValueError) as exc:
        raise LagerError(f"--host-cert {host_cert}: {exc}") from None
    if not isinstance(cert, SSHOpenSSHCertificate):
        raise LagerError(f"--host-cert {host_cert} is not an OpenSSH certificate")
    if cert.key.public_data != key.public_data:
        raise LagerError(f"--host-cert {host_cert} certifies "
                         f"{cert.key.get_fingerprint('sha256')}, not this box's host key "
                         f"{key.get_fingerprint('sha256')} ({state.host_key_path}.pub"
                         " is what to sign)")
    try:
        cert.validate(CERT_TYPE_HOST, None)
    except ValueError as exc:
        raise LagerError(f"--host-cert {host_cert}: {exc}") from None
    return key, cert


def _bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address the host resolves to, as asyncio's create_server
    would bind (`localhost` is 127.0.0.1 and ::1)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in infos))
    socks: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and len(addresses) > 1:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_LISTEN_BACKLOG)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class Agent:
    def __init__(self, state: StateDir, supervisor: Supervisor,
                 limits: Limits | None = None, host_cert: Path | None = None,
                 reservations: Reservations | None = None,
                 rekey: RekeyLimit | None = None) -> None:
        self.state = state
        self.rekey = rekey or RekeyLimit()
        self.reservations = reservations or Reservations(state.root, supervisor, enabled=False)
        self.host_cert = host_cert
        self.supervisor = supervisor
        self.limits = limits or Limits()
        self.throttle = Throttle(log)
        self.gate = Gate(self.limits, self.throttle)
        self._listeners: list[Listener] = []
        self.listening: list[socket.socket] = []
        self._options: asyncssh.SSHServerConnectionOptions | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, host: str, port: int,
                     handed: list[socket.socket] | None = None) -> tuple[str, int]:
        """Listen on host:port, or on the sockets a replaced agent handed over."""
        self._options = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[host_keys(self.state, self.host_cert)],
            process_factory=self._handle, encoding=None,
            allow_pty=True, line_editor=False, x11_forwarding=False, agent_forwarding=False,
            max_pktsize=protocol.MAX_PACKET, window=protocol.WINDOW,
            encryption_algs=list(ENCRYPTION),
            signature_algs=list(SIGNATURE_ALGS),
            keepalive_interval=15, keepalive_count_max=4, login_timeout=self.limits.login_grace,
            # The box drives rekeying (clients leave it to us; see rekey_limit.py).
            rekey_bytes=self.rekey.bytes, rekey_seconds=self.rekey.seconds,
            # No GSSAPI (public keys only). Left to its default, asyncssh names the GSS host
            # with socket.getfqdn() each time it makes a connection's options: at the accept
            # and again at the first auth request, in an executor thread the connection waits
            # for. That is a reverse lookup through the resolver: 3.5-4 ms twice on every
            # connection here, and as long as DNS takes on a lab network whose DNS is slow.
            gss_host=None, gss_kex=False, gss_auth=False,
        )
        socks = handed or _bind(host, port)
        self.listening = socks
        self._listeners = [Listener(sock, self._accepted,
                                    lambda: self.gate.drop_one("near the open-file limit"),
                                    self.throttle) for sock in socks]
        bound = socks[0].getsockname()
        return bound[0], bound[1]

    def _accepted(self, sock: socket.socket, address: object) -> None:
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        entry = self.gate.admit(source_of(address), peer)
        sock.setblocking(False)
        task = asyncio.ensure_future(self._serve(sock, entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, sock: socket.socket, entry: Pending) -> None:
        """Run one connection's handshake and login; after that asyncssh drives it."""
        assert self._options is not None
        try:
            await asyncssh.run_server(sock, options=self._options,
                                      server_factory=lambda: BoxSSHServer(self, entry))
        except (asyncssh.Error, OSError, TimeoutError):
            pass  # dropped, timed out, failed auth or went away: counted, never a traceback
        except Exception as exc:  # noqa: BLE001 - a bug in asyncssh or here: one line, the peer goes
            log.error("connection from %s failed: %s: %s", entry.peer, type(exc).__name__, exc)
            entry.drop("internal error")
        finally:
            self.gate.done(entry)
            if entry.conn is None:
                sock.close()  # asyncssh never took the socket over

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Every channel ends here with an exit status and a one-line reason, or a clean close:
        an exception escaping to asyncssh would drop the whole connection."""
        name = process.subsystem
        try:
            conn = process.get_extra_info("connection")
            owner = conn.get_owner()
            assert isinstance(owner, BoxSSHServer)
            env = _channel_env(process)
            ctx = Context(process, self.supervisor, owner.caller(), env, self.reservations)
            log.debug("%s request by %s", _one_line(name or "shell")[:40], ctx.caller.describe())
            handler = HANDLERS.get(name or "")
            if handler is None:
                what = f"subsystem {name!r}" if name else "a shell or command"
                raise LagerError(f"lager-box does not offer {what[:200]}; subsystems: "
                                 + ", ".join(SUBSYSTEMS))
            await handler(ctx)
        except Reserved as exc:
            self.throttle.event(logging.INFO, "refused requests", "refused %r request: %s",
                                (name or "shell")[:40], _one_line(str(exc))[:300])
            if name != protocol.SUB_RUN and not process.is_closing():
                # The structured reason, for programs (the fleet); a run's stdout is the
                # script's, so there the exit status and the line say it.
                process.stdout.write((json.dumps(exc.details) + "\n").encode())
            fail(process, str(exc), protocol.EXIT_RESERVED)
        except LagerError as exc:
            self.throttle.event(logging.INFO, "refused requests", "refused %r request: %s",
                                (name or "shell")[:40], _one_line(str(exc))[:300])
            fail(process, str(exc))
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            process.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("subsystem %r failed: %s: %s (at %s:%s)", name, type(exc).__name__,
                      _one_line(str(exc))[:300],
                      where.filename.rsplit("/", 1)[-1], where.lineno,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            fail(process, f"internal error in subsystem {name}; see the box log")

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        self.gate.drop_all("the box is shutting down")

    async def wait_closed(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


def _one_line(text: str) -> str:
    """What a peer sent can reach a log line; it must not be able to start a new one."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _channel_env(process: asyncssh.SSHServerProcess[bytes]) -> dict[str, str]:
    """The whitelisted channel env. asyncssh silently drops values that are not UTF-8; for the
    run id that would fall back to reading stdin, so it is refused instead."""
    raw = process.channel.get_environment_bytes()
    env = {}
    for name in protocol.CHANNEL_ENV_WHITELIST:
        value = raw.get(name.encode())
        if value is None:
            continue
        try:
            env[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            if name == protocol.ENV_BREAKPOINT_ID:
                raise LagerError(f"{name} is not UTF-8 text; set it to the run id from the "
                                 "banner") from None
    return env
