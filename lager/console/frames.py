"""A failure console's view of the failing stack: `frames()`, `frame(n)` and `exc`.

Each console on a pause on failure gets its own browser, bound to its own namespace, so
`frame(2)` in one console leaves another where it was. Switching frames takes a fresh snapshot
of that frame, under the same rules as the pause's own (lager/console/sessions.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from ..breakpoints.pause import display_file
from .sessions import snapshot


@dataclass
class FailedStack:
    """The stack an exception is unwinding, outermost first, and the frame the pause shows."""

    entries: list[tuple[FrameType, int]]  # (frame, its line)
    current: int
    exc: BaseException

    def describe(self, index: int) -> str:
        frame, line = self.entries[index]
        return f"{display_file(frame.f_code.co_filename)}:{line} in {frame.f_code.co_name}"

    def seed(self) -> Callable[[dict[str, Any]], None]:
        return lambda namespace: FrameBrowser(namespace, self).install()


class FrameBrowser:
    def __init__(self, namespace: dict[str, Any], stack: FailedStack) -> None:
        self.namespace = namespace
        self.stack = stack
        self.current = stack.current

    def install(self) -> None:
        self.namespace.update(frames=self.frames, frame=self.frame, exc=self.stack.exc)

    def frames(self) -> None:
        """List the failing stack, outermost first; `>` marks the console's frame."""
        for i in range(len(self.stack.entries)):
            mark = ">" if i == self.current else " "
            print(f"{mark}{i:3d}  {self.stack.describe(i)}")

    def frame(self, n: int) -> None:
        """Switch this console's namespace to frame n of frames() (negative: from the end)."""
        count = len(self.stack.entries)
        try:
            index = int(n)
        except (TypeError, ValueError):
            print(f"frame({n!r}): give a frame number from frames(), 0 to {count - 1}")
            return
        if index < 0:
            index += count
        if not 0 <= index < count:
            print(f"frame({n}): no such frame; frames() lists 0 to {count - 1}")
            return
        self.current = index
        self.namespace.clear()
        self.namespace.update(snapshot(self.stack.entries[index][0]))
        self.install()
        print(f"now in frame {index}: {self.stack.describe(index)}")
