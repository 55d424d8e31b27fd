"""Going on with a run after the connection to its box was lost (issue 11).

The box keeps the run and its output (on disk, byte offsets per stream); a new connection asks
`attach` for what comes after the bytes already shown. A run this client started is found
again by the `client_ref` tag it sent in the run request, since its id was never shown.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from lager import protocol
from lager.errors import ConnectionFailed, LagerError

from .chan_io import read_to_end

if TYPE_CHECKING:
    from .context import LagerContext
    from .ssh import BoxConnection


# An attach channel's env that asks for the framed form with events (its first line keeps the
# form OpenSSH users type).
EVENTS_ENV = {protocol.ENV_PROTOCOL: str(protocol.PROTOCOL_VERSION)}


def new_client_ref() -> str:
    # secrets.token_hex is os.urandom too; importing secrets (hmac, hashlib, random) cost
    # ~3 ms of a run's start (issue 13).
    return os.urandom(8).hex()


class Reattacher:
    """Callable for Follower(reconnect=...): a fresh connection and an `attach` channel."""

    def __init__(self, obj: LagerContext, run_id: str | None = None,
                 client_ref: str | None = None) -> None:
        self.obj = obj
        self.run_id = run_id
        self.client_ref = client_ref
        self.conn: BoxConnection | None = None

    def __call__(self, stdout_bytes: int, stderr_bytes: int) -> Any:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        try:
            conn = self.obj.connect()
        except Exception as exc:  # noqa: BLE001 - any failure to reach the box is a retry
            raise ConnectionFailed(str(exc) or type(exc).__name__) from None
        try:
            run_id = self.run_id or self._find(conn)
            chan = conn.open(protocol.SUB_ATTACH, env=EVENTS_ENV)
            chan.sendall(f"{run_id} {stdout_bytes} {stderr_bytes}\n".encode())
        except Exception as exc:  # a box that is still going away: a retry
            conn.close()
            if isinstance(exc, ConnectionFailed):
                raise
            raise ConnectionFailed(str(exc) or type(exc).__name__) from None
        self.conn = conn
        return chan

    def run_id_now(self) -> str:
        """The run's id (looked up by client_ref on a fresh connection if not known yet)."""
        if self.run_id:
            return self.run_id
        try:
            conn = self.obj.connect()
        except LagerError as exc:
            raise ConnectionFailed(str(exc)) from None
        try:
            return self._find(conn)
        finally:
            conn.close()

    def _find(self, conn: BoxConnection) -> str:
        chan = conn.open(protocol.SUB_LIST)
        chan.shutdown_write()
        data = read_to_end(chan.recv)
        for row in json.loads(data or b"[]"):
            if self.client_ref and row.get("client_ref") == self.client_ref:
                self.run_id = str(row["id"])
                return self.run_id
        raise ConnectionFailed("the run is not on the box any more")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
