"""The library a script imports on the box: `from lager import pause, Net, NetType`
(and `InvalidNetError`, as the real lager's scripts do).

It runs inside the user's script, and the `lager` CLI imports its errors and protocol too, so
nothing loads before it is used: pause() on first use, the bench API (pyvisa) only when a
script first touches Net or NetType.
"""
from __future__ import annotations

import os as _os

from . import protocol as _protocol

TYPE_CHECKING = False  # typing costs ~5 ms of a short command's start (issue 13)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["InvalidNetError", "LagerError", "Net", "NetType", "PauseTimeout",
           "SetupFunctionRequiredError", "breakpoint_hook", "pause", "pause_on_failure"]

_LAZY = {"pause": "breakpoints.pause", "breakpoint_hook": "breakpoints.pause",
         "pause_on_failure": "breakpoints.failure",
         "Net": "bench.net", "NetType": "bench.net", "LagerError": "errors",
         "InvalidNetError": "errors", "SetupFunctionRequiredError": "errors",
         "PauseTimeout": "errors"}

# `lager python --pause-on-failure` (or LAGER_PAUSE_ON_FAILURE=1): a script under lager
# pauses where an unhandled exception is raised from its first `import lager` on. Checked
# here, cheaply, so the CLI (which imports lager too, and never runs under a run id) pays
# nothing.
if _os.environ.get(_protocol.ENV_PAUSE_ON_FAILURE) and _os.environ.get(_protocol.ENV_RUN_ID):
    from .breakpoints.failure import enable_from_env as _enable

    _enable()


# Under a run, an uncaught LagerError is one line (lager/uncaught.py); the CLI, which imports
# lager too and never runs under a run id, keeps its own error handling.
if _os.environ.get(_protocol.ENV_RUN_ID):
    from .uncaught import install as _install_one_line_errors

    _install_one_line_errors()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lager' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
