"""The agent's end of a run's monitor: start one, reconnect to one, and talk to it.

Messages are documented in `box_agent/monitor/__init__.py`. The monitor dir is the agent's
alone (0700): `run.json` (what the agent knows of the run, written before the monitor starts),
the output log, `status.json` once the script has exited, and the monitor's socket.
"""
from __future__ import annotations

import array
import asyncio
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lager.errors import LagerError
from lager.protocol.codec import Message, ProtocolError
from lager.protocol.link import (
    MonitorFailed,
    MonitorHello,
    MonitorOutput,
    decode_from_monitor,
)

from .monitor.loop import SOCKET_NAME, STATUS_FILE, WINDOW
from .monitor_build import monitor_program
from .runlog import DEFAULT_LIMIT

RUN_FILE = "run.json"
START_TIMEOUT = 30.0

__all__ = ["RUN_FILE", "STATUS_FILE", "WINDOW", "MonitorLink", "read_json", "write_json"]


# A streaming run trades two messages with its monitor for every stretch of output (~130 of
# each per 200 MB): `output` and the window that answers it. Read and written without the
# general codec (json, and the message class's checks: ~10 us a message, more on a busy box).
# Any other spelling of them, and every other message, takes the codec.
_OUTPUT = b'{"op":"output","end":'
_WINDOW = b'{"op":"window","until":%d,"seen":%d}\n'


def quick_output(data: bytes) -> MonitorOutput | None:
    """The monitor's `output`, as monitor.c spells it; None for anything else."""
    if data.startswith(_OUTPUT) and data.endswith(b"}\n"):
        digits = data[len(_OUTPUT):-2]
        if digits.isdigit() and len(digits) <= 19 and (digits[:1] != b"0" or digits == b"0"):
            return MonitorOutput(end=int(digits))
    return None


class MonitorLink:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)

    @classmethod
    async def spawn(cls, monitor_dir: Path, workdir: Path, identity: str, argv: Sequence[str],
                    env: dict[str, str], log_limit: int = DEFAULT_LIMIT) -> tuple[
                        MonitorLink, MonitorHello]:
        """Start a monitor for a new run; returns the link and the monitor's hello. The
        monitor keeps `log_limit` for the run's whole life, whichever agent it talks to."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        errors = open(monitor_dir / "monitor.err", "ab")  # noqa: SIM115 - the child keeps it
        executable, head = monitor_program()
        try:
            proc = await asyncio.create_subprocess_exec(
                *head, f"--log-limit={log_limit}", str(theirs.fileno()), str(monitor_dir),
                str(workdir), identity, "--", *argv, executable=executable,
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=errors, start_new_session=True, pass_fds=(theirs.fileno(),))
        except OSError as exc:
            ours.close()
            raise LagerError(f"cannot start the script: {exc}") from None
        finally:
            theirs.close()
            errors.close()
        # The monitor is our child only until this agent goes; its exit tells us nothing the
        # exit message doesn't, so reap it in the background.
        asyncio.ensure_future(proc.wait())  # noqa: RUF006 - nothing to await on it
        link = cls(ours)
        try:
            hello = await asyncio.wait_for(link.receive(), START_TIMEOUT)
        except TimeoutError:
            hello = None
        if not isinstance(hello, MonitorHello):
            link.close()
            if proc.returncode is None:
                proc.kill()
            reason = hello.error if isinstance(hello, MonitorFailed) else \
                "its monitor did not answer"
            raise LagerError(reason or "cannot start the script")
        return link, hello

    @classmethod
    def connect(cls, monitor_dir: Path) -> MonitorLink | None:
        """Reach the monitor of a run an earlier agent started; None when it is gone."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        dirfd = os.open(monitor_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # Through /proc: a socket path must fit in 108 bytes, and the state dir's may not.
            sock.connect(f"/proc/self/fd/{dirfd}/{SOCKET_NAME}")
        except OSError:
            sock.close()
            return None
        finally:
            os.close(dirfd)
        return cls(sock)

    async def receive(self) -> Message | None:
        """The next message; None when the monitor is gone."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                # Past the script's 64 KiB datagram: a `script` or `hello` carries the whole
                # message (its banner included) with a few fields more.
                data = await loop.sock_recv(self.sock, 1 << 17)
            except OSError:
                return None
            if not data:
                return None
            try:
                return quick_output(data) or decode_from_monitor(data)
            except ProtocolError:
                continue  # only our monitor writes here; skip what we cannot read

    def send(self, msg: Message, fds: Sequence[int] = ()) -> None:
        self._send(msg.encode(), fds)

    def send_window(self, until: int, seen: int) -> None:
        """Window(until, seen), the answer to every `output`, as the codec writes it."""
        self._send(_WINDOW % (until, seen))

    def _send(self, data: bytes, fds: Sequence[int] = ()) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            self.sock.sendmsg([data], anc)
        except OSError:
            pass  # the monitor is gone; its run's end is on its way through receive()

    def close(self) -> None:
        self.sock.close()


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
