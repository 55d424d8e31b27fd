"""A TCP peer on 127.0.0.1 for the tests that need the other side of a socket to misbehave (a
box that never answers or hangs up, an instrument that stays silent or answers junk)."""
from __future__ import annotations

import socket
import threading


class TcpPeer:
    """Listens on a free port and accepts in a thread of its own. Each connection goes to
    `connected`, which by default keeps it open and unanswered in `kept`; close() ends the
    listener and every connection kept. Subclasses set their own attributes before calling
    this __init__, since connections may arrive as soon as it returns."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.kept: list[socket.socket] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed: the peer is done
                return
            self.connections += 1
            self.connected(conn)

    def connected(self, conn: socket.socket) -> None:
        self.kept.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.kept:
            conn.close()
