"""Per-thread routing of sys.stdout / sys.stderr.

Console code runs on its own thread, and its print() must reach the console while the
script's other threads keep writing to the run's output. A process-wide swap (what
python-manhole does) would steal their output too, so the installed object forwards every
thread to the original stream, except a console thread, which it sends to that console.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Protocol


class TextSink(Protocol):
    def write(self, text: str) -> int: ...


class ThreadRoutedStream:
    def __init__(self, default: Any) -> None:
        self._default = default
        self._routes: dict[int, TextSink] = {}

    def route(self, thread_id: int, sink: TextSink) -> None:
        self._routes[thread_id] = sink

    def unroute(self, thread_id: int) -> None:
        self._routes.pop(thread_id, None)

    def write(self, text: str) -> int:
        sink = self._routes.get(threading.get_ident())
        return (sink if sink is not None else self._default).write(text)

    def flush(self) -> None:
        if threading.get_ident() not in self._routes:
            self._default.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._default, name)


_install_lock = threading.Lock()


def routed_streams() -> tuple[ThreadRoutedStream, ThreadRoutedStream]:
    """Install the routing objects once (at the first console) and return them."""
    with _install_lock:
        if not isinstance(sys.stdout, ThreadRoutedStream):
            sys.stdout = ThreadRoutedStream(sys.stdout)  # type: ignore[assignment]
        if not isinstance(sys.stderr, ThreadRoutedStream):
            sys.stderr = ThreadRoutedStream(sys.stderr)  # type: ignore[assignment]
        return sys.stdout, sys.stderr  # type: ignore[return-value]
