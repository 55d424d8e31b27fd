"""`reservation`: lock, unlock and status by hand, and the queue a waiting run stands in.

Request: one JSON line {"op": "status" | "lock" | "unlock" | "wait", "label": TEXT,
"reason": TEXT, "force": BOOL, "wait": SECONDS}. Answers are JSON lines on stdout.
`wait` answers {"waiting": PLACE} each time its place changes, then {"granted": TICKET}: the
client's run presents the ticket, and the grant lasts while this channel stays open, so a
client that dies before its run starts frees the box at once. A refusal is status 75 (the
structured reason on stdout, one line on stderr).
"""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import asyncssh

from lager import protocol
from lager.errors import LagerError

from ..reservations import MAX_LABEL, MAX_REASON, clean_text
from .common import Context

MAX_REQUEST = 4096


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        request = json.loads(raw)
    except (ValueError, RecursionError):
        request = None
    if not isinstance(request, dict) or request.get("op") not in ("status", "lock", "unlock",
                                                                 "wait"):
        raise LagerError("malformed reservation request: send one JSON object line with op "
                         "status, lock, unlock or wait")
    return request


def _seconds(value: Any) -> float:
    if value is None:
        return protocol.DEFAULT_LOCK_WAIT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value < 0:
        raise LagerError("malformed reservation request: wait must be a number of seconds")
    return float(value)


async def handle_reservation(ctx: Context) -> None:
    request = _parse(await ctx.read_line(MAX_REQUEST, "the reservation request"))
    op = request["op"]
    label = clean_text(request.get("label"), MAX_LABEL, "label")
    book = ctx.reservations
    if op == "status":
        ctx.write_json(book.status())
    elif op == "lock":
        hold = book.take_lock(ctx.caller, label,
                              clean_text(request.get("reason"), MAX_REASON, "reason"))
        ctx.write_json({"locked": hold.as_dict()})
    elif op == "unlock":
        ctx.write_json({"message": book.unlock(ctx.caller, request.get("force") is True)})
    else:
        await _wait(ctx, label, _seconds(request.get("wait")))
        return
    ctx.process.exit(0)


async def _wait(ctx: Context, label: str, seconds: float) -> None:
    book = ctx.reservations
    turn = asyncio.ensure_future(book.wait_turn(
        ctx.caller, label, seconds, lambda place: ctx.write_json({"waiting": place})))
    gone = asyncio.ensure_future(_until_gone(ctx))
    await asyncio.wait([turn, gone], return_when=asyncio.FIRST_COMPLETED)
    if not turn.done():
        turn.cancel()  # the client left the queue (Ctrl-C, a cancelled job): its place goes
        await asyncio.gather(turn, return_exceptions=True)
        return
    try:
        ticket = turn.result()
    except BaseException:
        gone.cancel()
        raise
    try:
        ctx.write_json({"granted": ticket})
        await gone  # the grant lasts as long as the client's channel
    finally:
        book.release_ticket(ticket)
    if not ctx.process.is_closing():
        ctx.process.exit(0)


async def _until_gone(ctx: Context) -> None:
    """Until the client closes its side (EOF) or the channel goes."""
    while True:
        try:
            data = await ctx.read(4096)
        except (asyncssh.Error, OSError):
            return
        if not data:
            return
