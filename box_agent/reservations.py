"""Shared boxes: who holds this box, and the one question every subsystem asks of it: may this
identity do this now?

The holder is the identity that logged in (the key's fingerprint, or a certificate's key id
and principal; `Caller.holder()`), never what a client says: a client's label (its CI job,
user@host) is shown beside it and trusted for nothing.

A box is held by
- its live runs: each holds it for its whole life. Nothing is stored for them: the holds are
  read off the supervisor's runs (and, just after a restart, off the records of runs still
  being adopted), so a run that ends frees the box at once and no hold can outlive its run;
- a hand-made lock (`lager boxes lock`), kept in the state dir and written atomically;
- a queue grant or a starting run, for the moments between the decision and the run existing.

Waiting is a first-come queue the box keeps; a waiter is woken when something changes, never
polls, and is granted the box only once no run at all is left (CI jobs sharing one key run one
at a time) and no one else's lock is in the way.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lager import protocol
from lager.errors import LagerError, Reserved
from lager.protocol.reservation import (
    ForcedUnlock,
    Hold,
    Place,
    Queued,
    Refusal,
    ReservationStatus,
    when,
)

from . import queue_places as places
from . import reservation_state as state
from .monitor_link import RUN_FILE, read_json
from .queue_places import KeptPlaces
from .reservation_state import AUDIT_FILE, KEEP_FORCED, STATE_FILE

if TYPE_CHECKING:
    from .runs import Caller, Run, Supervisor

log = logging.getLogger("lager-box.reservations")

MAX_LABEL = 120
MAX_REASON = 200

READ, CHANGE, RUN, OPERATE = "read", "change", "run", "operate"
# What another identity did to a run, as the run's own clients are told it.
_DOING = {"console": "opened a console on run {}", "continue": "resumed run {} (--continue)",
          "kill": "sent --kill to run {}", "reattach": "is watching run {} (--reattach)"}


@runtime_checkable
class Told(Protocol):
    """A run's viewer that can take a line of the box's own (subsystems/channel_viewer.py)."""

    def tell(self, line: str) -> None: ...


def clean_text(value: Any, limit: int, what: str) -> str:
    """A label or reason from a client: shown in other people's terminals, so printable only."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LagerError(f"malformed request: {what} must be a string")
    text = "".join(c if c.isprintable() else " " for c in value).strip()
    return text[:limit]


def held_by(holds: list[Hold]) -> str:
    """Who holds the box, in one line of a terminal's width or so: the first hold, and how
    many more (`lager boxes status` lists them all)."""
    first = holds[0]
    more = f" (+{len(holds) - 1} more)" if len(holds) > 1 else ""
    return f"held by {first.who()} for {first.what()} since {when(first.since)}{more}"


def _hold_of(caller: Caller, label: str, since: float, kind: str, **extra: Any) -> Hold:
    return Hold(caller.holder(), caller.key_comment or caller.user, caller.fingerprint, label,
                since, kind, **extra)


@dataclass
class Waiter:
    caller: Caller
    label: str
    since: float = field(default_factory=time.time)
    token: str = field(default_factory=lambda: secrets.token_hex(8))  # its place, after a restart


class Reservations:
    def __init__(self, root: Path, supervisor: Supervisor, enabled: bool = True) -> None:
        self.enabled = enabled
        self.supervisor = supervisor
        self.path = root / STATE_FILE
        self.audit_path = root / AUDIT_FILE
        self.lock: Hold | None = None
        self.forced: list[ForcedUnlock] = []
        self.queue: list[Waiter] = []
        self.starting: dict[str, Hold] = {}  # token -> a grant or a run being started
        self.adopting: dict[str, Hold] = {}  # run id -> its record's hold, until adopted
        self._changed = asyncio.Event()
        self.kept = KeptPlaces(None)  # the places of the previous agent's waiters
        self.closing = False  # the agent is going: its waiters' places stay in the state dir
        self._load()

    # -- the state dir ---------------------------------------------------------------------

    def _load(self) -> None:
        saved = state.load(self.path)
        self.lock, self.forced, self.kept = saved.lock, saved.forced, KeptPlaces(saved.queue)

    def _save(self) -> None:
        state.save(self.path, self.lock, self.forced,
                   [*self.kept.records(), *(places.record(w.token, w.caller.holder(), w.since)
                                            for w in self.queue)])

    def audit(self, event: str, caller: Caller, **details: Any) -> None:
        record = {"at": when(time.time()), "event": event, "by": caller.holder(),
                  "name": caller.key_comment or caller.user, "user": caller.user, **details}
        log.warning("audit: %s by %s: %s", event, caller.describe(),
                    json.dumps(details, sort_keys=True))
        state.append_audit(self.audit_path, record)

    # -- who holds the box -----------------------------------------------------------------

    def expect_adopted(self) -> None:
        """Right after `Supervisor.adopt()`: the runs whose monitors are still being reached
        hold the box from their records until the supervisor has them."""
        for monitor_dir in self.supervisor.runs_dir.glob("*.monitor"):
            record = read_json(monitor_dir / RUN_FILE)
            if not record or record.get("id") in self.supervisor.runs:
                continue
            from .runs import Caller

            caller = Caller(**record["caller"])
            self.adopting[str(record["id"])] = _hold_of(
                caller, str(record.get("spec", {}).get("label") or ""),
                float(record.get("started_at") or 0), "run", run_id=str(record["id"]),
                script=str(record.get("spec", {}).get("display_name") or ""))

    def holds(self) -> list[Hold]:
        found: list[Hold] = []
        if self.lock is not None:
            found.append(self.lock)
        for run in sorted(self.supervisor.runs.values(), key=lambda r: r.started_at):
            if not run.done.is_set():
                pause = run.link.pause if run.link else None
                found.append(_hold_of(run.caller, run.spec.label, run.started_at, "run",
                                      run_id=run.id, script=run.spec.display_name,
                                      paused=pause.label if pause else None))
        for run_id, hold in list(self.adopting.items()):
            if run_id in self.supervisor.runs:
                del self.adopting[run_id]  # the supervisor has it now: its run is the truth
            else:
                found.append(hold)
        found.extend(self.starting.values())
        return found

    def _others(self, caller: Caller) -> list[Hold]:
        me = caller.holder()
        return [h for h in self.holds() if h.identity != me]

    # -- the one question ------------------------------------------------------------------

    def check(self, caller: Caller, action: str) -> None:
        """May this identity do this now? Reads and the run commands (continue, console,
        kill, reattach) always; changes and new runs only while no one else holds the box."""
        if not self.enabled or action in (READ, OPERATE):
            return
        others = self._others(caller)
        if others:
            raise self._refusal(others, "new runs" if action == RUN else "changes")

    def _refusal(self, others: list[Hold], what: str) -> Reserved:
        return Reserved(
            f"box reserved: {held_by(others)}; {what} from other keys are refused. Queue with "
            "--wait SECONDS (or CI=true); `lager boxes status` shows who holds it",
            Refusal(reserved=others).to_dict())

    def operated(self, caller: Caller, what: str, run: Run) -> None:
        """continue, console, kill and reattach stay open to every key holder; when someone
        else's run is the target, the audit says who, and so does a line to every client
        following the run (ISSUE-NOTES 18: the holder's terminal is told)."""
        if caller.holder() == run.caller.holder():
            return
        if self.enabled:
            self.audit(what, caller, run=run.id, owner=run.caller.holder())
        doing = _DOING.get(what, what + " on run {}").format(protocol.short_id(run.id))
        line = f"{caller.describe()} {doing}"
        for viewer in list(run.log.viewers):
            if isinstance(viewer, Told):
                viewer.tell(line)

    # -- runs ------------------------------------------------------------------------------

    def begin_run(self, caller: Caller, label: str, ticket: str | None) -> str:
        """Decide a new run, and hold the box for it until it exists: a token for
        `run_started` (or `run_failed`). A ticket is a queue grant, which alone decides."""
        token = secrets.token_hex(8)
        if ticket is not None:
            grant = self.starting.pop(ticket, None) if self.enabled else None
            if self.enabled and (grant is None or grant.identity != caller.holder()):
                raise LagerError("that queue ticket is not (or no longer) yours; run again")
        else:
            self.check(caller, RUN)
        if self.enabled:
            self.starting[token] = _hold_of(caller, label, time.time(), "starting")
        return token

    def run_started(self, token: str) -> None:
        """The run is in the supervisor now and holds the box itself."""
        self.starting.pop(token, None)

    def run_failed(self, token: str) -> None:
        if self.starting.pop(token, None) is not None:
            self.changed()

    def run_ended(self, _run: Run) -> None:
        """The supervisor's hook: the run has ended, its leftovers are swept and its safe
        state applied (ISSUE-NOTES 3); the next waiter gets its turn."""
        self.changed()

    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the queue -------------------------------------------------------------------------

    def _free_for(self, waiter: Waiter) -> bool:
        """A waiter's turn: no run at all (its own identity's included), nothing starting,
        and no lock but its own identity's."""
        me = waiter.caller.holder()
        return all(h.kind == "lock" and h.identity == me for h in self.holds()) and \
            not self.kept.ahead_of(waiter.since)

    async def wait_turn(self, caller: Caller, label: str, seconds: float,
                        show: Callable[[Place], None], token: str | None = None) -> str:
        """Queue until it is this caller's turn; the ticket its run presents. `show` gets the
        place each time it changes. Cancelled (the client went): it leaves the queue.
        `token`: the place it had before the agent restarted, which it takes back."""
        waiter = Waiter(caller, label)
        since = self.kept.take(token, caller.holder())
        if since is not None:
            waiter = Waiter(caller, label, since, str(token))
        # First come, first served: by when each waiter first came.
        at = next((i for i, w in enumerate(self.queue) if w.since > waiter.since),
                  len(self.queue))
        self.queue.insert(at, waiter)
        self._save_queue()
        deadline = time.monotonic() + seconds
        shown: Place | None = None
        try:
            while True:
                if not self.enabled or (self.queue[0] is waiter and self._free_for(waiter)):
                    ticket = secrets.token_hex(8)
                    if self.enabled:
                        self.starting[ticket] = _hold_of(caller, label, time.time(),
                                                         "starting")
                    return ticket
                place = self._place(waiter)
                if place != shown:
                    show(place)
                    shown = place
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout(seconds)
                kept = self.kept.next_expiry()  # a place given up may make this one next
                try:
                    await asyncio.wait_for(self._changed.wait(),
                                           left if kept is None else min(left, kept + 0.01))
                except TimeoutError:
                    continue
        finally:
            self.queue.remove(waiter)
            if not self.closing:  # a waiter dropped by a closing agent keeps its place
                self._save_queue()
            self.changed()  # the one behind may be first now

    def keep_places(self) -> None:
        """The agent is stopping (or handing over): the queue as it stands is what the next
        agent keeps for the waiters that come back."""
        self.closing = True

    def _save_queue(self) -> None:
        if not self.enabled:
            return
        try:
            self._save()
        except OSError as exc:  # the queue goes on in memory; only a restart would lose it
            log.error("cannot write the queue to %s: %s", self.path, exc)

    def _place(self, waiter: Waiter) -> Place:
        holds = self.holds()
        ahead = self.queue.index(waiter) + sum(1 for h in holds if h.kind != "lock") + \
            self.kept.ahead_of(waiter.since)
        line = f"waiting for the box: {ahead} run{'s' if ahead != 1 else ''} ahead"
        return Place(ahead, holds, line + (f"; {held_by(holds)}" if holds else ""),
                     waiter.token)

    def _timeout(self, seconds: float) -> Reserved:
        others = self.holds()
        error = self._refusal(others, "new runs") if others else Reserved("box reserved")
        return Reserved(f"gave up after waiting {seconds:g}s ({protocol.ENV_LOCK_WAIT}); "
                        + str(error), error.details)

    def release_ticket(self, ticket: str) -> None:
        """The queue channel closed: a grant its run never used goes to the next waiter."""
        if self.starting.pop(ticket, None) is not None:
            self.changed()

    # -- by hand ---------------------------------------------------------------------------

    def take_lock(self, caller: Caller, label: str, reason: str) -> Hold:
        if not self.enabled:
            raise LagerError("reservations are off on this box (lager-box serve "
                             "--reservations off)")
        others = self._others(caller)
        if others:
            raise self._refusal(others, "locks")
        self.lock = _hold_of(caller, label, time.time(), "lock", reason=reason)
        self._save()
        self.audit("lock", caller, label=label, reason=reason)
        return self.lock

    def unlock(self, caller: Caller, force: bool) -> str:
        if self.lock is None:
            return "the box was not locked"
        lock = self.lock
        if lock.identity != caller.holder():
            if not force:
                raise Reserved(f"the lock is {lock.who()}'s, since {when(lock.since)}; "
                               "`lager boxes unlock --force` takes it away (recorded in the "
                               "box's audit)", Refusal(reserved=[lock]).to_dict())
            self.forced = [*self.forced, ForcedUnlock(time.time(), caller.holder(),
                                                      caller.key_comment or caller.user,
                                                      lock)][-KEEP_FORCED:]
        self.lock = None
        self._save()
        self.audit("forced unlock" if lock.identity != caller.holder() else "unlock", caller,
                   owner=lock.identity, owner_name=lock.name, since=when(lock.since))
        self.changed()
        return ("forced the unlock of " + lock.who() + "'s lock (recorded in the box's audit)"
                if lock.identity != caller.holder() else "unlocked")

    def status(self) -> ReservationStatus:
        holds = self.holds()
        runs = sorted((r.row() for r in self.supervisor.runs.values() if not r.done.is_set()),
                      key=lambda row: row["started_at"])
        return ReservationStatus(
            enabled=self.enabled, held=bool(holds), holds=holds, lock=self.lock, runs=runs,
            queue=[Queued(w.caller.holder(), w.caller.key_comment or w.caller.user, w.label,
                          w.since) for w in self.queue],
            forced_unlocks=list(self.forced))
