"""The script's end of its private channel to the agent (an inherited SOCK_SEQPACKET fd).

Each message is one datagram (lager.protocol.link); a console request carries the console's
socket as SCM_RIGHTS.
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time

from .. import protocol
from ..protocol.codec import Message, ProtocolError
from ..protocol.link import BannerPlaced, ConsoleMsg, ResumeMsg, decode_to_script

PLACED_WAIT = 5.0  # seconds a script waits for its resume line to be placed
_link: AgentLink | None = None
_link_lock = threading.Lock()


class Received:
    """A message from the agent and the fds that came with it (the caller closes them)."""

    __slots__ = ("body", "fds")

    def __init__(self, body: ResumeMsg | ConsoleMsg | BannerPlaced | None,
                 fds: list[int]) -> None:
        self.body = body  # None: a message this script cannot read (skipped, never fatal)
        self.fds = fds


class AgentLink:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid = os.getpid()

    def send(self, msg: Message) -> None:
        self.sock.send(msg.encode())

    def wait_placed(self, seq: int, timeout: float = PLACED_WAIT) -> None:
        """Wait until the monitor has put banner `seq` on stderr, so what the script writes
        next comes after it. Gives up after `timeout` (the line then may land late)."""
        until = time.monotonic() + timeout
        while (left := until - time.monotonic()) > 0:
            readable, _, _ = select.select([self.sock], [], [], left)
            if not readable:
                return
            msg = self.receive()
            if msg is None:
                return
            for fd in msg.fds:
                os.close(fd)  # a console for a pause that is over
            if isinstance(msg.body, BannerPlaced) and msg.body.seq == seq:
                return

    def receive(self) -> Received | None:
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
        try:
            return Received(decode_to_script(data), fds)
        except ProtocolError:
            return Received(None, fds)


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
