"""The SSH server: box-key auth lives here; the work lives in the subsystem handlers."""
from __future__ import annotations

import asyncio
import logging

import asyncssh

from lager import protocol
from lager.errors import LagerError

from .runs import Caller, Supervisor
from .state import BoxKey, StateDir
from .subsystems import HANDLERS, Context, fail

log = logging.getLogger("lager-box.server")

# 256 KiB packets and AES-GCM: the measured way to full channel throughput (DESIGN.md).
MAX_PACKET = 256 * 1024
WINDOW = 8 * 1024 * 1024
REKEY_BYTES = 1 << 30
ENCRYPTION = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
              "aes128-ctr", "aes256-ctr")


class BoxSSHServer(asyncssh.SSHServer):
    """Public-key auth against the box keys; the user name is kept only for the audit record."""

    def __init__(self, state: StateDir) -> None:
        self.state = state
        self.user = ""
        self.box_key: BoxKey | None = None
        self.peer = "?"

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"

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
        fingerprint = key.get_fingerprint("sha256")
        for box_key in self.state.box_keys():
            if box_key.fingerprint == fingerprint:
                self.box_key = box_key
                return True
        log.warning("refused key %s for %r from %s", fingerprint, username, self.peer)
        return False

    def caller(self) -> Caller:
        key = self.box_key
        return Caller(self.user, key.comment if key else "", key.fingerprint if key else "")


class Agent:
    def __init__(self, state: StateDir, supervisor: Supervisor) -> None:
        self.state = state
        self.supervisor = supervisor
        self._server: asyncssh.SSHAcceptor | None = None

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncssh.create_server(
            lambda: BoxSSHServer(self.state), host, port,
            server_host_keys=[self.state.host_key()],
            process_factory=self._handle, encoding=None,
            allow_pty=True, line_editor=False, x11_forwarding=False, agent_forwarding=False,
            max_pktsize=MAX_PACKET, window=WINDOW, encryption_algs=list(ENCRYPTION),
            keepalive_interval=15, keepalive_count_max=4, login_timeout=30,
            # The box drives rekeying (clients leave it to us; see client/ssh.py).
            rekey_bytes=REKEY_BYTES, rekey_seconds=3600,
        )
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        conn = process.get_extra_info("connection")
        owner = conn.get_owner()
        assert isinstance(owner, BoxSSHServer)
        name = process.subsystem
        env = {k: v for k, v in process.env.items() if k in protocol.CHANNEL_ENV_WHITELIST}
        ctx = Context(process, self.supervisor, owner.caller(), env)
        handler = HANDLERS.get(name or "")
        if handler is None:
            what = f"subsystem {name!r}" if name else "a shell or command"
            fail(process, f"lager-box does not offer {what}; subsystems: "
                          + ", ".join(protocol.SUBSYSTEMS))
            return
        try:
            await handler(ctx)
        except LagerError as exc:
            fail(process, str(exc))
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            process.close()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subsystem %s failed", name)
            fail(process, f"internal error in subsystem {name}; see the box log")

    def close(self) -> None:
        if self._server:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._server:
            await self._server.wait_closed()
