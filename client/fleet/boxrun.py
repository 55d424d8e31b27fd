"""One box of a fleet run, on its own thread: connect (holding one of --forks), send the same
run request a single box sends, then stream the run's channel into the box's output until its
exit status. A lost link reconnects as the single-box client does (issue 11); a box that cannot
be reached is one line and a row in the recap, and never holds the others."""
from __future__ import annotations

import json
import select
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lager import protocol
from lager.errors import ConnectionFailed, LagerError
from lager.protocol.channel import Message, Stop
from lager.protocol.events import Event, Hello, PauseNotice, ResumeNotice

from .. import EXIT_INTERRUPTED
from ..context import LagerContext, exchange, read_all
from ..reconnect import Reattacher, new_client_ref
from ..run_client import RunRequest, _send_upload
from ..run_stream import Piece, RunStream
from . import recap
from .output import BoxOutput, Gathered, Terminal
from .pause_adapter import BannerCue, lookup, pause_event_of
from .pauses import PauseBoard, PauseEvent
from .targets import Target

if TYPE_CHECKING:
    from ..ssh import BoxConnection

_CHUNK = 1 << 20
_IDLE_WAKE = 30.0  # select's bound; the channel's pipe wakes the thread for data and close


@dataclass
class FleetRunRequest(RunRequest):
    """The single-box run request plus the fleet id, which the box records on the run."""

    fleet: str = ""

    def header(self, box_name: str) -> bytes:
        head = json.loads(super().header(box_name))
        head["fleet"] = self.fleet
        return (json.dumps(head) + "\n").encode()


@dataclass
class Shared:
    """What every box of one fleet run shares."""

    obj: LagerContext
    fleet_id: str
    request: FleetRunRequest
    forks: threading.Semaphore
    terminal: Terminal
    board: PauseBoard
    gathered: Gathered | None
    output_dir: Path | None
    reconnect_for: float
    interrupted: threading.Event = field(default_factory=threading.Event)


class BoxRun:
    def __init__(self, target: Target, shared: Shared) -> None:
        self.target = target
        self.name = target.name
        self.shared = shared
        self.row = recap.Row(box=target.name, group=target.group)
        self.ctx = LagerContext(config=shared.obj.config, box_name=target.name,
                                debug=shared.obj.debug, _box=target.box)
        self.request = replace(shared.request, client_ref=new_client_ref(), env={
            **shared.request.env, protocol.ENV_FLEET_INDEX: str(target.index)})
        self.out = BoxOutput(target.name, shared.terminal, shared.gathered, shared.output_dir)
        self.cue = BannerCue(self._on_banner, self._on_resumed)
        self.conn: BoxConnection | None = None
        self.chan: Any = None
        self.received = {1: 0, 2: 0}  # bytes of each stream the box sent (RunStream counts)
        self.stream = self._new_stream()
        self.noted_old_box = False
        self.seen_seq = 0  # the newest pause shown
        self.resumed_seq = 0  # the newest pause whose resume line was kept
        self.leaving = False
        self.done = threading.Event()

    def _new_stream(self) -> RunStream:
        """The run channel's reader (issue 14): output, and the pause notices in order with
        it; the banners' bytes are left out of the live view (the notice carries them)."""
        return RunStream(True, show_banners=False, received=self.received)

    # --- the thread ---

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._run()
        except LagerError as exc:
            self._unreachable(str(exc))
        except (OSError, EOFError) as exc:
            self._unreachable(str(exc) or type(exc).__name__)
        finally:
            self.row.seconds = time.monotonic() - started
            self.out.finish()
            self.out.write_json({**self.row.as_dict(), "fleet": self.shared.fleet_id})
            self.shared.board.ended(self.name)
            if self.conn is not None:
                self.conn.close()
            self.done.set()

    def _run(self) -> None:
        if self.shared.interrupted.is_set():
            return  # Ctrl-C came before this box's turn: skipped
        with self.shared.forks:
            if self.shared.interrupted.is_set():
                return  # Ctrl-C while it waited for its turn to connect: skipped
            conn = self.conn = self.ctx.connect()
            chan = conn.open(protocol.SUB_RUN)
            try:
                _send_upload(chan, self.request, self.name)
            except OSError as exc:
                raise ConnectionFailed(f"upload to box {self.name} failed: {exc}") from None
        if self.request.detach:
            self._detached(chan)
            return
        self.chan = chan
        self.row.state = "running"
        self.shared.board.started(self.name)
        status = self._follow()
        while status < 0 and not self.leaving:
            chan = self._reconnect()
            if chan is None:
                break
            self.chan = chan
            self.stream = self._new_stream()
            status = self._follow()
        self._settle(status)

    def _detached(self, chan: Any) -> None:
        out, err = read_all(chan)
        if chan.recv_exit_status() != 0:
            raise LagerError(err.strip() or "the box refused the run")
        started = json.loads(out)
        self.row.run_id = str(started["id"])
        self.row.state = "started"

    def _settle(self, status: int) -> None:
        self.row.run_id = self.row.run_id or self._run_id() or ""
        if status >= 0:
            self.row.settle(status)
            return
        if self.leaving:  # the third Ctrl-C: we left, and the box stops the run itself
            self.row.state, self.row.exit = recap.KILLED, EXIT_INTERRUPTED
            self.row.reason = "left; the box stops the run"
            return
        self.row.state = recap.LOST
        again = f"lager python --reattach {self.row.run_id or '(see --list)'} --box {self.name}"
        self.row.reason = f"lost; reattach: {again}"
        self.shared.terminal.say(f"{self.name}: lost: the connection dropped and did not come "
                                 f"back; the run goes on there: {again}")

    def _unreachable(self, reason: str) -> None:
        self.row.state = recap.UNREACHABLE
        self.row.exit = recap.EXIT_UNREACHABLE
        self.row.reason = reason
        self.shared.terminal.say(f"{self.name}: unreachable: {reason}")

    def _follow(self) -> int:
        """The run's exit status, or -1 when the link died before it."""
        chan = self.chan
        while True:
            took = False
            if chan.recv_ready():  # stdout first: the box's hello precedes its stderr
                self._show(self.stream.stdout_data(chan.recv(_CHUNK)))
                took = True
            if chan.recv_stderr_ready():
                self._show(self.stream.stderr_data(chan.recv_stderr(_CHUNK)))
                took = True
            if took:
                continue
            if chan.closed or (chan.eof_received and chan.exit_status_ready()):
                self._show(self.stream.at_end())
                return int(chan.recv_exit_status())
            if self.leaving:
                return -1
            select.select([chan], [], [], _IDLE_WAKE)

    def _show(self, pieces: list[Piece]) -> None:
        for stream, data in pieces:
            if not isinstance(data, bytes):
                self._event(data)
                continue
            self.out.raw(stream, data)
            if self.stream.framed is False:  # a box older than #14: the banner cue
                self._older_box()
                self.out.live(stream, data, keep=self.cue.keep if stream == 2 else None)
            else:
                self.out.live(stream, data)

    def _event(self, event: Event) -> None:
        """Issue 14's structured notices: the run's id, and each pause and resume."""
        if isinstance(event, Hello):
            self.row.run_id = event.run_id
        elif isinstance(event, PauseNotice):
            if event.seq > self.seen_seq:  # a reattach sends the current pause again
                self.seen_seq = event.seq
                self.row.pauses += 1
                if event.banner:
                    self.out.raw(2, event.banner.encode())  # the files keep the banner
            self.shared.board.paused_at(pause_event_of(self.name, event))
        elif isinstance(event, ResumeNotice):
            if event.banner and event.seq > self.resumed_seq:
                self.out.raw(2, event.banner.encode())
            self.resumed_seq = max(self.resumed_seq, event.seq)
            self.shared.board.resumed(self.name, event.seq)

    def _older_box(self) -> None:
        if self.noted_old_box:
            return
        self.noted_old_box = True
        note = self.stream.older_box_note(self.name)
        if note:
            self.shared.terminal.say(f"{self.name}: {note}")
        # No Hello to name the run: ask the box once, so a lost link can name its reattach.
        self.row.run_id = self.row.run_id or self._run_id(wait=10.0) or ""

    # --- pauses from a box older than #14 (the banner cue and `list`) ---

    def _rows(self) -> list[dict[str, Any]]:
        assert self.conn is not None
        out, _, status = exchange(self.conn, protocol.SUB_LIST, None, None, timeout=30)
        rows: list[dict[str, Any]] = json.loads(out) if status == 0 else []
        return rows

    def _mine(self, row: dict[str, Any]) -> bool:
        return row.get("id") == self.row.run_id if self.row.run_id else \
            row.get("client_ref") == self.request.client_ref

    def _run_id(self, wait: float = 0.0) -> str | None:
        """The run's id from the box's list; `wait` covers the moment between the upload
        and the box registering the run."""
        until = time.monotonic() + wait
        delay = 0.02
        while True:
            try:
                row = next((r for r in self._rows() if self._mine(r)), None)
            except (LagerError, OSError, EOFError, ValueError):
                return None
            if row is not None:
                return str(row["id"])
            if time.monotonic() >= until:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _on_banner(self) -> None:
        try:
            event = lookup(self.name, self._rows, self._mine, self.seen_seq)
        except (LagerError, OSError, EOFError, ValueError) as exc:
            self.shared.terminal.say(f"{self.name}: paused, but its pause could not be read: "
                                     f"{exc}")
            return
        if event is None:
            return
        self.row.run_id = event.run_id
        self.row.pauses += 1
        self.seen_seq = event.seq
        self.shared.board.paused_at(event)

    def _on_resumed(self) -> None:
        self.shared.board.resumed(self.name)

    def resume(self, event: PauseEvent) -> None:
        """Enter, for this box: the same `continue` one box sends, naming the pause."""
        if self.conn is None:
            return
        try:
            _, err, status = exchange(self.conn, protocol.SUB_CONTINUE,
                                        f"{event.run_id}{protocol.PAUSE_MARK}{event.seq}",
                                        None, timeout=30)
        except (LagerError, OSError, EOFError) as exc:
            err, status = str(exc), 1
        if status != 0:
            self.shared.terminal.say(f"{self.name}: resume failed: {err.strip()}")

    # --- Ctrl-C and lost links ---

    def send_control(self, msg: Message) -> None:
        chan = self.chan
        if chan is None or chan.closed:
            return
        try:
            chan.sendall(msg.encode())
        except OSError:
            pass  # the link is gone; the thread sees it close and reconnects or gives up

    def leave(self) -> None:
        """Third Ctrl-C: the box stops the run itself once we are gone."""
        self.send_control(Stop())
        self.leaving = True
        if self.chan is not None:
            self.chan.close()

    def _reconnect(self) -> Any:
        self.shared.terminal.say(f"{self.name}: connection lost; reconnecting\u2026")
        again = Reattacher(self.ctx, run_id=self.row.run_id or None,
                           client_ref=self.request.client_ref)
        deadline = time.monotonic() + self.shared.reconnect_for
        delay = 0.25
        while time.monotonic() < deadline and not self.leaving:
            try:
                chan = again(self.received[1], self.received[2])
            except ConnectionFailed:
                if self.shared.interrupted.wait(min(delay, max(0.0,
                                                               deadline - time.monotonic()))):
                    break  # Ctrl-C while waiting: stop waiting; the run goes on there
                delay = min(delay * 2, 5.0)
                continue
            if self.conn is not None:
                self.conn.close()
            self.conn = again.conn
            again.conn = None  # ours to close now
            self.shared.terminal.say(f"{self.name}: reconnected")
            return chan
        return None
