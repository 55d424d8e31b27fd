"""The agent's end of a run's private channel: the pause registry for that run.

The script registers each pause and then blocks on its channel, which its monitor holds and
relays (so a pause survives an agent restart: a new agent learns it from the monitor's hello).
Every resume (Enter, `continue`, auto-resume) is decided here, on the event loop, so two racing
resumes resume once and a resume can only ever hit the pause that is current when it arrives.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lager import protocol
from lager.errors import LagerError, NotPaused
from lager.protocol.events import PauseNotice, ResumeNotice
from lager.protocol.link import (
    BannerAt,
    ConsoleMsg,
    PauseMsg,
    ResumedMsg,
    ResumeMsg,
    decode_from_script,
)
from lager.protocol.pauses import GONE

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
    on_timeout: str = "resume"
    kind: str = "pause"
    banner: str | None = None
    banner_at: BannerAt | None = None  # where the monitor put the banner on stderr
    overdue: bool = False  # its auto-resume fell due while no agent was running

    def waited(self) -> float:
        """What an auto-resume tells the script it waited: its timeout, or (overdue) the
        real wait, so the banner does not say 5s when 13s passed across a restart."""
        return max(self.timeout, time.monotonic() - self.started) if self.overdue \
            else self.timeout

    def remaining(self) -> float | None:
        if self.timeout <= 0:
            return None
        return max(0.0, self.timeout - (time.monotonic() - self.started))

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "label": self.label, "file": self.file, "line": self.line,
                "timeout": self.timeout, "remaining": self.remaining(),
                "console": self.console, "paused_at": self.started_at}

    def notice(self, run_id: str) -> PauseNotice:
        remaining = self.remaining()
        return PauseNotice(run_id=run_id, seq=self.seq, file=self.file, line=self.line,
                           label=self.label, kind=self.kind, console=self.console,
                           timeout=self.timeout,
                           deadline=None if self.timeout <= 0 else
                           self.started_at + self.timeout,
                           remaining=remaining, on_timeout=self.on_timeout,
                           banner=self.banner, banner_at=self.banner_at)


SendToScript = Callable[[dict[str, Any], Sequence[int]], None]
Notice = PauseNotice | ResumeNotice


class BreakpointLink:
    def __init__(self, run_id: str, send: SendToScript) -> None:
        self.run_id = run_id
        self._send_raw = send
        self.pause: Pause | None = None
        self.last_resume: dict[str, Any] | None = None
        self.resumed_seq = 0  # the highest pause number resumed so far
        self._closed = False
        # Told of every change of `pause` (old, new, how it ended): box_agent/pause_watch.py.
        self.on_change: Callable[[str, Pause | None, Pause | None, str], None] | None = None

    def _set_pause(self, pause: Pause | None, how: str) -> None:
        old, self.pause = self.pause, pause
        if self.on_change is not None and old is not pause:
            self.on_change(self.run_id, old, pause, how)

    def handle(self, body: dict[str, Any] | PauseMsg, paused_at: float,
               banner_at: BannerAt | None = None) -> Notice | None:
        """A message from the script; returns the notice for the run's clients. `paused_at`
        (wall clock) lets a pause that began under an earlier agent keep its deadline."""
        try:
            msg = body if isinstance(body, PauseMsg) else decode_from_script(body)
        except LagerError as exc:
            log.warning("run %s sent a bad breakpoint message: %s", self.run_id, exc)
            return None
        if isinstance(msg, ResumedMsg):
            return ResumeNotice(run_id=self.run_id, seq=msg.seq, how=msg.how, by=msg.by,
                                banner=msg.banner, banner_at=banner_at)
        return self._register(msg, paused_at, banner_at).notice(self.run_id)

    def _register(self, msg: PauseMsg, paused_at: float, banner_at: BannerAt | None) -> Pause:
        timeout = msg.timeout
        age = max(0.0, time.time() - paused_at) if paused_at else 0.0
        pause = Pause(seq=msg.seq, label=msg.label, file=msg.file, line=msg.line,
                      timeout=timeout, console=msg.console, started=time.monotonic() - age,
                      started_at=paused_at or time.time(), on_timeout=msg.on_timeout,
                      kind=msg.kind, banner=msg.banner, banner_at=banner_at,
                      overdue=0 < timeout < age)
        if timeout > 0:
            pause.timer = asyncio.get_running_loop().call_later(
                max(0.0, timeout - age), self._auto_resume, pause.seq)
        self._set_pause(pause, "")
        return pause

    def script_closed(self) -> None:
        """The script closed its end (it is exiting): no pause can be current."""
        if self.pause and self.pause.timer:
            self.pause.timer.cancel()
        self._set_pause(None, GONE)

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
        self._set_pause(None, how)
        if pause.timer:
            pause.timer.cancel()
        self.resumed_seq = max(self.resumed_seq, pause.seq)
        self.last_resume = {"seq": pause.seq, "how": how, "by": by, "at": time.time(),
                            "label": pause.label,
                            "file": pause.file, "line": pause.line}
        log.info("run %s resumed (%s) by %s at %s:%s", self.run_id, how, by or "-",
                 pause.file, pause.line)
        after = pause.waited() if how == "timeout" else pause.timeout
        self._send(ResumeMsg(seq=pause.seq, how=how, after=after, by=by).to_dict())
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
            self._send_raw(ConsoleMsg(seq=pause.seq, pty=pty, cols=cols, rows=rows).to_dict(),
                           [theirs.fileno()])
        finally:
            theirs.close()
        return ours

    def _send(self, msg: dict[str, Any]) -> None:
        self._send_raw(msg, ())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.script_closed()
