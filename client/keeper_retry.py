"""Which keeper requests may be retried directly, and the pause number that makes a `continue`
one of them (ISSUE-NOTES 9: "keeper requests have a reply deadline, then a direct retry that
carries the number").

A keeper (client/mux.py, or an attached run serving as one) can lose a request's answer: its
connection dies under it when the box's agent restarts, or it waits past the reply deadline.
The request may then have reached the box, so the client re-sends it only when a second
arrival does nothing more:

- `list`, and `nets` reads (the net list, or a verb asked without a value): they change nothing.
- `continue ID#N`: the agent resumes pause N at most once, and answers "already resumed" (exit 0)
  when it was. A bare `continue ID` goes with `pin` (through_keeper): the keeper numbers it
  and sends `ID#N` in the same exchange, saying what it sent, so the retry can never resume
  the pause after the one meant. An attached run serving as keeper numbers its own run from
  the notices it showed (client/own_pause.py), a standalone keeper from the box's `pauses`
  stream (client/pause_table.py), both with no trip to the box; a run neither knows is
  numbered from the box's list first (one round trip, number_from_list).
- Never `kill` (`kill ID SIG` signals twice) nor an instrument write (a supply set, an output
  switched): their retry would repeat a write that may have happened, so they fail with one line
  (exit 255) that says so.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lager import protocol

TYPE_CHECKING = False  # typing costs ~5 ms of a short command's start (issue 13)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from .config import Box, Config
    from .mux import Outcome

    _T = TypeVar("_T")
    Answer = tuple[str, str, int]

_READS = frozenset({protocol.SUB_LIST})


def pinned(line: str | None) -> bool:
    """True for a continue line that names its pause (`ID#N`)."""
    if not line or protocol.PAUSE_MARK not in line:
        return False
    try:
        return protocol.split_pause(line)[1] is not None
    except ValueError:
        return False


def _instrument_read(line: str | None) -> bool:
    """True for a `nets` request that only reads: the net list, or a verb given no value whose
    run (if any) needs one to act."""
    try:
        request = json.loads(line or "")
    except ValueError:
        return False
    if not isinstance(request, dict):
        return False
    if request.get("command") == "nets" and set(request) <= {"command", "v"}:
        return True
    if request.get("value") is not None or request.get("word") is not None:
        return False
    from lager.bench import kinds

    kind = kinds.by_command(str(request.get("command")))
    if kind is None:
        return False
    verb = kind.verb(str(request.get("action") or kind.default_verb))
    # A verb that takes no value but acts (`enable`) is a write; one that takes a value reads
    # when given none (lager.bench.kinds.spec.Verb.required).
    return verb is not None and (verb.run is None or verb.takes is not None)


def resend_safe(subsystem: str, line: str | None) -> bool:
    """Whether a second arrival of this request at the box does nothing more than the first."""
    if subsystem in _READS:
        return True
    if subsystem == protocol.SUB_CONTINUE:
        return pinned(line)
    if subsystem == protocol.SUB_NETS:
        return _instrument_read(line)
    return False


def number_from_list(line: str, listing: str) -> str | None:
    """`FULLID#N` when the box's list (its JSON answer) names exactly one paused run for the
    bare id `line`; else None (the box's own answer to the bare id says what is wrong)."""
    try:
        rows = json.loads(listing)
    except ValueError:
        return None
    if not isinstance(rows, list):
        return None
    matches = [row for row in rows if isinstance(row, dict)
               and protocol.id_matches(line, str(row.get("id", "")))]
    if len(matches) != 1:
        return None
    pause = matches[0].get("pause")
    seq = pause.get("seq") if isinstance(pause, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    return f"{matches[0]['id']}{protocol.PAUSE_MARK}{seq}"


def through_keeper(path: Path, box_name: str, subsystem: str, line: str | None,
                   env: dict[str, str] | None) -> tuple[str | None, Outcome]:
    """(the line as sent, what the keeper answered: no answer means go direct), in one keeper
    exchange.

    A bare `continue ID` goes with `pin`: the keeper numbers it (from what it knows, or the
    box's list) and sends `ID#N`, so a lost answer can be retried directly with that line. A
    keeper from before this answers the bare id, which is then never retried (mux.request)."""
    from . import mux

    if subsystem != protocol.SUB_CONTINUE or not line or pinned(line):
        return line, mux.request(path, box_name, subsystem, line, env)
    outcome = mux.request(path, box_name, subsystem, line, env, pin=line)
    said = outcome.pinned
    return (said if said is not None and pinned(said) else line), outcome


def keeper_or_direct(config: Config, box: Box, subsystem: str, line: str | None,
                     env: dict[str, str] | None,
                     direct: Callable[[str | None, bool], Answer | None]) -> Answer | None:
    """One short request: through the box's keeper when there is one, else (or when the keeper
    did not answer) `direct(line as sent, patient)`, leaving a keeper behind for the next
    request; the answer settled (settle). None: `direct` declined (nothing was sent), the
    caller takes the long way.

    Patient: the keeper had the request and failed, and a second arrival does nothing more, so
    the direct way is tried again across an agent's restart (patiently)."""
    from . import mux

    answer = notice = None
    typed = line
    if mux.enabled():
        # A continue goes numbered, so that a lost answer is retried directly, never twice
        line, outcome = through_keeper(mux.socket_path(config, box), box.name, subsystem,
                                       line, env)
        answer, notice = outcome.answer, outcome.notice
    if answer is None:
        patient = notice is not None and resend_safe(subsystem, line)
        sent = line
        answer = patiently(lambda: direct(sent, patient), patient)
        if answer is None:
            return None
        if notice:  # the keeper had it and failed; the direct way answered
            sys.stderr.write(f"lager: {notice}\n")
        if mux.enabled():
            sys.stdout.flush()  # the keeper is a new process: nothing buffered goes twice
            mux.spawn(config, box)
    return settle(subsystem, line, answer, pinned_here=line != typed)


def already_resumed(line: str, err: str) -> str | None:
    """The answer to a pinned retry refused because the run is no longer paused.

    The pause was current when the line was pinned, and is not now: it was resumed (by the
    first try, or by anyone). An agent restarted in between learns the highest resumed number
    from the run's monitor (MonitorHello.resumed) and says "already resumed" itself; this
    guess stays for a run whose monitor predates that field (monitors outlive an agent
    upgrade), whose new agent says "not paused" instead (rule 9).
    """
    if not pinned(line) or "is not paused" not in err:
        return None
    run_id, seq = protocol.split_pause(line)
    # The id as typed when a run serving as keeper numbered it (client/own_pause.py).
    shown = protocol.short_id(run_id) if len(run_id) == len(protocol.new_run_id()) else run_id
    return f"already resumed: run {shown} pause {seq}"


def settle(subsystem: str, line: str | None, answer: tuple[str, str, int],
           pinned_here: bool) -> tuple[str, str, int]:
    """The box's answer, with "not paused: it is running" to a continue that a keeper
    numbered read as what it means (already_resumed). A number the user typed proves no
    more than that it was typed: that refusal stands."""
    _, err, status = answer
    if pinned_here and status != 0 and subsystem == protocol.SUB_CONTINUE \
            and line is not None and "it is running" in err:
        said = already_resumed(line, err)
        if said is not None:
            return said + "\n", "", 0
    return answer


def patiently(ask: Callable[[], _T], patient: bool) -> _T:
    """ask(), the direct way after a keeper lost its connection (patient: the request is safe
    to send again, so a failure after sending is no reason to stop). The box's agent may be
    restarting just then (its
    restart is what cut the keeper's connection): a connection it refuses is tried again, for
    up to keeper_restart.RECONNECT_FOR, before the one-line failure."""
    if not patient:
        return ask()
    from lager.errors import ConnectionFailed

    from .keeper_restart import FIRST_BACKOFF, MAX_BACKOFF, RECONNECT_FOR

    deadline = time.monotonic() + RECONNECT_FOR
    backoff = FIRST_BACKOFF
    # The wait is said only on a terminal, as a status line that goes once the wait ends:
    # whatever happens, the command's own outcome stays its one line (a log gets only that).
    status_line = sys.stderr.isatty()
    try:
        while True:
            try:
                return ask()
            except ConnectionFailed as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConnectionFailed(f"{exc} (tried again for {RECONNECT_FOR:g} s)") \
                        from None
                if backoff == FIRST_BACKOFF and status_line:
                    sys.stderr.write(f"lager: {exc}; trying again for up to "
                                     f"{RECONNECT_FOR:g} s (the box's agent may be restarting)")
                    sys.stderr.flush()
                time.sleep(min(backoff, left))  # a backoff between attempts
                backoff = min(backoff * 2, MAX_BACKOFF)
    finally:
        if status_line and backoff != FIRST_BACKOFF:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
