"""`lager python SCRIPT --box SET`: one thread per box, the same run request on each, one
fleet id, one aggregated pause line, a recap and one exit code.

Ctrl-C stops every run as it stops one (SIGINT, then SIGTERM, then leave: the boxes finish the
stop), and the recap is still printed. Enter resumes the boxes paused at that moment.
"""
from __future__ import annotations

import os
import resource
import select
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType

from lager import protocol
from lager.protocol.channel import Signal

from ..context import LagerContext
from . import recap, records
from .boxrun import BoxRun, FleetRunRequest, Shared
from .output import Gathered, Terminal, prepare_output_dir
from .pauses import PauseBoard, PauseEvent
from .targets import Fleet

DEFAULT_FORKS = 32
_STOP_STEPS = (Signal(name="INT"), Signal(name="TERM"))
# Thread stacks are virtual memory, but a smaller one keeps 200 boxes' worth of them modest.
_STACK = 512 * 1024


@dataclass
class FleetOptions:
    forks: int = DEFAULT_FORKS
    gather: bool = False
    output_dir: str | None = None
    junit_xml: str | None = None
    as_json: bool = False
    script: str = ""


# macOS refuses a soft RLIMIT_NOFILE above OPEN_MAX (10240) even when the hard limit is
# unlimited (setrlimit raises ValueError): the second try.
_OPEN_MAX = 10240
_UNLIMITED_WISH = 65536


def raise_nofile_limit() -> int:
    """A socket and a pipe or two per box: the soft limit (1024, macOS 256) goes to the hard,
    or as near as the system allows. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft  # nothing to raise (and RLIM_INFINITY compares as -1 here)
    unlimited = hard == resource.RLIM_INFINITY
    wanted = max(soft, _UNLIMITED_WISH) if unlimited else hard
    for target in dict.fromkeys((wanted, min(wanted, _OPEN_MAX))):  # in order, no repeat
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue  # above what this system takes: the next, smaller, try
        return target
    return soft


class FleetRun:
    def __init__(self, obj: LagerContext, fleet: Fleet, request: FleetRunRequest,
                 options: FleetOptions) -> None:
        self.obj = obj
        self.fleet = fleet
        self.options = options
        self.terminal = Terminal()
        self.fleet_id = request.fleet
        self.board = PauseBoard(self.fleet_id, self.terminal.status, self._resume,
                                self.terminal.say)
        reconnect_for = float(os.environ.get("LAGER_RECONNECT_FOR", "600"))
        self.shared = Shared(obj, self.fleet_id, request,
                             threading.Semaphore(max(1, options.forks)), self.terminal,
                             self.board, Gathered() if options.gather else None,
                             prepare_output_dir(options.output_dir), reconnect_for)
        self.boxes = [BoxRun(t, self.shared) for t in fleet.targets]
        self.by_name = {b.name: b for b in self.boxes}
        self.signals = 0
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)

    def _resume(self, event: PauseEvent) -> None:
        box = self.by_name.get(event.box)
        if box is not None:
            threading.Thread(target=box.resume, args=(event,), daemon=True,
                             name=f"lager-resume-{event.box}").start()

    def _on_signal(self, _sig: int, _frame: FrameType | None) -> None:
        self.signals += 1

    def _enter_reader(self) -> None:
        from ..follow import for_each_enter

        for_each_enter(sys.stdin.fileno(), self.board.enter)

    def run(self) -> int:
        raise_nofile_limit()
        records.save(self.obj.config, self.fleet_id, self.fleet.expression,
                     [t.box for t in self.fleet.targets])
        self.terminal.say(f"lager: fleet {self.fleet_id}: {self.options.script} on "
                          f"{self.fleet.folded} ({len(self.boxes)} box"
                          f"{'' if len(self.boxes) == 1 else 'es'})")
        if sys.stdin is not None and not sys.stdin.closed and not self.shared.request.detach:
            threading.Thread(target=self._enter_reader, daemon=True,
                             name="lager-fleet-enter").start()
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        old_stack = threading.stack_size(_STACK)
        try:
            threads = [threading.Thread(target=self._box_thread, args=(b,), daemon=True,
                                        name=f"lager-box-{b.name}") for b in self.boxes]
            for t in threads:
                t.start()
            self._wait()
        finally:
            threading.stack_size(old_stack)
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.terminal.status("")
        return self._finish()

    def _box_thread(self, box: BoxRun) -> None:
        try:
            box.run()
        finally:
            try:
                os.write(self._wake_w, b"d")
            except OSError:
                pass  # the pipe is full: the main loop is due to wake anyway

    def _wait(self) -> None:
        handled = 0
        while not all(b.done.is_set() for b in self.boxes):
            try:
                select.select([self._wake_r], [], [], 5.0)
            except InterruptedError:
                pass
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            while handled < self.signals:
                self._stop_step(handled)
                handled += 1

    def _stop_step(self, step: int) -> None:
        self.shared.interrupted.set()
        for box in self.boxes:
            box.leave_queue()  # a box still waiting for its turn never starts
        if step < len(_STOP_STEPS):
            name = _STOP_STEPS[step].name
            self.terminal.say(f"lager: sent SIG{name} to every run; waiting for them to end "
                              f"(Ctrl-C again {'sends SIGTERM' if step == 0 else 'leaves'})")
            for box in self.boxes:
                box.send_control(_STOP_STEPS[step])
            return
        self.terminal.say("lager: left the runs; each box stops its run now that no client "
                          "is left")
        for box in self.boxes:
            box.leave()

    def _finish(self) -> int:
        rows = [b.row for b in self.boxes]
        if self.shared.gathered is not None:
            self.shared.gathered.print(self.terminal)
        if self.shared.request.detach:
            return self._detached(rows)
        for line in recap.render(rows, self.options.gather):
            self.terminal.say(line)
        code = recap.interrupted_code(rows) if self.signals else recap.exit_code(rows)
        if self.options.junit_xml and not self._write_junit(rows) and code == 0:
            code = 1  # CI reads the report: a missing one must not pass as green
        if self.options.as_json:
            self.terminal.write(1, (recap.as_json(self.fleet_id, rows) + "\n").encode())
        return code

    def _write_junit(self, rows: list[recap.Row]) -> bool:
        """After the recap, so a report that cannot be written loses neither the recap nor
        the scripts' exit code: one line instead."""
        from .junit import write_junit

        path = self.options.junit_xml or ""
        try:
            write_junit(path, self.fleet_id, self.fleet, self.options.script, rows,
                        {b.name: bytes(b.out.stderr_tail) for b in self.boxes},
                        self.options.output_dir)
        except OSError as exc:
            self.terminal.say(f"lager: --junit-xml {path}: not written: {exc.strerror or exc}")
            return False
        return True

    def _detached(self, rows: list[recap.Row]) -> int:
        """ISSUE-NOTES 15: the fleet id and the run ids on stdout."""
        lines = [f"fleet {self.fleet_id}"]
        lines += [f"{r.box}: run {r.run_id}" for r in rows if r.run_id]
        self.terminal.write(1, ("\n".join(lines) + "\n").encode())
        return recap.exit_code(rows)


def run_fleet(obj: LagerContext, fleet: Fleet, request: FleetRunRequest,
              options: FleetOptions) -> int:
    return FleetRun(obj, fleet, request, options).run()


def fleet_env_ok(env: dict[str, str]) -> None:
    """The fleet sets these per box; an --env of the same name would be silently lost."""
    from lager.errors import UsageError

    for name in (protocol.ENV_FLEET_INDEX,):
        if name in env:
            raise UsageError(f"--env {name}: the fleet sets it for each box")


