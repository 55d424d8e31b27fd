"""The script's end of its private channel to the agent (an inherited SOCK_SEQPACKET fd).

Each message is one datagram; a console request carries the console's socket as SCM_RIGHTS.
"""
from __future__ import annotations

import os
import socket
import threading
from typing import Any

from .. import protocol

_link: AgentLink | None = None
_link_lock = threading.Lock()


class Message:
    __slots__ = ("body", "fds")

    def __init__(self, body: dict[str, Any], fds: list[int]) -> None:
        self.body = body
        self.fds = fds


class AgentLink:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid = os.getpid()

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.send(protocol.encode_msg(msg))

    def receive(self) -> Message | None:
        """Block for the next message; None when the agent is gone."""
        fd_size = socket.CMSG_SPACE(4 * 4)
        data, ancdata, _, _ = self.sock.recvmsg(65536, fd_size)
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds.extend(int.from_bytes(payload[i:i + 4], "little", signed=True)
                           for i in range(0, usable, 4))
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        return Message(protocol.decode_msg(data), fds)


def agent_link() -> AgentLink | None:
    """The link to the agent, or None when this process was not started by `lager python`."""
    global _link
    with _link_lock:
        if _link is not None and _link.pid != os.getpid():
            return None  # a forked child (multiprocessing) shares the socket but not the pause
        if _link is None:
            fd = os.environ.get(protocol.ENV_AGENT_FD)
            agent_pid = os.environ.get(protocol.ENV_AGENT_PID)
            # The fd number is only ours in the process the agent started itself: a child of
            # the script inherits the env but not the fd, and must not pause through it.
            if not fd or not fd.isdigit() or agent_pid != str(os.getppid()):
                return None
            try:
                sock = socket.socket(fileno=int(fd))
            except OSError:
                return None
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
                sock.detach()
                return None
            _link = AgentLink(sock)
        return _link
