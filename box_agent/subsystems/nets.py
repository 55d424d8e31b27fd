"""`nets`: instrument commands from other terminals (filled by the bench issue)."""
from __future__ import annotations

from lager.errors import LagerError

from .common import Context


async def handle_nets(ctx: Context) -> None:
    raise LagerError("this box has no bench configured")
