"""The supervisor: starts runs under their monitors, finds them again after a restart, and
keeps each one's state (pause, output, exit) in step with what its monitor says."""
from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lager import protocol
from lager.errors import AmbiguousRunId, LagerError, RunNotFound
from lager.protocol.link import (
    FromScript,
    LinkClosed,
    MonitorExit,
    MonitorHello,
    MonitorOutput,
    ToScript,
    Window,
)

from . import safe_state
from .breakpoints import BreakpointLink
from .monitor.loop import window_for
from .monitor_build import monitor_program
from .monitor_link import RUN_FILE, STATUS_FILE, MonitorLink, read_json, write_json
from .output_log import OutputLog, Viewer
from .privsep import RunIdentities, separation_off_reason
from .run_limits import RunLimits

if TYPE_CHECKING:
    from .runs import Caller, Run, RunSpec

log = logging.getLogger("lager-box.runs")

# After a graceful restart or --replace, a run whose client was attached holds its output at
# where that client was (plus the usual window) until a client attaches again, for at most
# this long. Without it the next agent, with no viewer yet, lets a full-speed script run ahead
# while the client reconnects, and the log's limit drops what the client has not seen.
HOLD_FOR_VIEWERS = 20.0
HOLD_FILE = "hold.json"
_MONITOR_SUFFIX = ".monitor"


class Supervisor:
    def __init__(self, runs_dir: Path, base_env: dict[str, str], run_as: str | None = None,
                 run_groups: Sequence[str] = (), limits: RunLimits | None = None) -> None:
        self.runs_dir = runs_dir
        # Each run's log limit, and how long and how many finished runs stay listable.
        self.limits = limits or RunLimits()
        self.base_env = base_env
        self.runs: dict[str, Run] = {}
        self.safe_notes: dict[str, str | None] = {}  # run id -> what the safe state did
        self.identities: RunIdentities | None = None
        self.closing = False
        self.on_end: Callable[[Run], None] | None = None  # told once a run has fully ended
        self.holds: dict[str, int] = {}  # run id -> log offset its output is held at
        self._adopting = False  # adopt() prunes once at its end, not once per run it finds
        from .pause_watch import PauseWatch

        self.pause_watch = PauseWatch(self)  # the `pauses` subsystem's watchers
        monitor_program()  # built now, if it must be, rather than while a client waits
        if run_as:
            self.identities = RunIdentities(run_as, run_groups)
            shared = [Path(base_env[k]) for k in (protocol.ENV_BENCH_CONFIG,) if k in base_env]
            claims = Path(base_env.get(protocol.ENV_CLAIMS_DIR) or runs_dir.parent / "claims")
            self.identities.open_up(runs_dir.parent, runs_dir, claims, shared)
            if protocol.ENV_SAVED_NETS in base_env:  # Net.save_local_net: every run writes it
                self.identities.share_dir(Path(base_env[protocol.ENV_SAVED_NETS]).parent)
        else:
            log.warning("%s", separation_off_reason())

    # -- finding runs ----------------------------------------------------------------------

    def new_workdir(self) -> tuple[str, Path]:
        run_id = protocol.new_run_id()
        workdir = self.runs_dir / run_id
        workdir.mkdir(mode=0o700)
        return run_id, workdir

    def monitor_dir(self, run_id: str) -> Path:
        # Beside the run dir, not in it: the script's cwd holds only what the client sent.
        return self.runs_dir / f"{run_id}{_MONITOR_SUFFIX}"

    def find(self, query: str) -> Run:
        """Resolve a full id, a unique prefix or the banner's short form."""
        matches = [r for r in self.runs.values() if protocol.id_matches(query, r.id)]
        shown = query.strip()[:40].encode("ascii", "backslashreplace").decode()
        if not matches:
            raise RunNotFound(f"no run with id {shown!r} on this box (see `lager python --list`)")
        if len(matches) > 1:
            ids = ", ".join(sorted(protocol.short_id(r.id) for r in matches))
            raise AmbiguousRunId(f"id {shown!r} is ambiguous: it matches {ids}; give more of it")
        return matches[0]

    # -- starting --------------------------------------------------------------------------

    async def start(self, run_id: str, workdir: Path, spec: RunSpec, caller: Caller,
                    viewer: Viewer | None = None) -> Run:
        from .runs import Run

        monitor_dir = self.monitor_dir(run_id)
        monitor_dir.mkdir(mode=0o700, exist_ok=True)
        run = Run(run_id, spec, caller, workdir, OutputLog(monitor_dir),
                  log_limit=self.limits.log_limit)
        if viewer is not None:
            run.log.attach(viewer, with_backlog=False)
        env = dict(self.base_env)
        env.update({
            protocol.ENV_RUN_ID: run_id,
            protocol.ENV_SCRIPT_NAME: spec.display_name,
            # builtin breakpoint() becomes lager.pause(); a user's PYTHONBREAKPOINT=0 still wins
            "PYTHONBREAKPOINT": "lager.breakpoint_hook",
            "PYTHONUNBUFFERED": "1",
        })
        identity = "-"
        if self.identities is not None:
            run.identity = self.identities.allocate()
            self.identities.give(run.identity, workdir)
            uid, gid = run.identity.uid, run.identity.gid
            identity = f"{uid}:{gid}:" + ",".join(map(str, run.identity.groups))
            env.update({"HOME": str(workdir), "USER": run.identity.user,
                        "LOGNAME": run.identity.user})
        env.update(spec.env)
        write_json(monitor_dir / RUN_FILE, run.record())
        try:
            run.monitor, hello = await MonitorLink.spawn(
                monitor_dir, workdir, identity, [sys.executable, "-u", spec.main, *spec.args],
                env, run.log_limit)
        except LagerError:
            self._release(run)
            shutil.rmtree(monitor_dir, ignore_errors=True)
            raise
        self._track(run, hello)
        log.info("run %s started by %s: %s", run_id, caller.describe(), spec.display_name)
        return run

    def _track(self, run: Run, hello: MonitorHello) -> None:
        assert run.monitor is not None
        monitor = run.monitor
        run.link = BreakpointLink(run.id, lambda body, fds: monitor.send(
            ToScript(body=body), fds))
        run.link.on_change = self.pause_watch.changed
        self._on_hello(run, hello)
        self.runs[run.id] = run
        self._prune()
        run.serve_task = asyncio.ensure_future(self._serve(run))
        if run.spec.timeout > 0:
            left = run.spec.timeout - (time.time() - run.started_at)
            asyncio.get_running_loop().call_later(max(0.0, left), self._time_out, run)

    def _on_hello(self, run: Run, hello: MonitorHello) -> None:
        assert run.link is not None and run.monitor is not None
        run.script_pid = hello.pid
        run.log.end = max(run.log.end, hello.end)
        # A new agent knows which pauses were resumed (a stale `ID#N` is "already resumed").
        run.link.resumed_seq = max(run.link.resumed_seq, hello.resumed)
        if hello.pause is not None:
            run.link.handle(hello.pause, hello.paused_at, hello.banner_at)
        run.monitor.send(Window(until=self._window(run), seen=run.log.end))

    def _window(self, run: Run) -> int:
        """How far the monitor may log: a window (under half the run's log limit) past what
        the viewers have, or past where a held run's client was."""
        return self.holds.get(run.id, run.log.end) + window_for(run.log_limit)

    # -- one run's messages ----------------------------------------------------------------

    async def _serve(self, run: Run) -> None:
        """Every failure here ends the run's tracking with a reason; followers never hang."""
        status: int | None = None
        try:
            status = await self._follow_monitor(run)
        except Exception:
            log.exception("run %s: lost track of its monitor", run.id)
        await self._end(run, status)

    async def _end(self, run: Run, status: int | None) -> None:
        """The script has exited and its monitor has swept its leftovers: the safe state,
        then the run counts as ended (ISSUE-NOTES 3)."""
        if self.closing:  # an agent going away leaves its runs to the next one
            return
        if status is None:
            # The monitor went without its last word: what it logged after its last report
            # is on disk all the same, so the viewers (and a later --reattach) get it too.
            from .runlog import log_end

            on_disk = await asyncio.to_thread(log_end, self.monitor_dir(run.id))
            await run.log.feed_to(on_disk)
            status = self._recorded_status(run)
        stopped = run.stop_reason is not None or run.timed_out
        try:
            outcome = await asyncio.to_thread(safe_state.settle, run.id, run.spec.safe_state,
                                              status, stopped)
        except Exception as exc:  # the run must still end; the log says why
            log.exception("run %s: applying the safe state failed", run.id)
            outcome = safe_state.SafeOutcome("failed", failed=[f"not applied: {exc}"])
        if self.closing:
            return  # the next agent finds no safe.json and applies it again: idempotent
        self._keep_safe_outcome(run, outcome)
        self._finish(run, status)

    async def _follow_monitor(self, run: Run) -> int | None:
        assert run.monitor is not None and run.link is not None
        while True:
            msg = await run.monitor.receive()
            if msg is None:
                return None
            if isinstance(msg, MonitorOutput):
                await run.log.feed_to(msg.end)
                run.monitor.send_window(self._window(run), run.log.end)
            elif isinstance(msg, FromScript):
                notice = run.link.handle(msg.body, msg.at or time.time(), msg.banner_at)
                if notice is not None:
                    # Before the banner's bytes: the monitor tells us of them only after this.
                    await run.log.announce(notice)
            elif isinstance(msg, LinkClosed):
                run.link.script_closed()
            elif isinstance(msg, MonitorExit):
                await run.log.feed_to(msg.end)
                return msg.status

    def _recorded_status(self, run: Run) -> int | None:
        """The monitor went without a word: it may have written its status."""
        recorded = read_json(self.monitor_dir(run.id) / STATUS_FILE)
        return int(recorded["status"]) if recorded else None

    def _recorded_end(self, run: Run) -> float:
        """When the script exited, as its monitor wrote it: a run that ended while no agent
        ran, or that an agent found later, is kept from then, not from when we learnt it."""
        recorded = read_json(self.monitor_dir(run.id) / STATUS_FILE)
        ended = recorded.get("ended_at") if recorded else None
        return float(ended) if isinstance(ended, int | float) else time.time()

    def _keep_safe_outcome(self, run: Run, outcome: safe_state.SafeOutcome) -> None:
        safe_state.record(self.monitor_dir(run.id), outcome)
        self.safe_notes[run.id] = outcome.summary()

    def safe_state_note(self, run_id: str) -> str | None:
        """What the safe state did at the run's end (`safe state: supply2 off`), if anything;
        for a run an earlier agent ended, from the run's record."""
        if run_id not in self.safe_notes:
            outcome = safe_state.recorded(self.monitor_dir(run_id))
            self.safe_notes[run_id] = outcome.summary() if outcome else None
        return self.safe_notes[run_id]

    def _finish(self, run: Run, status: int | None) -> None:
        if status is None:
            status = self._recorded_status(run)
        if run.monitor is not None:
            run.monitor.close()
            run.monitor = None
        if run.link is not None:
            run.link.close()
        run.lost = status is None
        run.ended_at = self._recorded_end(run)
        run.exit_status = None if status is None else (
            protocol.EXIT_TIMED_OUT if run.timed_out else status)
        self._release(run)
        run.done.set()
        if not self._adopting:
            self._prune()
        # It leaves --list once its keep time is up (counted from its end, which for a run
        # found after a restart may be long past), whether or not anything else happens.
        left = run.ended_at + self.limits.keep_finished - time.time()
        asyncio.get_running_loop().call_later(max(0.0, left) + 0.1, self._prune)
        if self.on_end is not None:  # last, after the safe state (ISSUE-NOTES 3)
            self.on_end(run)
        note = self.safe_state_note(run.id)
        log.info("run %s %s%s%s", run.id,
                 "lost its monitor; its exit code is unknown" if run.lost
                 else f"exited with {run.exit_status}",
                 f" (stopped: {run.stop_reason})" if run.stop_reason else "",
                 f"; {note}" if note else "")

    def _release(self, run: Run) -> None:
        if self.identities is not None and run.identity is not None:
            self.identities.release(run.identity)

    def _time_out(self, run: Run) -> None:
        if not run.done.is_set():
            run.timed_out = True
            run.stop("timeout")

    # -- after a restart -------------------------------------------------------------------

    def adopt(self) -> int:
        """Take back every run an earlier agent left: live ones through their monitors,
        finished ones from their records. Returns how many runs were found."""
        self._adopting = True
        try:
            found = self._adopt_each()
        finally:
            self._adopting = False
        self._prune()
        return found

    def _adopt_each(self) -> int:
        from .runlog import log_end
        from .runs import Run

        found = 0
        for monitor_dir in sorted(self.runs_dir.glob(f"*{_MONITOR_SUFFIX}")):
            record = read_json(monitor_dir / RUN_FILE)
            if record is None:
                log.warning("runs: %s has no readable run record; removing it", monitor_dir.name)
                self._remove(monitor_dir.name[: -len(_MONITOR_SUFFIX)])
                continue
            run = Run.from_record(record, OutputLog(monitor_dir))
            self._take_hold(run, monitor_dir)
            if self.identities is not None and record.get("uid") is not None:
                run.identity = self.identities.adopt(int(record["uid"]))
            monitor = MonitorLink.connect(monitor_dir)
            if monitor is not None:
                run.monitor = monitor
                asyncio.ensure_future(self._adopt_live(run))  # noqa: RUF006 - tracked via run
            else:
                status = read_json(monitor_dir / STATUS_FILE)
                # No status: its monitor died without a word (a box reboot, a kill). All it
                # wrote is still on disk, up to the last whole record: a reattach gets it.
                run.log.end = int(status["end"]) if status else log_end(monitor_dir)
                self.runs[run.id] = run
                code = int(status["status"]) if status else None
                if safe_state.recorded(monitor_dir) is None:
                    # It ended while no agent ran (or one died before it was done): the safe
                    # state is due now, before any new run can claim its nets. No stop was
                    # asked of it (a stop needs an agent), so its status alone decides.
                    self._keep_safe_outcome(run, safe_state.settle(
                        run.id, run.spec.safe_state, code, stopped=False))
                self._finish(run, code)
            found += 1
        return found

    async def _adopt_live(self, run: Run) -> None:
        assert run.monitor is not None
        hello = await run.monitor.receive()
        if not isinstance(hello, MonitorHello):
            self.runs[run.id] = run
            await self._end(run, None)
            return
        self._track(run, hello)
        log.info("run %s adopted: %s", run.id, run.state)

    # -- holding output for a client across a restart ---------------------------------------

    def hold_for_viewers(self) -> None:
        """Before this agent lets its runs go gracefully (SIGTERM, --replace): each run with a
        client attached is held at that client's offset for the next agent (HOLD_FOR_VIEWERS)."""
        if self.closing:  # handed over: the holds were written before, and may be taken
            return
        until = time.time() + HOLD_FOR_VIEWERS
        for run in self.runs.values():
            if not run.done.is_set() and run.log.viewers:
                write_json(self.monitor_dir(run.id) / HOLD_FILE,
                           {"at": run.log.end, "until": until})

    def _take_hold(self, run: Run, monitor_dir: Path) -> None:
        hold = read_json(monitor_dir / HOLD_FILE)
        (monitor_dir / HOLD_FILE).unlink(missing_ok=True)
        if hold is None or float(hold.get("until") or 0) <= time.time():
            return
        self.holds[run.id] = int(hold["at"])
        asyncio.ensure_future(self._release_hold(run, float(hold["until"])))  # noqa: RUF006

    async def _release_hold(self, run: Run, until: float) -> None:
        """Once a client attaches (or the hold runs out) the output flows as usual."""
        while time.time() < until and not run.log.viewers and not run.done.is_set() \
                and not self.closing:
            await asyncio.sleep(0.05)
        self.holds.pop(run.id, None)
        if run.monitor is not None:
            run.monitor.send(Window(until=self._window(run), seen=run.log.end))

    # -- housekeeping ----------------------------------------------------------------------

    def _prune(self) -> None:
        """Finished runs past the keep time (from their end), and the oldest past the count,
        go with their dirs."""
        if self.closing:  # handed over: the runs are the next agent's to keep or drop
            return
        finished = sorted((r for r in self.runs.values() if r.done.is_set()),
                          key=lambda r: (r.ended_at or r.started_at, r.started_at))
        too_old = time.time() - self.limits.keep_finished
        for i, run in enumerate(finished):
            if i < len(finished) - self.limits.keep_finished_runs \
                    or (run.ended_at or run.started_at) < too_old:
                del self.runs[run.id]
                self._remove(run.id)

    def _remove(self, run_id: str) -> None:
        self.safe_notes.pop(run_id, None)
        shutil.rmtree(self.runs_dir / run_id, ignore_errors=True)
        shutil.rmtree(self.monitor_dir(run_id), ignore_errors=True)

    async def shutdown(self) -> None:
        """The agent is going (SIGTERM, an upgrade): runs stay with their monitors, and the
        next agent takes them back. Only our ends of their sockets close."""
        self.hold_for_viewers()
        self.closing = True
        for run in self.runs.values():
            if run.serve_task is not None:
                run.serve_task.cancel()
            if run.monitor is not None:
                run.monitor.close()
                run.monitor = None
