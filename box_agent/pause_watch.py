"""The `pauses` subsystem's box side: every watcher gets the paused runs, then each change.

lager.protocol.pauses has the contract. A standalone keeper (client/pause_table.py) keeps the
table it makes, and numbers a bare `--continue` (`ID#N`, ISSUE-NOTES 9) without asking the
box's `list` first: one round trip fewer on a slow link (issue 13).

Every change of a run's current pause goes through BreakpointLink._set_pause, on the event loop;
its hook (`changed`) writes the change to every watcher before the loop runs anything else. A
new watcher's snapshot and its registration are one synchronous step (`open`), so a change is
either in the snapshot or sent after it, never lost between them, and a watcher sees the
changes in the order the box made them.

Bounded: lines a watcher has not taken (beyond its SSH window) wait in its channel's send
buffer; one that passes BACKLOG_LIMIT (plus its snapshot's size) is dropped (its channel
closed at once, the unsent lines thrown away), so a watcher that never reads costs the box at
most that much. Visibility is
`list`'s: every run on the box.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import asyncssh

from lager import protocol
from lager.errors import LagerError
from lager.protocol.events import PauseNotice, ResumeNotice
from lager.protocol.pauses import BACKLOG_LIMIT, PauseSnapshot

if TYPE_CHECKING:
    from .breakpoints import Pause
    from .subsystems.common import Context
    from .supervisor import Supervisor

log = logging.getLogger("lager-box.pauses")

Process = asyncssh.SSHServerProcess  # [bytes]


def _notice(run_id: str, pause: Pause) -> PauseNotice:
    # Without the banner: a watcher wants the number, not the text the run's clients show.
    notice = pause.notice(run_id)
    notice.banner = None
    notice.banner_at = None
    return notice


class PauseWatch:
    """The watchers of one agent, and the hook BreakpointLink calls on every change."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._watchers: dict[Process[bytes], int] = {}  # each watcher -> its backlog limit

    def open(self, process: Process[bytes]) -> None:
        """Write the snapshot and start sending changes, in one step of the event loop."""
        paused = [_notice(run.id, run.link.pause)
                  for run in sorted(self._supervisor.runs.values(), key=lambda r: r.started_at)
                  if run.link is not None and run.link.pause is not None
                  and not run.done.is_set()]
        snapshot = PauseSnapshot(v=protocol.PROTOCOL_VERSION, paused=paused).encode()
        # The snapshot may be larger than a small window: it counts on top of the limit, so
        # a box with many paused runs does not drop every watcher it gets.
        self._watchers[process] = BACKLOG_LIMIT + len(snapshot)
        self._send(process, snapshot)

    def close(self, process: Process[bytes]) -> None:
        self._watchers.pop(process, None)

    def changed(self, run_id: str, old: Pause | None, new: Pause | None, how: str) -> None:
        """BreakpointLink.on_change: pause `old` is over (how), and/or `new` is current."""
        lines = b""  # both lines in one write: a watcher never sees half a change
        if old is not None and (new is None or new.seq != old.seq):
            lines += ResumeNotice(run_id=run_id, seq=old.seq, how=how or "gone").encode()
        if new is not None and (old is None or new.seq != old.seq):
            lines += _notice(run_id, new).encode()
        if lines:
            for process in list(self._watchers):
                self._send(process, lines)

    def _send(self, process: Process[bytes], data: bytes) -> None:
        limit = self._watchers.get(process)
        if limit is None:
            return
        if process.is_closing():
            self.close(process)
            return
        try:
            process.stdout.write(data)
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            self.close(process)
            return
        except Exception:  # a watcher must never fail the resume that told it: logged, dropped
            log.exception("dropped a pauses watcher: writing to it failed")
            self.close(process)
            process.channel.abort()
            return
        unsent = process.channel.get_write_buffer_size()
        if unsent > limit:
            self.close(process)
            log.info("dropped a pauses watcher that did not read (%d bytes unsent)", unsent)
            process.channel.abort()  # its unsent lines go too: that is the bound


async def handle_pauses(ctx: Context) -> None:
    """`pauses`: the snapshot, then each change, until the client closes the channel. The
    channel takes no input: a byte sent on it is refused in one line (EOF is fine)."""
    watch: PauseWatch = ctx.supervisor.pause_watch
    watch.open(ctx.process)
    try:
        if await ctx.read(1):
            raise LagerError("the pauses subsystem takes no input; open it and read")
        # EOF (`ssh -s box pauses < /dev/null`): the lines go on until the channel closes.
        await ctx.process.wait_closed()
    finally:
        watch.close(ctx.process)
