"""`nets`: one JSON request line, one JSON answer line (instrument commands and `lager nets`)."""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from lager.errors import LagerError

from ..bench_commands import changes, execute
from ..reservations import CHANGE, READ
from .common import Context

MAX_REQUEST = 64 * 1024
MAX_NAME = 200


def _check(request: Any) -> dict[str, Any]:
    """Shape checks, so what reaches the drivers is names and finite numbers."""
    if not isinstance(request, dict):
        raise LagerError("malformed nets request: send one JSON object line")
    for key in ("command", "net", "action"):
        value = request.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME
                                  or "\x00" in value):
            raise LagerError(f"malformed nets request: {key} must be a short string")
    value = request.get("value")
    if value is not None:
        try:
            finite = not isinstance(value, bool) and math.isfinite(float(value))
        except (TypeError, ValueError, OverflowError):
            finite = False
        if not finite or isinstance(value, str):
            raise LagerError("malformed nets request: value must be a finite number")
    return request


async def handle_nets(ctx: Context) -> None:
    raw = await ctx.read_line(MAX_REQUEST, "the nets request")
    try:
        request = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        request = None
    checked = _check(request)
    ctx.reservations.check(ctx.caller, CHANGE if changes(checked) else READ)
    # pyvisa blocks; a slow instrument must not stall every other SSH channel.
    result = await asyncio.to_thread(execute, checked)
    ctx.write_json(result)
    ctx.process.exit(0)
