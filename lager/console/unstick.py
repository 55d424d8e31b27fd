"""Clear CPython 3.11's stuck "async exception" flag after a console has run statements.

The runner (runner.py) stops a statement with PyThreadState_SetAsyncExc and, once it is done,
clears any exception still pending with PyThreadState_SetAsyncExc(id, NULL). On 3.11 that call
sets the interpreter's async-exception flag whatever it is given, and only the delivery of a
real async exception clears it again. Until then every thread of the script calls the eval
breaker's handler at every check (slower), and a thread with a trace function (pause on
failure's, lager/breakpoints/failure.py) loops forever on the first instruction of the next
function it calls. Delivering one harmless async exception, to a thread that expects it,
clears the flag. 3.12 clears it by itself.
"""
from __future__ import annotations

import sys
import threading
import time

from .runner import raise_in


class _Unstick(BaseException):
    """Raised into the throwaway thread below, and caught there."""


def unstick_eval_breaker() -> None:
    if sys.version_info >= (3, 12):
        return
    ready = threading.Event()

    def absorb() -> None:
        try:
            ready.set()
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:  # Python bytecode: it checks the eval breaker
                pass
        except _Unstick:
            return

    thread = threading.Thread(target=absorb, name="lager-console-unstick", daemon=True)
    thread.start()
    ready.wait(2.0)
    raise_in(thread, _Unstick)
    thread.join(2.5)
