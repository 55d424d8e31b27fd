"""The short commands over a set: `--list`, `--continue f-…|all`, `--kill f-…`, `nets` and the
instrument commands. Each box gets the request one box would get (the fast path's own request
builder and renderer, client/fastpath.py), over a direct connection: no keeper per box.
Output is gathered by default (identical answers printed once under their folded set)."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lager import protocol
from lager.errors import LagerError, RemoteError, Reserved, UsageError

from ..config import Config
from ..context import exchange
from ..fastpath import Call, parse_command
from . import recap, reserved
from .output import Gathered, Terminal
from .targets import Target, fold

T = TypeVar("T")


@dataclass
class Outcome:
    value: Any = None
    error: str = ""
    unreachable: bool = False
    holder: reserved.Holder | None = None  # refused (75): the box is someone else's now


def each_box(config: Config, targets: list[Target], forks: int,
             work: Callable[[Any], T]) -> dict[str, Outcome]:
    """work(connection) on every box at once (at most `forks` connecting at a time)."""
    from ..ssh import BoxConnection

    gate = threading.Semaphore(max(1, forks))
    results: dict[str, Outcome] = {}

    def one(target: Target) -> None:
        try:
            with gate:
                conn = BoxConnection(config, target.box)
        except LagerError as exc:
            results[target.name] = Outcome(error=str(exc), unreachable=True)
            return
        except (OSError, EOFError) as exc:
            results[target.name] = Outcome(error=str(exc) or type(exc).__name__,
                                           unreachable=True)
            return
        try:
            results[target.name] = Outcome(value=work(conn))
        except Reserved as exc:
            holder = reserved.of_details(exc.details, str(exc)) or reserved.Holder(
                "", str(exc), [])
            results[target.name] = Outcome(error=f"{holder.reason}; changes from other keys "
                                                 "are refused", holder=holder)
        except LagerError as exc:
            results[target.name] = Outcome(error=str(exc), unreachable=exc.exit_code == 255)
        except (OSError, EOFError, ValueError) as exc:
            results[target.name] = Outcome(error=str(exc) or type(exc).__name__)
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {t.name: results[t.name] for t in targets}


def ask(conn: Any, subsystem: str, line: str | None) -> str:
    out, err, status = exchange(conn, subsystem, line, None, timeout=60)
    if status == protocol.EXIT_RESERVED:  # its stdout: the structured reason (who holds it)
        raise Reserved(err.strip() or "the box is reserved", _details(out))
    if status != 0:
        raise RemoteError(err.strip() or f"{subsystem} failed with status {status}")
    return out


def _details(out: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and "reserved" in found:
            return found
    return {}


def report(terminal: Terminal, results: dict[str, Outcome], lines_of: Callable[[Any], list[str]],
           gather: bool) -> int:
    """Answers prefixed by box (or gathered); failures one line each on stderr. The exit code
    follows the fleet's rule (code_of)."""
    gathered = Gathered() if gather else None
    say_errors(terminal, results)
    for box, outcome in results.items():
        if outcome.error:
            continue
        for line in lines_of(outcome.value):
            for piece in line.splitlines() or [""]:
                if gathered is not None:
                    gathered.add(box, 1, piece.encode())
                else:
                    terminal.write(1, f"{box}: {piece}\n".encode())
    if gathered is not None:
        gathered.print(terminal)
    return code_of(results)


def say_errors(terminal: Terminal, results: dict[str, Outcome]) -> None:
    """One line per distinct failure, under the folded set of boxes it happened on."""
    failures: dict[tuple[bool, str], list[str]] = {}
    for box, outcome in results.items():
        if outcome.error:
            failures.setdefault((outcome.unreachable, outcome.error), []).append(box)
    for (unreachable, error), boxes in failures.items():
        if error.startswith("reserved"):  # a reserved box: the line names its holder
            terminal.say(f"{fold(boxes)}: {error}")
            continue
        terminal.say(f"{fold(boxes)}: {'unreachable' if unreachable else 'error'}: {error}")


def code_of(results: dict[str, Outcome]) -> int:
    """As a fleet run's: a failed request 1, else an unreachable box 255, else a box reserved
    by someone else 75 (ISSUE-NOTES 17), else 0."""
    if any(o.error and not o.unreachable and o.holder is None for o in results.values()):
        return 1
    if any(o.unreachable for o in results.values()):
        return recap.EXIT_UNREACHABLE
    return recap.EXIT_RESERVED if any(o.holder for o in results.values()) else 0


def print_json(terminal: Terminal, results: dict[str, Outcome]) -> int:
    """One object keyed by box (ISSUE-NOTES 15); a box that failed gets {"error": ...}."""
    data = {box: (o.value if not o.error else {"error": o.error, "unreachable": o.unreachable,
                                               **_holder_fields(o)})
            for box, o in results.items()}
    terminal.write(1, (json.dumps(data) + "\n").encode())
    say_errors(terminal, results)
    return code_of(results)


def _holder_fields(outcome: Outcome) -> dict[str, Any]:
    if outcome.holder is None:
        return {}
    return {"holder": outcome.holder.who, "reserved": outcome.holder.holds}


def short_command(config: Config, targets: list[Target], argv: list[str], forks: int,
                  gather: bool) -> int:
    """`lager nets`, `lager supply NET ...`, `lager python --list` on every box of a set."""
    from .instrument_capture import capture

    call = parse_command(argv) or capture(argv)
    if call is None:
        raise UsageError(f"`lager {' '.join(argv[:3])} ...` in this form takes one box, not a "
                         "set")
    if call.console:
        raise UsageError("--console takes one run: --console BOX:ID")
    terminal = Terminal()
    results = each_box(config, targets, forks, lambda conn: ask(conn, call.subsystem,
                                                                call.line))
    if "--json" in argv:
        parsed = {b: Outcome(value=json.loads(o.value)) if not o.error else o
                  for b, o in results.items()}
        return print_json(terminal, parsed)
    return report(terminal, results, _render(call), gather)


def _render(call: Call) -> Callable[[Any], list[str]]:
    return lambda out: call.render(out)


def continue_runs(config: Config, targets: list[Target], pick: Callable[[dict[str, Any]], bool],
                  forks: int, what: str) -> int:
    """Resume every paused run `pick` chooses, each by its pause number; print the folded set
    of boxes resumed."""
    def work(conn: Any) -> list[str]:
        rows = json.loads(ask(conn, protocol.SUB_LIST, None))
        done = []
        for row in rows:
            pause = row.get("pause")
            if row.get("state") == "paused" and pause and pick(row):
                done.append(ask(conn, protocol.SUB_CONTINUE,
                                f"{row['id']}{protocol.PAUSE_MARK}{pause['seq']}").strip())
        return done

    terminal = Terminal()
    results = each_box(config, targets, forks, work)
    resumed = [box for box, o in results.items() if not o.error and o.value]
    code = report(terminal, {b: o for b, o in results.items() if o.error}, lambda v: [], False)
    if resumed:
        terminal.write(1, f"resumed {what} on {fold(resumed)}\n".encode())
    else:
        terminal.write(1, f"nothing paused to resume ({what})\n".encode())
    return code


def kill_runs(config: Config, targets: list[Target], pick: Callable[[dict[str, Any]], bool],
              forks: int, signal_name: str | None) -> int:
    def work(conn: Any) -> list[str]:
        rows = json.loads(ask(conn, protocol.SUB_LIST, None))
        return [ask(conn, protocol.SUB_KILL, row["id"] + (f" {signal_name}" if signal_name
                                                          else "")).strip()
                for row in rows if row.get("state") not in ("exited", "lost") and pick(row)]

    return report(Terminal(), each_box(config, targets, forks, work), lambda v: v or
                  ["no run of the fleet left to stop"], False)
