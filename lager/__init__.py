"""The library a script imports on the box: `from lager import pause, Net, NetType`.

It runs inside the user's script, so importing it stays cheap: the bench API (pyvisa) loads
only when a script first touches Net or NetType.
"""
from __future__ import annotations

from typing import Any

from .breakpoints.pause import breakpoint_hook, pause
from .errors import LagerError

__all__ = ["pause", "breakpoint_hook", "Net", "NetType", "LagerError"]


def __getattr__(name: str) -> Any:
    if name in ("Net", "NetType"):
        from .bench import net

        return getattr(net, name)
    raise AttributeError(f"module 'lager' has no attribute {name!r}")
