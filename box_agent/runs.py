"""The run supervisor: one child `python -u` per `lager python`, its streams, its stop."""
from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lager import protocol
from lager.errors import AmbiguousRunId, LagerError, NotPaused, RunNotFound

from .breakpoints import BreakpointLink
from .output_log import STDERR, STDOUT, OutputLog, Viewer
from .privsep import Identity, RunIdentities, separation_off_reason

log = logging.getLogger("lager-box.runs")

# SIGINT first so the script's `finally` blocks release instruments; then harder signals.
STOP_SEQUENCE = ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0))
KEEP_FINISHED_RUNS = 100
MONITOR_START_TIMEOUT = 30.0
_READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Caller:
    """Who asked: the SSH user name and the box key that authenticated them."""

    user: str
    key_comment: str
    fingerprint: str

    def describe(self) -> str:
        return f"{self.key_comment or self.user} ({self.fingerprint})"

    def as_dict(self) -> dict[str, str]:
        return {"user": self.user, "key": self.key_comment, "fingerprint": self.fingerprint}


@dataclass
class RunSpec:
    display_name: str  # the name the user ran, shown in banners and --list
    main: str  # path of the entry point inside the run dir
    args: list[str]
    env: dict[str, str]
    timeout: float
    detach: bool


@dataclass
class Run:
    id: str
    spec: RunSpec
    caller: Caller
    workdir: Path
    started_at: float = field(default_factory=time.time)
    log: OutputLog = field(default_factory=OutputLog)
    proc: asyncio.subprocess.Process | None = None  # the run's monitor (box_agent/monitor.py)
    ctl: socket.socket | None = None  # our end of the monitor's control socket
    identity: Identity | None = None  # the uid the script runs as, under privilege separation
    script_pid: int | None = None
    link: BreakpointLink | None = None
    exit_status: int | None = None
    timed_out: bool = False
    stop_reason: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Task[None] | None = None
    supervisor_task: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        if self.exit_status is not None:
            return "exited"
        if self.link is not None and self.link.pause is not None:
            return "paused"
        return "running"

    def row(self) -> dict[str, Any]:
        pause = self.link.pause if self.link else None
        return {
            "id": self.id,
            "short_id": protocol.short_id(self.id),
            "script": self.spec.display_name,
            "state": self.state,
            "exit_code": self.exit_status,
            "timed_out": self.timed_out,
            "pause": pause.as_dict() if pause else None,
            "last_resume": self.link.last_resume if self.link else None,
            "started_by": self.caller.as_dict(),
            "started_at": self.started_at,
            "detached": self.spec.detach,
            "pid": self.script_pid,
        }

    def paused_link(self) -> BreakpointLink:
        """The link of a paused run, or NotPaused saying what the run is doing instead."""
        if self.link is None or self.done.is_set():
            raise NotPaused(f"run {protocol.short_id(self.id)} is not paused: it exited "
                            f"with code {self.exit_status}")
        if self.link.pause is None:
            raise NotPaused(f"run {protocol.short_id(self.id)} is not paused: it is running")
        return self.link

    def signal_group(self, sig: int) -> None:
        """Signal the script's group and everything else it started, through its monitor."""
        if self.ctl is None or self.exit_status is not None:
            return
        try:
            self.ctl.send(protocol.encode_msg({"op": "signal", "sig": int(sig)}))
        except OSError:
            pass  # the monitor is gone; the run is ending on its own

    def stop(self, reason: str) -> asyncio.Task[None]:
        """The gentle stop: SIGINT, grace, SIGTERM, SIGKILL. Idempotent."""
        if self._stopping is None:
            self.stop_reason = reason
            self._stopping = asyncio.ensure_future(self._stop_sequence())
        return self._stopping

    async def _stop_sequence(self) -> None:
        for sig, grace in STOP_SEQUENCE:
            if self.done.is_set():
                return
            self.signal_group(sig)
            try:
                await asyncio.wait_for(self.done.wait(), grace)
                return
            except TimeoutError:
                continue


class Supervisor:
    def __init__(self, runs_dir: Path, base_env: dict[str, str], run_as: str | None = None,
                 run_groups: Sequence[str] = ()) -> None:
        self.runs_dir = runs_dir
        self.base_env = base_env
        self.runs: dict[str, Run] = {}
        self.identities: RunIdentities | None = None
        if run_as:
            self.identities = RunIdentities(run_as, run_groups)
            shared = [Path(base_env[k]) for k in (protocol.ENV_BENCH_CONFIG,) if k in base_env]
            claims = Path(base_env.get(protocol.ENV_CLAIMS_DIR) or runs_dir.parent / "claims")
            self.identities.open_up(runs_dir.parent, runs_dir, claims, shared)
        else:
            log.warning("%s", separation_off_reason())

    def new_workdir(self) -> tuple[str, Path]:
        run_id = protocol.new_run_id()
        workdir = self.runs_dir / run_id
        workdir.mkdir(mode=0o700)
        return run_id, workdir

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

    async def start(self, run_id: str, workdir: Path, spec: RunSpec, caller: Caller,
                    viewer: Viewer | None = None) -> Run:
        run = Run(run_id, spec, caller, workdir)
        if viewer is not None:
            run.log.attach(viewer, with_backlog=False)
        agent_end, script_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ctl, monitor_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(self.base_env)
        env.update({
            protocol.ENV_RUN_ID: run_id,
            protocol.ENV_AGENT_FD: str(script_end.fileno()),
            protocol.ENV_SCRIPT_NAME: spec.display_name,
            # builtin breakpoint() becomes lager.pause(); a user's PYTHONBREAKPOINT=0 still wins
            "PYTHONBREAKPOINT": "lager.breakpoint_hook",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(spec.env)
        monitor_dir = self.monitor_dir(run_id)
        monitor_dir.mkdir(mode=0o700, exist_ok=True)
        identity = "-"
        if self.identities is not None:
            run.identity = self.identities.allocate()
            self.identities.give(run.identity, workdir)
            uid, gid = run.identity.uid, run.identity.gid
            identity = f"{uid}:{gid}:" + ",".join(map(str, run.identity.groups))
            env.update({"HOME": str(workdir), "USER": run.identity.user,
                        "LOGNAME": run.identity.user})
        try:
            run.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "box_agent.monitor", str(monitor_end.fileno()),
                str(monitor_dir), str(script_end.fileno()), identity, "--",
                sys.executable, "-u", spec.main, *spec.args,
                cwd=workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, pass_fds=(script_end.fileno(), monitor_end.fileno()),
                limit=_READ_CHUNK,
            )
            run.script_pid = await self._monitor_started(ctl)
        except (OSError, LagerError) as exc:
            agent_end.close()
            ctl.close()
            if run.proc is not None and run.proc.returncode is None:
                run.proc.kill()
            self._release(run)
            message = str(exc) if isinstance(exc, LagerError) else f"cannot start the script: {exc}"
            raise LagerError(message) from None
        finally:
            script_end.close()
            monitor_end.close()
        run.ctl = ctl
        run.link = BreakpointLink(run_id, agent_end)
        self.runs[run_id] = run
        self._prune()
        run.supervisor_task = asyncio.ensure_future(self._supervise(run))
        log.info("run %s started by %s: %s", run_id, caller.describe(), spec.display_name)
        return run

    def monitor_dir(self, run_id: str) -> Path:
        # Beside the run dir, not in it: the script's cwd holds only what the client sent.
        return self.runs_dir / f"{run_id}.monitor"

    @staticmethod
    async def _monitor_started(ctl: socket.socket) -> int:
        """The script's pid, once the monitor has it running."""
        ctl.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(ctl, 65536), MONITOR_START_TIMEOUT)
            msg = protocol.decode_msg(data)
        except (TimeoutError, ValueError, OSError):
            raise LagerError("cannot start the script: its monitor did not answer") from None
        if msg.get("op") != "started":
            raise LagerError(str(msg.get("error") or "cannot start the script"))
        return int(msg["pid"])

    async def _supervise(self, run: Run) -> None:
        assert run.proc is not None and run.link is not None
        proc = run.proc
        pumps = [asyncio.ensure_future(self._pump(run, proc.stdout, STDOUT)),
                 asyncio.ensure_future(self._pump(run, proc.stderr, STDERR))]
        link_task = asyncio.ensure_future(run.link.serve())
        timer = None
        if run.spec.timeout > 0:
            timer = asyncio.get_running_loop().call_later(run.spec.timeout, self._time_out, run)
        # The monitor exits once the script has exited and what it left behind is swept; it
        # is the only writer of these pipes, so they reach EOF with every byte delivered.
        returncode = await proc.wait()
        await asyncio.gather(*pumps)
        if timer:
            timer.cancel()
        run.link.close()
        link_task.cancel()
        if run.ctl is not None:
            run.ctl.close()
            run.ctl = None
        run.exit_status = protocol.EXIT_TIMED_OUT if run.timed_out else (
            128 - returncode if returncode < 0 else returncode)
        self._release(run)
        run.done.set()
        log.info("run %s exited with %s%s", run.id, run.exit_status,
                 f" (stopped: {run.stop_reason})" if run.stop_reason else "")

    def _release(self, run: Run) -> None:
        if self.identities is not None and run.identity is not None:
            self.identities.release(run.identity)

    def _time_out(self, run: Run) -> None:
        run.timed_out = True
        run.stop("timeout")

    @staticmethod
    async def _pump(run: Run, pipe: asyncio.StreamReader | None, stream: int) -> None:
        assert pipe is not None
        while True:
            data = await pipe.read(_READ_CHUNK)
            if not data:
                return
            await run.log.feed(stream, data)

    def _prune(self) -> None:
        finished = [r for r in self.runs.values() if r.done.is_set()]
        for run in finished[: max(0, len(finished) - KEEP_FINISHED_RUNS)]:
            del self.runs[run.id]
            shutil.rmtree(run.workdir, ignore_errors=True)
            shutil.rmtree(self.monitor_dir(run.id), ignore_errors=True)

    async def shutdown(self) -> None:
        """SIGTERM to the agent: every live run gets the gentle stop; no orphans."""
        live = [r for r in self.runs.values() if not r.done.is_set()]
        for run in live:
            run.stop("agent shutting down")
        if live:
            await asyncio.wait([asyncio.ensure_future(r.done.wait()) for r in live], timeout=15)
