"""`nets`: one JSON request line, one JSON answer line (instrument commands and `lager nets`)."""
from __future__ import annotations

import asyncio
import json

from lager.errors import LagerError

from ..bench_commands import execute
from .common import Context

MAX_REQUEST = 64 * 1024


async def handle_nets(ctx: Context) -> None:
    raw = await ctx.read_line(MAX_REQUEST, "the nets request")
    try:
        request = json.loads(raw)
        assert isinstance(request, dict)
    except (ValueError, AssertionError):
        raise LagerError("malformed nets request: send one JSON object line") from None
    # pyvisa blocks; a slow instrument must not stall every other SSH channel.
    result = await asyncio.to_thread(execute, request)
    ctx.write_json(result)
    ctx.process.exit(0)
