"""Runs console statements on a thread of their own, and gives up on one that cannot stop.

Ctrl-C (and the script's resume) stops a statement by raising an exception in its thread
(PyThreadState_SetAsyncExc). CPython delivers that exception only between bytecodes, so a
statement blocked in C - time.sleep(60), socket.recv, a VISA read - does not see it until the
call returns. A signal does not help either: Python handlers run only in the main thread, and a
console thread's sleep or recv that a signal interrupts just restarts (PEP 475), as measured.
So after a short grace the console *abandons* such a statement: the exception stays pending, so
the statement stops the moment its call returns, without running another line; its output is
dropped; and the console carries on with a fresh thread. Whoever is at the console is told
where it is blocked, and a statement still blocked when the script resumes is reported in the
run's output too.
"""
from __future__ import annotations

import code
import ctypes
import os
import platform
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from ..breakpoints.pause import CONSOLE_THREAD
from .routing import routed_streams

# How long a statement gets to stop after Ctrl-C or a resume before it is abandoned. A statement
# running Python stops within microseconds; anything slower is inside a C call.
GRACE = 0.5

# Syscalls a blocked statement is likely waiting in, to name them in the report.
SYSCALL_NAMES = {
    "x86_64": {0: "read", 7: "poll", 23: "select", 35: "nanosleep", 42: "connect",
               43: "accept", 45: "recvfrom", 47: "recvmsg", 61: "wait4", 202: "futex",
               230: "clock_nanosleep", 232: "epoll_wait", 270: "pselect6", 271: "ppoll",
               281: "epoll_pwait", 288: "accept4"},
    "aarch64": {22: "epoll_pwait", 63: "read", 72: "pselect6", 73: "ppoll", 98: "futex",
                101: "nanosleep", 115: "clock_nanosleep", 202: "accept", 203: "connect",
                207: "recvfrom", 212: "recvmsg", 242: "accept4", 260: "wait4"},
}


class ConsoleClosed(BaseException):
    """Raised into a statement still running when the script resumes."""


def raise_in(thread: threading.Thread, exc_type: type[BaseException] | None) -> None:
    """Make exc_type pending in thread (None: clear a pending one)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type) if exc_type else None)


def _syscall(thread: threading.Thread) -> str | None:
    """The syscall thread waits in (Linux), or None when it is running or unknown."""
    try:
        with open(f"/proc/self/task/{thread.native_id}/syscall") as f:
            first = f.read().split()[0]
    except (OSError, IndexError):
        return None  # not Linux, or the thread just ended
    if not first.isdigit():
        return None  # "running"
    return SYSCALL_NAMES.get(platform.machine(), {}).get(int(first), f"syscall {first}")


def stuck_note(thread: threading.Thread) -> str:
    """Where a statement that did not stop is, and what becomes of it."""
    frame = sys._current_frames().get(thread.ident or 0)
    at = ""
    if frame is not None and frame.f_code.co_filename != "<console>":
        at = (f" at {os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} "
              f"({frame.f_code.co_name})")
    syscall = _syscall(thread)
    # futex is also where a thread waits for the GIL, so it says nothing about why.
    if syscall is not None and syscall != "futex":
        return (f"blocked in {syscall}(){at}, outside Python, where an interrupt cannot reach "
                "it; abandoned: it stops when that call returns, without running another "
                "line, and its output is dropped")
    return (f"not stopping{at}: blocked in C, or it caught the interrupt; abandoned: it stops "
            "at its next line of Python unless it catches that too, and its output is dropped")


@dataclass
class Job:
    """One statement: the runner says "done"; Ctrl-C and the resume say "interrupt"/"close"."""

    code: CodeType
    source: str
    events: queue.Queue[str] = field(default_factory=queue.Queue)
    done: threading.Event = field(default_factory=threading.Event)
    exit: bool = False  # exit() or quit(): the console disconnects
    # Ctrl-C (or the resume) that came before the runner started it: it never starts. An Enter
    # then Ctrl-C at once used to be lost that way, and the statement ran on.
    stopped_before_start: type[BaseException] | None = None

    def summary(self, limit: int = 100) -> str:
        line = self.source.strip().splitlines()[0] if self.source.strip() else ""
        return line if len(line) <= limit else line[:limit - 1] + "\u2026"


class Runner:
    """One thread running a console's statements one at a time, in the console's namespace.

    Statements of one console share this thread until one is abandoned, so objects bound to a
    thread (an sqlite connection, thread-locals) keep working from line to line.
    """

    def __init__(self, namespace: dict[str, Any], write: Callable[[str], None]) -> None:
        self._write = write
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._interrupted = False  # an async exception was raised into the running statement
        self._running: Job | None = None
        self.silenced = False  # abandoned or closing: what it prints goes nowhere
        self.interp = code.InteractiveInterpreter(namespace)
        self.interp.write = self.write  # type: ignore[method-assign,assignment]
        self.thread = threading.Thread(target=self._serve, name=CONSOLE_THREAD, daemon=True)
        self.thread.start()

    def write(self, text: str) -> int:
        if not self.silenced:
            self._write(text)
        return len(text)

    def flush(self) -> None:
        return None

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def interrupt(self, job: Job, exc_type: type[BaseException]) -> bool:
        """Raise exc_type in job's statement; False when it is not running any more."""
        with self._lock:
            if self._running is not job:
                if job.done.is_set() or job.stopped_before_start is not None:
                    return False
                job.stopped_before_start = exc_type  # not started yet: it never will
                return True
            if exc_type is ConsoleClosed:
                self.silenced = True  # no traceback for a statement the resume stops
            raise_in(self.thread, exc_type)
            self._interrupted = True
            return True

    def abandon(self) -> None:
        """Stop waiting for the running statement; the thread ends once it returns."""
        self.silenced = True
        self._jobs.put(None)

    def stop(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        stdout, stderr = routed_streams()
        me = threading.get_ident()
        stdout.route(me, self)
        stderr.route(me, self)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                try:
                    self._execute(job)
                except BaseException:  # noqa: BLE001 - an interrupt that came too late
                    self._settle(job)  # for its statement must not end the console's thread
        finally:
            stdout.unroute(me)
            stderr.unroute(me)

    def _execute(self, job: Job) -> None:
        with self._lock:
            stopped = job.stopped_before_start
            if stopped is None:
                self._running = job
        if stopped is not None:
            if stopped is ConsoleClosed:
                self.silenced = True
            else:
                self.write("KeyboardInterrupt\n")
            self._settle(job)
            return
        try:
            self.interp.runcode(job.code)  # prints any error but SystemExit, as the REPL does
        except SystemExit:
            job.exit = True
        finally:
            self._settle(job)

    def _settle(self, job: Job) -> None:
        with self._lock:
            if self._running is job:
                self._running = None
                if self._interrupted:
                    # A Ctrl-C that just missed must not hit the next statement. Clearing it
                    # leaves 3.11's eval-breaker flag set (see unstick.py), so only when one
                    # was sent, and then unstick it.
                    self._interrupted = False
                    raise_in(self.thread, None)
                    from .unstick import unstick_eval_breaker

                    unstick_eval_breaker()
        if not job.done.is_set():
            job.done.set()
            job.events.put("done")
