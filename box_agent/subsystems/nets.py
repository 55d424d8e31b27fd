"""`nets`: one JSON request line, one JSON answer line (instrument commands and `lager nets`)."""
from __future__ import annotations

import asyncio
import math

from lager.errors import LagerError
from lager.protocol import version
from lager.protocol.channel import InstrumentRequest
from lager.protocol.codec import load_object

from ..bench_commands import changes, execute
from ..reservations import CHANGE, READ
from .common import Context

MAX_REQUEST = 64 * 1024
MAX_NAME = 200


def _check(raw: bytes) -> InstrumentRequest:
    """Shape checks, so what reaches the drivers is names and finite numbers."""
    body = load_object(raw, InstrumentRequest.WHAT)
    refusal = version.client_refusal(version.version_of(body))
    if refusal:
        raise LagerError(refusal)
    request = InstrumentRequest.from_dict(body)
    for key in ("command", "net", "action"):
        value = getattr(request, key)
        if value is not None and (len(value) > MAX_NAME or "\x00" in value):
            raise LagerError(f"malformed nets request: {key} must be a short string")
    if request.value is not None and not math.isfinite(request.value):
        raise LagerError("malformed nets request: value must be a finite number")
    return request


async def handle_nets(ctx: Context) -> None:
    request = _check(await ctx.read_line(MAX_REQUEST, "the nets request"))
    ctx.reservations.check(ctx.caller, CHANGE if changes(request) else READ)
    # pyvisa blocks; a slow instrument must not stall every other SSH channel.
    result = await asyncio.to_thread(execute, request)
    ctx.write_json(result)
    ctx.process.exit(0)
