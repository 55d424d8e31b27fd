"""Runs: what the agent knows of each `lager python`, and the supervisor that keeps them.

A run lives in its monitor (box_agent/monitor/), not in the agent: the agent starts it, talks
to it, and after a restart finds it again (`adopt`). So a lost client, or a restarted agent,
loses no run, no pause and no output.
"""
from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lager import protocol
from lager.errors import NotPaused
from lager.protocol.link import SignalScript

from .breakpoints import BreakpointLink
from .monitor_link import MonitorLink
from .output_log import OutputLog
from .privsep import Identity
from .runlog import DEFAULT_LIMIT

__all__ = ["Caller", "Run", "RunSpec", "Supervisor"]

# SIGINT first so the script's `finally` blocks release instruments; then harder signals.
STOP_SEQUENCE = ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0))


@dataclass(frozen=True)
class Caller:
    """Who asked: the SSH user name and the box key that authenticated them."""

    user: str
    key_comment: str
    fingerprint: str
    # Who holds reservations (box_agent/reservations.py): `key:FINGERPRINT`, or for a
    # certificate `cert:KEY_ID:PRINCIPAL`. Set by the server from the login, never by a client.
    identity: str = ""

    def describe(self) -> str:
        return f"{self.key_comment or self.user} ({self.fingerprint})"

    def as_dict(self) -> dict[str, str]:
        return {"user": self.user, "key": self.key_comment, "fingerprint": self.fingerprint,
                "identity": self.holder()}

    def holder(self) -> str:
        """The identity reservations compare (a run recorded before it existed: its key)."""
        return self.identity or f"key:{self.fingerprint}"


@dataclass
class RunSpec:
    display_name: str  # the name the user ran, shown in banners and --list
    main: str  # path of the entry point inside the run dir
    args: list[str]
    env: dict[str, str]
    timeout: float
    detach: bool
    stop_on_disconnect: bool = False  # ssh's hang-up semantics, for CI (default: the run goes on)
    client_ref: str = ""  # the starting client's own tag, so it can find its run to reattach
    # When the agent puts the run's nets in their safe state (box_agent/safe_state.py).
    safe_state: str = protocol.SAFE_STATE_ON_FAILURE
    pause_on_failure: bool = False  # --pause-on-failure (the script gets it as an env switch)
    label: str = ""  # the client's word for who it is (CI job, user@host): shown, never trusted
    fleet: str = ""  # the fleet id (`f-3c9a`) of a fan-out that started it (issue 18)


@dataclass
class Run:
    id: str
    spec: RunSpec
    caller: Caller
    workdir: Path
    log: OutputLog
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None  # when its end was known (retention counts from it)
    log_limit: int = DEFAULT_LIMIT  # its output log's limit, given to its monitor at start
    monitor: MonitorLink | None = None  # None once the run has ended (or its monitor is lost)
    identity: Identity | None = None  # the uid the script runs as, under privilege separation
    script_pid: int | None = None
    link: BreakpointLink | None = None
    exit_status: int | None = None
    lost: bool = False  # its monitor died with no exit recorded: the exit code is unknown
    timed_out: bool = False
    stop_reason: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Task[None] | None = None
    serve_task: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        if self.lost:
            return "lost"
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
            "client_ref": self.spec.client_ref,
            "label": self.spec.label,  # the client's words (CI job, user@host); not trusted
            "fleet": self.spec.fleet,
            "pid": self.script_pid,
        }

    def record(self) -> dict[str, Any]:
        """What run.json keeps, so a later agent knows this run as this one does."""
        return {"id": self.id, "spec": asdict(self.spec), "caller": asdict(self.caller),
                "workdir": str(self.workdir), "started_at": self.started_at,
                "uid": self.identity.uid if self.identity else None,
                "log_limit": self.log_limit}

    @classmethod
    def from_record(cls, record: dict[str, Any], log: OutputLog) -> Run:
        return cls(str(record["id"]), RunSpec(**record["spec"]), Caller(**record["caller"]),
                   Path(record["workdir"]), log, started_at=float(record["started_at"]),
                   # A run recorded before limits were configurable had the default.
                   log_limit=int(record.get("log_limit") or DEFAULT_LIMIT))

    def paused_link(self) -> BreakpointLink:
        """The link of a paused run, or NotPaused saying what the run is doing instead."""
        if self.link is None or self.done.is_set():
            how = ("its monitor was lost, so its exit code is unknown" if self.lost
                   else f"it exited with code {self.exit_status}")
            raise NotPaused(f"run {protocol.short_id(self.id)} is not paused: {how}")
        if self.link.pause is None:
            raise NotPaused(f"run {protocol.short_id(self.id)} is not paused: it is running")
        return self.link

    def signal_group(self, sig: int) -> None:
        """Signal the script's group and everything else it started, through its monitor."""
        if self.monitor is not None and not self.done.is_set():
            self.monitor.send(SignalScript(sig=int(sig)))

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


# The supervisor needs the classes above; callers import it from here, as they always have.
from .supervisor import Supervisor  # noqa: E402
