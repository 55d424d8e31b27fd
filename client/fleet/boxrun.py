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
from lager.errors import ConnectionFailed, LagerError, Reserved, refusal
from lager.protocol.channel import Message, RunHeader, RunStarted, Stop
from lager.protocol.events import Event, Hello, PauseNotice, ResumeNotice

from .. import EXIT_INTERRUPTED
from ..context import LagerContext, exchange, read_all
from ..reconnect import Reattacher, new_client_ref
from ..reservation_wait import wait_turn
from ..run_client import RunRequest, send_upload
from ..run_stream import Piece, RunStream
from . import recap, reserved
from .output import BoxOutput, Gathered, Terminal
from .pause_adapter import BannerCue, lookup, pause_event_of
from .pauses import PauseBoard, PauseEvent
from .targets import Target

if TYPE_CHECKING:
    from ..ssh import BoxConnection

_CHUNK = 1 << 20
_IDLE_WAKE = 30.0  # select's bound; the channel's pipe wakes the thread for data and close
_LINE_MAX = 64 * 1024  # a refusal is one line; keep no more than this of it


def _close_quietly(chan: Any) -> None:
    """Close a channel that another thread may be closing its connection under: close()
    marks it closed before it sends the close, so the thread it wakes can close the
    connection first, and the send fails. Closed here either way; the box sees it go."""
    try:
        chan.close()
    except (EOFError, OSError):
        return


@dataclass
class FleetRunRequest(RunRequest):
    """The single-box run request plus the fleet id, which the box records on the run."""

    fleet: str = ""

    def run_header(self, box_name: str) -> RunHeader:
        return super().run_header(box_name).replaced(fleet=self.fleet)


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
        self.queue: Any = None  # the reservation queue's channel, kept open for the run's life
        self.refusal = ""  # the box's refusal line (a framed run's channel stderr carries only
        # those), which with exit 75 tells a reserved box from a script that exited 75

    def _new_stream(self) -> RunStream:
        """The run channel's reader (issue 14): output, and the pause notices in order with
        it; the banners' bytes are left out of the live view (the notice carries them)."""
        return RunStream(True, show_banners=False, received=self.received)

    # --- the thread ---

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._run()
        except Reserved as exc:  # refused before the upload was all taken
            assert self.conn is not None
            self.row.run_id = ""
            self._reserved(reserved.ask_box(self.conn, self.refusal or str(exc)), str(exc))
        except LagerError as exc:
            self._unreachable(str(exc))
        except (OSError, EOFError) as exc:
            self._unreachable(str(exc) or type(exc).__name__)
        finally:
            self.row.seconds = time.monotonic() - started
            self.out.finish()
            self.out.write_json({**self.row.as_dict(), "fleet": self.shared.fleet_id})
            self.shared.board.ended(self.name)
            if self.queue is not None:
                _close_quietly(self.queue)  # the grant was for this run, which is over
            if self.conn is not None:
                self.conn.close()
            self.done.set()

    def _run(self) -> None:
        if self.shared.interrupted.is_set():
            return  # Ctrl-C came before this box's turn: skipped
        with self.shared.forks:
            if self.shared.interrupted.is_set():
                return  # Ctrl-C while it waited for its turn to connect: skipped
            self.conn = self.ctx.connect()
            if self.request.wait is None:
                chan = self._upload()
        if self.request.wait is not None:
            # CI or --wait: this box's own place in its queue, holding no fork meanwhile.
            if not self._wait_turn():
                return
            with self.shared.forks:
                chan = self._upload()
        if self.request.detach:
            self._detached(chan)
            return
        self.chan = chan
        self.row.state = "running"
        self.shared.board.started(self.name)
        status = self._follow()
        if status == protocol.EXIT_RESERVED and self.refusal:
            self._reserved_at_start()
            return
        while status < 0 and not self.leaving:
            chan = self._reconnect()
            if chan is None:
                break
            self.chan = chan
            self.stream = self._new_stream()
            status = self._follow()
        self._settle(status)

    def _upload(self) -> Any:
        """Open the run channel and send the run, as one box does. A box that refuses the
        run stops taking it: its status and line say why."""
        assert self.conn is not None
        chan = self.conn.open(protocol.SUB_RUN)
        try:
            send_upload(chan, self.request, self.name)
        except OSError as exc:
            if chan.exit_status_ready():  # refused before it took all of the upload
                self.refusal = read_all(chan)[1].strip()
                raise refusal("run", self.refusal, chan.recv_exit_status()) from None
            raise ConnectionFailed(f"upload to box {self.name} failed: {exc}") from None
        return chan

    # --- a box reserved by someone else (#18's shared boxes, ISSUE-NOTES 17) ---

    def _wait_turn(self) -> bool:
        """Stand in the box's queue; False when this box is not to run (given up, left)."""
        assert self.conn is not None and self.request.wait is not None
        self.row.state = recap.WAITING
        say = self.shared.terminal.say
        try:
            self.request.ticket, self.queue = wait_turn(
                self.conn, self.name, self.request.label, self.request.wait,
                show=lambda line: say(f"{self.name}: {line}"), opened=self._queue_opened)
        except Reserved as exc:
            holder = reserved.of_details(exc.details, str(exc))
            if holder is not None and str(exc).startswith("gave up"):
                holder.reason += f" (gave up after waiting {self.request.wait:g}s)"
            self._reserved(holder, str(exc))
            return False
        except ConnectionFailed:
            if self.shared.interrupted.is_set():
                self.row.state, self.row.reason = recap.SKIPPED, "left the box's queue (Ctrl-C)"
                return False
            raise
        say(f"{self.name}: its turn came; starting")
        return True

    def _queue_opened(self, chan: Any) -> None:
        self.queue = chan
        if self.shared.interrupted.is_set():
            chan.close()

    def leave_queue(self) -> None:
        """Ctrl-C: a box still waiting for its turn leaves the queue (the box sees it go)."""
        if self.queue is not None and self.row.state == recap.WAITING:
            _close_quietly(self.queue)

    def _reserved_at_start(self) -> None:
        """The box refused the run (exit 75 with its refusal line): a recap row naming the
        holder, never a failed script."""
        assert self.conn is not None
        self.row.run_id = ""  # the hello named a run that the refusal never started
        self._reserved(reserved.ask_box(self.conn, self.refusal), self.refusal)

    def _reserved(self, holder: reserved.Holder | None, line: str) -> None:
        self.row.state, self.row.exit = recap.RESERVED, recap.EXIT_RESERVED
        if holder is None:
            holder = reserved.Holder("", line.strip() or "reserved", [])
        self.row.holder, self.row.reason, self.row.holds = holder.who, holder.reason, holder.holds
        self.shared.terminal.say(f"{self.name}: {holder.reason}")

    def _detached(self, chan: Any) -> None:
        out, err = read_all(chan)
        status = chan.recv_exit_status()
        if status == protocol.EXIT_RESERVED:
            self.refusal = err.strip()
            self._reserved_at_start()
            return
        if status != 0:
            raise LagerError(err.strip() or "the box refused the run")
        self.row.run_id = RunStarted.decode(out).id
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
                data = chan.recv_stderr(_CHUNK)
                if self.stream.framed:  # only the box's refusal lines come this way
                    self.refusal = (self.refusal + data.decode("utf-8", "replace"))[-_LINE_MAX:]
                else:
                    self._show(self.stream.stderr_data(data))
                took = True
            if took:
                continue
            if chan.closed or (chan.eof_received and chan.exit_status_ready()):
                self._show(self.stream.at_end())
                status = int(chan.recv_exit_status())
                if self.refusal and status != protocol.EXIT_RESERVED:
                    self._show([(2, self.refusal.encode())])  # another refusal: as it came
                    self.refusal = ""
                return status
            if self.leaving:
                return -1
            select.select([chan], [], [], _IDLE_WAKE)

    def _show(self, pieces: list[Piece]) -> None:
        for stream, piece in pieces:
            if not isinstance(piece, (bytes, memoryview)):
                self._event(piece)
                continue
            data = bytes(piece)  # bytes already: a fleet's channels take no views (chan_buffer)
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
