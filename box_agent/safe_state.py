"""Safe state (issue 15): when a run ends in any way but a clean exit, the agent puts every net
the run had claimed into the safe state the bench file declares for it.

Where this sits in a run's end (ISSUE-NOTES 3): the script has exited and its monitor has swept
what it left behind, so no process of the run holds a claim any more; then this runs, then the
run counts as ended (its end message names what was done). The nets come from the run's claims
ledger (lager/bench/claims.py), which keeps nets the script had already closed: closing a net
leaves its output on. Each net is claimed like any other user would claim it, so a net some
other run holds meanwhile is left alone and reported, never yanked from under it.

The outcome is written to the run's monitor dir (`safe.json`) before the run counts as ended:
an agent that dies half way through applies it again at its next start (applying is
idempotent), and one that finds it there never applies it twice.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lager import protocol

log = logging.getLogger("lager-box.safe-state")
SAFE_FILE = "safe.json"


@dataclass
class SafeOutcome:
    reason: str  # why it was (or was not) applied
    applied: list[str] = field(default_factory=list)  # "supply2 off"
    failed: list[str] = field(default_factory=list)  # "supply3 not applied: busy (...)"

    def summary(self) -> str | None:
        """The end message's line: `safe state: supply2 off, battery1 off`; None when nothing
        was to be done."""
        if not self.applied and not self.failed:
            return None
        return "safe state: " + ", ".join(self.applied + self.failed)


def needed(policy: str, status: int | None, stopped: bool) -> str | None:
    """Why this end calls for the safe state, or None for a clean exit (left as it is)."""
    if policy == protocol.SAFE_STATE_ALWAYS:
        return "--safe-state always"
    if stopped:
        return "the run was stopped"
    if status is None:
        return "the run's end is unknown (its monitor was lost)"
    if status != 0:
        return f"the run exited with {status}"
    return None


def settle(run_id: str, policy: str, status: int | None, stopped: bool) -> SafeOutcome:
    """Decide and apply; the run's ledger goes either way. Blocking (instrument I/O): the
    agent runs it on a thread. Never raises: a failure is reported in the outcome."""
    from lager.bench import claims

    reason = needed(policy, status, stopped)
    try:
        if reason is None:
            return SafeOutcome("clean exit: the bench is left as the script left it")
        return apply_nets(claims.read_ledger(run_id), reason)
    finally:
        claims.drop_ledger(run_id)


def apply_nets(nets: dict[str, str], reason: str) -> SafeOutcome:
    """Put each net (name -> the resource the run claimed it on) in its declared safe state."""
    from lager.bench.kinds.safe import apply_nets as apply

    done, failed = apply(nets)
    return SafeOutcome(reason, done, failed)


def record(monitor_dir: Path, outcome: SafeOutcome) -> None:
    tmp = monitor_dir / (SAFE_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(asdict(outcome)))
        os.replace(tmp, monitor_dir / SAFE_FILE)
    except OSError as exc:
        log.warning("cannot record the safe state in %s: %s", monitor_dir, exc.strerror or exc)


def recorded(monitor_dir: Path) -> SafeOutcome | None:
    try:
        data: Any = json.loads((monitor_dir / SAFE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("reason"), str):
        return None
    return SafeOutcome(data["reason"], [str(x) for x in data.get("applied") or []],
                       [str(x) for x in data.get("failed") or []])
