"""`reservation`: lock, unlock and status by hand, and the queue a waiting run stands in.

The messages are lager.protocol.reservation's: one request line (StatusRequest, LockRequest,
UnlockRequest or WaitRequest), answered by one JSON line on stdout. A wait is answered by a
Waiting line each time its place changes, then one Granted line: the client's run presents the
ticket, and the grant lasts while this channel stays open, so a client that dies before its run
starts frees the box at once. A refusal is status 75 (a Refusal on stdout, one line on stderr).
"""
from __future__ import annotations

import asyncio
import math

import asyncssh

from lager import protocol
from lager.errors import LagerError
from lager.protocol.reservation import (
    Granted,
    Locked,
    LockRequest,
    StatusRequest,
    Unlocked,
    UnlockRequest,
    Waiting,
    decode_request,
)

from ..reservations import MAX_LABEL, MAX_REASON, clean_text
from .common import Context

MAX_REQUEST = 4096


def _seconds(value: float | None) -> float:
    if value is None:
        return protocol.DEFAULT_LOCK_WAIT
    if not math.isfinite(value) or value < 0:
        raise LagerError("malformed reservation request: wait must be 0 or more seconds")
    return value


def _send(ctx: Context, answer: Locked | Unlocked | Waiting | Granted) -> None:
    ctx.process.stdout.write(answer.encode())


async def handle_reservation(ctx: Context) -> None:
    request = decode_request(await ctx.read_line(MAX_REQUEST, "the reservation request"))
    book = ctx.reservations
    if isinstance(request, StatusRequest):
        ctx.process.stdout.write(book.status().encode())
    elif isinstance(request, LockRequest):
        hold = book.take_lock(ctx.caller, clean_text(request.label, MAX_LABEL, "label"),
                              clean_text(request.reason, MAX_REASON, "reason"))
        _send(ctx, Locked(hold))
    elif isinstance(request, UnlockRequest):
        _send(ctx, Unlocked(book.unlock(ctx.caller, request.force)))
    else:
        await _wait(ctx, clean_text(request.label, MAX_LABEL, "label"), _seconds(request.wait),
                    request.token)
        return
    ctx.process.exit(0)


async def _wait(ctx: Context, label: str, seconds: float, token: str | None) -> None:
    book = ctx.reservations
    turn = asyncio.ensure_future(book.wait_turn(
        ctx.caller, label, seconds, lambda place: _send(ctx, Waiting(place)), token))
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
        _send(ctx, Granted(ticket))
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
