"""The agent's end of a run's private channel: the pause registry for that run.

The script registers each pause here and then blocks on the channel; every resume (Enter,
`continue`, auto-resume) is decided here, on the event loop, so two racing resumes resume once
and a resume can only ever hit the pause that is current when it arrives.
"""
from __future__ import annotations

import array
import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from lager import protocol
from lager.errors import LagerError, NotPaused

log = logging.getLogger("lager-box.breakpoints")


@dataclass
class Pause:
    seq: int
    label: str | None
    file: str
    line: int
    timeout: float
    console: bool
    started: float  # monotonic
    started_at: float  # wall clock, for --list
    timer: asyncio.TimerHandle | None = None

    def remaining(self) -> float | None:
        if self.timeout <= 0:
            return None
        return max(0.0, self.timeout - (time.monotonic() - self.started))

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "file": self.file, "line": self.line,
                "timeout": self.timeout, "remaining": self.remaining(),
                "console": self.console, "paused_at": self.started_at}


class BreakpointLink:
    def __init__(self, run_id: str, sock: socket.socket) -> None:
        self.run_id = run_id
        self.sock = sock
        sock.setblocking(False)
        self.pause: Pause | None = None
        self.last_resume: dict[str, Any] | None = None
        self._closed = False

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(self.sock, 65536)
            except OSError:
                data = b""
            if not data:
                self.pause = None
                return
            try:
                self._handle(protocol.decode_msg(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("run %s sent a bad breakpoint message: %s", self.run_id, exc)

    def _handle(self, msg: dict[str, Any]) -> None:
        if msg.get("op") != "pause":
            raise ValueError(f"unknown op {msg.get('op')!r}")
        timeout = float(msg["timeout"])
        pause = Pause(seq=int(msg["seq"]), label=msg.get("label"), file=str(msg["file"]),
                      line=int(msg["line"]), timeout=timeout, console=bool(msg["console"]),
                      started=time.monotonic(), started_at=time.time())
        if timeout > 0:
            pause.timer = asyncio.get_running_loop().call_later(
                timeout, self._auto_resume, pause.seq)
        self.pause = pause

    def _auto_resume(self, seq: int) -> None:
        if self.pause is not None and self.pause.seq == seq:
            self.resume("timeout", None)

    def current(self) -> Pause:
        if self.pause is None:
            raise NotPaused(f"run {protocol.short_id(self.run_id)} is not paused")
        return self.pause

    def resume(self, how: str, by: str | None) -> Pause:
        """Resume the current pause. Raises NotPaused (and arms nothing) when there is none."""
        pause = self.current()
        self.pause = None
        if pause.timer:
            pause.timer.cancel()
        self.last_resume = {"how": how, "by": by, "at": time.time(), "label": pause.label,
                            "file": pause.file, "line": pause.line}
        log.info("run %s resumed (%s) by %s at %s:%s", self.run_id, how, by or "-",
                 pause.file, pause.line)
        self._send({"op": "resume", "seq": pause.seq, "how": how, "after": pause.timeout})
        return pause

    def open_console(self, pty: bool, cols: int, rows: int) -> socket.socket:
        """Hand the script one end of a new socketpair; the caller relays the other end.

        Only the agent holds the other end, so the console is reachable only through SSH.
        """
        pause = self.current()
        if not pause.console:
            raise LagerError(
                f"run {protocol.short_id(self.run_id)} is paused at {pause.file}:{pause.line} "
                "without a console; pause it with interactive=True to get one")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            msg = protocol.encode_msg({"op": "console", "seq": pause.seq, "pty": pty,
                                       "cols": cols, "rows": rows})
            fds = array.array("i", [theirs.fileno()])
            self.sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except OSError as exc:
            ours.close()
            raise LagerError(f"cannot reach the paused script: {exc}") from None
        finally:
            theirs.close()
        return ours

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            self.sock.send(protocol.encode_msg(msg))
        except OSError as exc:
            log.warning("run %s: cannot deliver %s: %s", self.run_id, msg.get("op"), exc)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.pause and self.pause.timer:
                self.pause.timer.cancel()
            self.pause = None
            self.sock.close()
