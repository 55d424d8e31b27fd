"""Under `lager python`, an uncaught LagerError (an unknown net, a refused setting...) ends the
script with one line, `lager: <message>`, and exit status 1, instead of a traceback: the
message already names the net and what was wrong, as the CLI's own errors do. Any other
exception keeps Python's traceback.

Installed when a script under a run imports lager (lager/__init__.py), so it wraps whatever
excepthook the script had then, and a hook the script installs later still wins. As DESIGN
says, the traceback comes back with --debug: `lager --debug python ...` (or LAGER_DEBUG=1 in
the run's environment) keeps Python's own report.
"""
from __future__ import annotations

import os
import sys
from types import TracebackType

from .errors import LagerError


def install() -> None:
    if os.environ.get("LAGER_DEBUG", "").lower() in ("1", "true", "yes", "on", "y", "t"):
        return
    previous = sys.excepthook

    def one_line(kind: type[BaseException], exc: BaseException,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, LagerError):
            sys.stderr.write(f"lager: {exc}\n")
            sys.stderr.flush()
            return  # the interpreter then exits with status 1, as after any uncaught error
        previous(kind, exc, tb)

    sys.excepthook = one_line
