"""Messages of the `reservation` subsystem (shared boxes, issue 19), for both ends.

The client sends one request line, op-tagged: StatusRequest, LockRequest, UnlockRequest or
WaitRequest. The box answers one JSON line (ReservationStatus, Locked, Unlocked), or, to a
waiter, a Waiting line each time its place changes and then one Granted line, whose ticket
the client's run presents (RunHeader.ticket). A refusal is exit status 75, one line on stderr
and, on stdout, a Refusal naming every hold in the way (a `run` channel's stdout is the
script's, so a refused run says it in the status and the line only).

The holder of a Hold is the identity that logged in (`key:FINGERPRINT`, or for a certificate
`cert:KEY_ID:PRINCIPAL`); its label is the client's own word for itself, shown, never trusted.
"""
from __future__ import annotations

import time

from . import short_id
from .codec import Message, ProtocolError, decode_one_of, field, load_object, message

# typing's names are for type checkers only: importing it costs a lager command ~5 ms (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def when(stamp: float) -> str:
    """How the box and the client print a moment: UTC, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


@message(frozen=True)
class Hold(Message):
    """One reason the box is held (kind "run", "lock" or "starting"), and by whom."""

    WHAT = "hold"
    identity: str
    name: str  # the key's comment, or `certificate 'ID'`; the user name when it has none
    fingerprint: str
    label: str
    since: float
    kind: str
    run_id: str = ""
    script: str = ""
    paused: str | None = None  # the pause's label while the run is paused
    reason: str = ""

    def who(self) -> str:
        shown = f"{self.name} ({self.fingerprint})" if self.fingerprint else self.name
        return shown + (f" [{self.label}]" if self.label else "")

    def what(self) -> str:
        if self.kind == "run":
            pause = f', paused at "{self.paused}"' if self.paused is not None else ""
            return f"run {short_id(self.run_id)} ({self.script}{pause})"
        if self.kind == "lock":
            return "a lock" + (f" ({self.reason})" if self.reason else "")
        return "a run about to start"


# -- requests (client -> box) ------------------------------------------------------------------

@message
class StatusRequest(Message):
    """Who holds the box, its runs, its queue and its forced unlocks."""

    OP = "status"
    WHAT = "reservation request"


@message
class LockRequest(Message):
    """Reserve the box for the caller's identity until an unlock (kept across restarts)."""

    OP = "lock"
    WHAT = "reservation request"
    label: str | None = None
    reason: str | None = None


@message
class UnlockRequest(Message):
    """Release the caller's lock; `force` takes away another identity's (audited)."""

    OP = "unlock"
    WHAT = "reservation request"
    force: bool = False


@message
class WaitRequest(Message):
    """Stand in the box's first-come queue for up to `wait` seconds (None: LAGER_LOCK_WAIT's
    default). The channel stays open: the grant lasts while it does."""

    OP = "wait"
    WHAT = "reservation request"
    label: str | None = None
    wait: float | None = None
    token: str | None = None  # the place this identity had before the box restarted


ReservationRequest = StatusRequest | LockRequest | UnlockRequest | WaitRequest
REQUESTS: tuple[type[Message], ...] = (StatusRequest, LockRequest, UnlockRequest, WaitRequest)


def decode_request(line: bytes | str) -> ReservationRequest:
    return decode_one_of(line, REQUESTS, "reservation request")  # type: ignore[return-value]


# -- answers (box -> client) -------------------------------------------------------------------

@message
class Place(Message):
    """A waiter's place: runs ahead of it (queued before it, or holding the box), the holds,
    and the line the client shows."""

    WHAT = "queue place"
    ahead: int
    held_by: list[Hold] = field(default_factory=list)
    line: str = ""
    token: str = ""  # give it back in WaitRequest.token to keep the place after a restart


@message
class Waiting(Message):
    """Pushed to a waiter each time its place changes (it never polls)."""

    WHAT = "queue line"
    waiting: Place


@message
class Granted(Message):
    """The waiter's turn: the ticket its run presents. The grant lasts while the queue
    channel stays open."""

    WHAT = "queue line"
    granted: str


def decode_queue_line(line: bytes | str) -> Waiting | Granted | Refusal:
    """A line the box writes to a waiter: Granted (`granted`), a Refusal (`reserved`: it gave
    up, and the exit status follows), else Waiting."""
    body = load_object(line, "queue line")
    if "granted" in body:
        return Granted.from_dict(body)
    if "reserved" in body:
        return Refusal.from_dict(body)
    return Waiting.from_dict(body)


@message
class Locked(Message):
    """The answer to a lock: the lock as the box keeps it."""

    WHAT = "lock answer"
    locked: Hold


@message
class Unlocked(Message):
    """The answer to an unlock, in words ("unlocked", "the box was not locked", ...)."""

    WHAT = "unlock answer"
    message: str


@message
class Queued(Message):
    """One waiter in the box's queue, first come first."""

    WHAT = "queued waiter"
    identity: str
    name: str
    label: str
    since: float


@message(frozen=True)
class ForcedUnlock(Message):
    """A lock taken away by another identity: when, by whom, and the lock it was."""

    WHAT = "forced unlock"
    at: float
    by: str
    by_name: str
    lock: Hold


@message
class ReservationStatus(Message):
    """The answer to status (`lager boxes status`): `runs` are the rows of `--list`."""

    WHAT = "reservation status"
    enabled: bool
    held: bool
    holds: list[Hold] = field(default_factory=list)
    lock: Hold | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    queue: list[Queued] = field(default_factory=list)
    forced_unlocks: list[ForcedUnlock] = field(default_factory=list)

    def locked_by(self) -> str:
        """The `locked by` cell of `lager boxes --status`: the first holder, or `-`."""
        if not self.enabled:
            return "(off)"
        if not self.holds:
            return "-"
        first = self.holds[0]
        more = f" +{len(self.holds) - 1}" if len(self.holds) > 1 else ""
        return f"{first.who()} ({first.kind}){more}"


@message
class Refusal(Message):
    """On stdout beside a refusal (status 75): every hold in the way, for programs."""

    WHAT = "reservation refusal"
    reserved: list[Hold]


__all__ = ["REQUESTS", "ForcedUnlock", "Granted", "Hold", "LockRequest", "Locked", "Place",
           "ProtocolError", "Queued", "Refusal", "ReservationRequest", "ReservationStatus",
           "StatusRequest", "UnlockRequest", "Unlocked", "WaitRequest", "Waiting",
           "decode_queue_line", "decode_request", "when"]
