"""A per-box connection keeper for short requests, like OpenSSH's ControlMaster/ControlPersist.

`lager python --continue` is mostly Python start-up plus importing paramiko and its crypto
(~0.1 s) plus a key exchange. The first short request to a box (continue, list, kill,
instrument commands) goes direct and leaves this process behind: it holds one authenticated
paramiko transport and answers later requests over a Unix socket in the config dir, so they
import no paramiko and do no handshake. It exits after IDLE_SECONDS without requests, or when
its connection drops. LAGER_MUX=0 turns it off.

Security: the socket lives in a 0700 directory of the user's config dir and the keeper also
checks the peer's uid (SO_PEERCRED). Its name hashes the box address, identity and pinned host
key, so re-pinning a box (or changing its key) never reuses a keeper made for the old one.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .config import Box, Config

IDLE_SECONDS = 300.0
MAX_REQUEST = 1024 * 1024
CONNECT_TIMEOUT = 2.0


def socket_path(config: Config, box: Box) -> Path:
    pinned = config.pinned_line(box) or ""
    ident = f"{box.host}|{box.port}|{box.user}|{config.identity_path(box)}|{pinned}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return config.root / "mux" / f"{digest}.sock"


def enabled() -> bool:
    return os.environ.get("LAGER_MUX", "1") != "0"


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def request(path: Path, subsystem: str, line: str | None,
            env: dict[str, str] | None) -> tuple[str, str, int] | None:
    """Ask the keeper; None when there is none (or it is gone), so the caller goes direct."""
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(str(path))
        sock.settimeout(None)  # a request may wait on an instrument as long as it takes
        sock.sendall(json.dumps({"subsystem": subsystem, "line": line, "env": env}).encode()
                     + b"\n")
        sock.shutdown(socket.SHUT_WR)
        reply = json.loads(_recv_all(sock) or b"null")
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
    if not isinstance(reply, dict) or "status" not in reply:
        return None
    return reply["out"], reply["err"], int(reply["status"])


def spawn(config: Config, box: Box) -> None:
    """Leave a keeper behind for the next request (never fails the current command)."""
    import subprocess

    try:
        subprocess.Popen([sys.executable, "-m", "client.mux", box.name],
                         env={**os.environ, "LAGER_CONFIG_DIR": str(config.root)},
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError:
        pass


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


class Keeper:
    def __init__(self, config: Config, box: Box) -> None:
        from .ssh import BoxConnection

        self.conn = BoxConnection(config, box)
        self.path = socket_path(config, box)
        self.last_used = time.monotonic()
        self.active = 0
        self.lock = threading.Lock()

    def _serve_one(self, client: socket.socket) -> None:
        from .context import exchange

        with client:
            creds = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                      struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                return
            raw = b""
            while len(raw) <= MAX_REQUEST and (chunk := client.recv(65536)):
                raw += chunk
            try:
                req: dict[str, Any] = json.loads(raw)
                out, err, status = exchange(self.conn, req["subsystem"], req.get("line"),
                                            req.get("env"))
                reply = {"out": out, "err": err, "status": status}
            except Exception as exc:  # noqa: BLE001 - the client falls back to going direct
                reply = {"error": str(exc)}
            client.sendall(json.dumps(reply).encode())

    def _handle(self, client: socket.socket) -> None:
        with self.lock:
            self.active += 1
        try:
            self._serve_one(client)
        finally:
            with self.lock:
                self.active -= 1
                self.last_used = time.monotonic()

    def serve(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        if _answers(self.path):
            self.conn.close()  # another keeper won the race
            return
        tmp = self.path.with_suffix(f".{os.getpid()}")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp))
        os.chmod(tmp, 0o600)
        server.listen(16)
        server.settimeout(5.0)
        os.replace(tmp, self.path)  # atomic: a request never sees a half-made socket
        inode = os.stat(self.path).st_ino
        try:
            while self.conn.transport.is_active():
                with self.lock:
                    idle = self.active == 0 and \
                        time.monotonic() - self.last_used > IDLE_SECONDS
                if idle:
                    break
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._handle, args=(client,), daemon=True).start()
        finally:
            server.close()
            try:
                if os.stat(self.path).st_ino == inode:  # not a newer keeper's socket
                    self.path.unlink()
            except OSError:
                pass
            self.conn.close()


def main() -> None:
    from lager.errors import LagerError

    config = Config()
    try:
        box = config.box(sys.argv[1])
        keeper = Keeper(config, box)
    except LagerError:
        sys.exit(1)
    keeper.serve()


if __name__ == "__main__":
    main()
