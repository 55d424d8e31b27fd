"""`continue`, `kill` and `list`: short request/answer subsystems."""
from __future__ import annotations

import signal

from lager import protocol
from lager.errors import LagerError

from .common import Context


async def handle_continue(ctx: Context) -> None:
    """Contract (DESIGN.md): one line on stdout and status 0, or one reason on stderr and 1.

    `ID#N` resumes pause number N only (ISSUE-NOTES 9): one already resumed answers so on
    stdout with status 0, so a retry or a late `continue` never resumes a later pause."""
    try:
        query, seq = protocol.split_pause(await ctx.request_query())
    except ValueError as exc:
        raise LagerError(str(exc)) from None
    run = ctx.supervisor.find(query)
    link = run.link
    current_seq = link.pause.seq if link is not None and link.pause is not None else None
    if seq is not None and link is not None and seq != current_seq and (
            seq <= link.resumed_seq or (current_seq is not None and seq < current_seq)):
        ctx.write_line(f"already resumed: run {protocol.short_id(run.id)} pause {seq}")
        ctx.process.exit(0)
        return
    current = run.paused_link().current()
    if seq is not None and current.seq != seq:
        raise LagerError(f"run {protocol.short_id(run.id)} is at pause {current.seq}, "
                         f"not {seq}: pause {seq} has not been reached")
    ctx.reservations.operated(ctx.caller, "continue", run)
    pause = run.paused_link().resume("continue", ctx.caller.describe())
    label = f' "{pause.label}"' if pause.label else ""
    ctx.write_line(f"resumed run {protocol.short_id(run.id)} at breakpoint{label} "
                   f"{pause.file}:{pause.line}")
    ctx.process.exit(0)


def _parse_signal(name: str) -> signal.Signals:
    name = name.strip().upper()
    if name.isdigit():
        try:
            return signal.Signals(int(name))
        except ValueError:
            pass
    else:
        try:
            return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
        except KeyError:
            pass
    raise LagerError(f"unknown signal {name!r}")


async def handle_kill(ctx: Context) -> None:
    """Line one: `ID [SIGNAL]`. Without a signal the run gets the gentle stop."""
    raw = await ctx.read_line(protocol.MAX_ID_LINE, "the kill request")
    words = raw.decode("utf-8", "replace").split()
    if not words or len(words) > 2:
        raise LagerError("kill wants one line: ID [SIGNAL]")
    run = ctx.supervisor.find(words[0])
    if run.done.is_set():
        if run.lost:
            raise LagerError(f"run {protocol.short_id(run.id)} is lost: its monitor died, so "
                             "it no longer runs, and its exit code is unknown")
        raise LagerError(f"run {protocol.short_id(run.id)} already exited "
                         f"with code {run.exit_status}")
    # The signal is read first: an unknown one is refused and sends nothing, so nothing is
    # audited or told to the run's holder.
    sig = _parse_signal(words[1]) if len(words) == 2 else None
    ctx.reservations.operated(ctx.caller, "kill", run)
    if sig is not None:
        run.signal_group(sig)
        ctx.write_line(f"sent {sig.name} to run {protocol.short_id(run.id)}")
    else:
        run.stop(f"killed by {ctx.caller.describe()}")
        ctx.write_line(f"stopping run {protocol.short_id(run.id)} "
                       "(SIGINT, then SIGTERM and SIGKILL if it does not stop)")
    ctx.process.exit(0)


async def handle_list(ctx: Context) -> None:
    rows = sorted((r.row() for r in ctx.supervisor.runs.values()),
                  key=lambda row: row["started_at"])
    ctx.write_json(rows)
    ctx.process.exit(0)
