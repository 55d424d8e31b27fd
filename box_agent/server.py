"""The SSH server: box-key auth lives here; the work lives in the subsystem handlers."""
from __future__ import annotations

import asyncio
import logging
import socket
import traceback

import asyncssh

from lager import protocol
from lager.errors import LagerError

from .preauth import Gate, Limits, Listener, Pending, Throttle, source_of
from .runs import Caller, Supervisor
from .state import REFUSED_KEY_TYPES, BoxKey, StateDir
from .subsystems import HANDLERS, SUBSYSTEMS, Context, fail

log = logging.getLogger("lager-box.server")

# 256 KiB packets and AES-GCM: the measured way to full channel throughput (DESIGN.md). A bit
# under 256 KiB, because asyncssh checks what a client sends on a session against a fixed 256 KiB
# limit that counts the packet's header and padding too: a client that filled a full 256 KiB
# packet (asyncssh and OpenSSH clients do) had its whole connection dropped.
MAX_PACKET = 256 * 1024 - 1024
WINDOW = 8 * 1024 * 1024
REKEY_BYTES = 1 << 30
ENCRYPTION = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
              "aes128-ctr", "aes256-ctr")
# What OpenSSH 8.8+ accepts by default: no ssh-dss, and no SHA-1 RSA signatures (`ssh-rsa`).
# RSA keys still log in, signing with rsa-sha2-256/512.
SIGNATURE_ALGS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                  "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256")
_RSA_SHA2 = frozenset({b"rsa-sha2-256", b"rsa-sha2-512"})
_LISTEN_BACKLOG = 512


class BoxSSHServer(asyncssh.SSHServer):
    """Public-key auth against the box keys; the user name is kept only for the audit record."""

    def __init__(self, agent: Agent, entry: Pending) -> None:
        self.agent = agent
        self.entry = entry
        self.user = ""
        self.box_key: BoxKey | None = None
        self.peer = entry.peer
        self.failures = 0
        self._accepted_tries: dict[str, int] = {}

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.entry.attach(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.agent.gate.done(self.entry)

    def begin_auth(self, username: str) -> bool:
        self.user = username
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        limit = self.agent.limits.max_auth_tries
        if self.failures >= limit:  # as sshd: the attempt after the last allowed failure ends it
            self.agent.throttle.event(
                logging.WARNING, "connections over MaxAuthTries",
                "too many authentication failures for %r from %s (%d); disconnected",
                username, self.peer, self.failures)
            raise asyncssh.PermissionDenied("Too many authentication failures")
        fingerprint = key.get_fingerprint("sha256")
        if key.get_algorithm() in REFUSED_KEY_TYPES:
            self.failures += 1
            self.agent.throttle.event(logging.WARNING, "refused keys",
                                      "refused %s key %s for %r from %s: %s keys are not accepted",
                                      key.get_algorithm(), fingerprint, username, self.peer,
                                      key.get_algorithm())
            return False
        for box_key in self.agent.state.box_keys():
            if box_key.fingerprint == fingerprint:
                # A query and then the signed request: two calls per login. More than that are
                # failed signatures, which count against MaxAuthTries like refused keys do.
                tries = self._accepted_tries.get(fingerprint, 0) + 1
                self._accepted_tries[fingerprint] = tries
                if tries > 2:
                    self.failures += 1
                if key.get_algorithm() == "ssh-rsa":
                    # The instance's own set wins over the class's: only SHA-2 signatures verify.
                    key.all_sig_algorithms = set(_RSA_SHA2)  # type: ignore[misc]
                self.box_key = box_key
                return True
        self.failures += 1
        self.agent.throttle.event(logging.WARNING, "refused keys", "refused key %s for %r from %s",
                                  fingerprint, username, self.peer)
        return False

    def auth_completed(self) -> None:
        self.agent.gate.done(self.entry)
        key = self.box_key
        log.info("auth for %r from %s succeeded with key %s %s", self.user, self.peer,
                 key.fingerprint if key else "?", key.comment if key else "")

    def caller(self) -> Caller:
        key = self.box_key
        return Caller(self.user, key.comment if key else "", key.fingerprint if key else "")


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
                 limits: Limits | None = None) -> None:
        self.state = state
        self.supervisor = supervisor
        self.limits = limits or Limits()
        self.throttle = Throttle(log)
        self.gate = Gate(self.limits, self.throttle)
        self._listeners: list[Listener] = []
        self._options: asyncssh.SSHServerConnectionOptions | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        self._options = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[self.state.host_key()],
            process_factory=self._handle, encoding=None,
            allow_pty=True, line_editor=False, x11_forwarding=False, agent_forwarding=False,
            max_pktsize=MAX_PACKET, window=WINDOW, encryption_algs=list(ENCRYPTION),
            signature_algs=list(SIGNATURE_ALGS),
            keepalive_interval=15, keepalive_count_max=4, login_timeout=self.limits.login_grace,
            # The box drives rekeying (clients leave it to us; see client/ssh.py).
            rekey_bytes=REKEY_BYTES, rekey_seconds=3600,
        )
        socks = _bind(host, port)
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
            ctx = Context(process, self.supervisor, owner.caller(), env)
            handler = HANDLERS.get(name or "")
            if handler is None:
                what = f"subsystem {name!r}" if name else "a shell or command"
                raise LagerError(f"lager-box does not offer {what[:200]}; subsystems: "
                                 + ", ".join(SUBSYSTEMS))
            await handler(ctx)
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
