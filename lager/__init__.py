"""The library a script imports on the box: `from lager import pause, Net, NetType`
(and `InvalidNetError`, as the real lager's scripts do).

It runs inside the user's script, and the `lager` CLI imports its errors and protocol too, so
nothing loads before it is used: pause() on first use, the bench API (pyvisa) only when a
script first touches Net or NetType.
"""
from __future__ import annotations

from typing import Any

__all__ = ["InvalidNetError", "LagerError", "Net", "NetType", "SetupFunctionRequiredError",
           "breakpoint_hook", "pause"]

_LAZY = {"pause": "breakpoints.pause", "breakpoint_hook": "breakpoints.pause",
         "Net": "bench.net", "NetType": "bench.net", "LagerError": "errors",
         "InvalidNetError": "errors", "SetupFunctionRequiredError": "errors"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lager' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
