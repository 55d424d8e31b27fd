"""`lager-box serve --replace`: a new agent takes the listening socket from the running one.

As nginx and HAProxy reload: the running agent hands its listening sockets over a root-only
Unix socket in the state dir (SCM_RIGHTS), then lets its runs go and exits. Connections that
arrive meanwhile wait in the kernel's backlog of the very same socket, so none is refused; the
clients the old agent was serving reconnect and go on at the byte where they stopped (runs
and their output live with their monitors, not in either agent).
"""
from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from lager.errors import LagerError

from . import sdnotify

log = logging.getLogger("lager-box.handover")

SOCKET_NAME = "agent.sock"
_REQUEST = b"handover\n"
_TIMEOUT = 10.0
_MAX_FDS = 16


def _path(state_root: Path, dirfd: int) -> str:
    # Through /proc: a socket path must fit in 108 bytes, and the state dir's may not.
    return f"/proc/self/fd/{dirfd}/{SOCKET_NAME}"


class HandoverPoint:
    """The running agent's end: give the listening sockets to whoever asks (root only)."""

    def __init__(self, state_root: Path, listening: Sequence[socket.socket],
                 on_handed: Callable[[], None],
                 before_handing: Callable[[], None] = lambda: None) -> None:
        self.listening = listening
        self.on_handed = on_handed
        # Runs in step with the hand-over, before the new agent can adopt anything (it does so
        # once it has the sockets): what the runs' next agent must know is written by then.
        self.before_handing = before_handing
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dirfd = os.open(state_root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(SOCKET_NAME, dir_fd=dirfd)
            self.sock.bind(_path(state_root, dirfd))
            os.chmod(SOCKET_NAME, 0o600, dir_fd=dirfd)
        finally:
            os.close(dirfd)
        self.sock.listen(1)
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(_TIMEOUT)
            try:
                if conn.recv(len(_REQUEST)) != _REQUEST:
                    return
                self.before_handing()
                fds = array.array("i", [s.fileno() for s in self.listening])
                conn.sendmsg([b"ok\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                sdnotify.main_pid_moves_to(conn)  # under systemd, the new agent is the unit now
            except OSError as exc:
                log.warning("a replacing agent asked for the listening socket and failed: %s",
                            exc)
                return
        log.warning("handed the listening socket to a new agent (--replace); going")
        self.close()
        self.on_handed()

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def take_over(state_root: Path) -> list[socket.socket] | None:
    """The new agent's end: the running agent's listening sockets, or None when no agent
    runs on this state dir (then the new one simply binds)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_TIMEOUT)
    dirfd = os.open(state_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            sock.connect(_path(state_root, dirfd))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        sock.sendall(_REQUEST)
        data, ancdata, _, _ = sock.recvmsg(16, socket.CMSG_SPACE(4 * _MAX_FDS))
    except OSError as exc:
        raise LagerError(f"--replace: the running agent did not hand over: {exc}") from None
    finally:
        os.close(dirfd)
        sock.close()
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", payload[: len(payload) - len(payload) % 4]))
    if data != b"ok\n" or not fds:
        for fd in fds:
            os.close(fd)
        raise LagerError("--replace: the running agent answered, but gave no socket")
    return [socket.socket(fileno=fd) for fd in fds]
