"""Pause on failure (issue 15): an exception nothing will catch stops the script where it was
raised, before any `finally` or `__exit__` runs, so the bench is still as the failure left it.

On with `lager python --pause-on-failure`, LAGER_PAUSE_ON_FAILURE=1, or `pause_on_failure()`.
How: a trace function on the main thread (sys.settrace) sees each exception as it is raised,
or as it reaches a frame of the user's own files; unwind.py reads ahead whether anything will
catch it. When nothing will, the script pauses right there, inside the trace call, with the
whole failing stack alive: a console there opens in the failing frame's namespace, with
`frames()`, `frame(n)` and `exc`. Resuming returns from the trace call and Python unwinds as
if nothing had paused: same traceback, same exit code.

Only frames of the user's files get a local trace function (they alone need the 'exception'
event), so library code runs with a global trace call per function call and nothing more.
Exceptions in other threads are reported, not paused (threading.excepthook). Inside pytest,
which catches every test's exception, the pause comes from a pytest hook (pytest_plugin.py).
"""
from __future__ import annotations

import atexit
import os
import sys
import sysconfig
import threading
import traceback
from types import FrameType, TracebackType
from typing import Any

from .. import protocol
from .agent_link import agent_link
from .pause import _LAGER_DIR, Stop, _pause_lock, display_file, hold, resolve_timeout
from .terminal import say

PYTEST_PLUGIN = protocol.PYTEST_PLUGIN
_SEEN = "_lager_failure_paused"  # set on an exception once it has paused
_enabled = False
_user_files: dict[str, bool] = {}
_not_user = tuple({p for p in (sysconfig.get_paths().get("stdlib"),
                               sysconfig.get_paths().get("platstdlib"),
                               sysconfig.get_paths().get("purelib"),
                               sysconfig.get_paths().get("platlib"), _LAGER_DIR) if p})
# The user's files: under the run's dir (the script's cwd when lager is imported) or the
# main script's own dir.
_roots = tuple({os.path.realpath(os.getcwd()) + os.sep} | (
    {os.path.dirname(os.path.realpath(sys.argv[0])) + os.sep}
    if sys.argv and sys.argv[0] and not sys.argv[0].startswith("-") else set()))
_thread_hook: Any = None
_atexit_done = False


def _stop_tracing() -> None:
    global _enabled
    _enabled = False
    sys.settrace(None)


def pause_on_failure(enabled: bool = True) -> None:
    """Pause where an exception nothing catches is raised (main thread), before any cleanup
    runs. A no-op outside `lager python` or with LAGER_BREAKPOINTS=off. Call it from the main
    thread; `enabled=False` turns it off again."""
    global _enabled, _atexit_done
    if not enabled:
        _enabled = False
        sys.settrace(None)
        return
    if _enabled or _disabled() or agent_link() is None:
        return
    if threading.current_thread() is not threading.main_thread():
        say("lager: pause_on_failure() works from the main thread only; not enabled")
        return
    _enabled = True
    _trace_running_frames(sys._getframe(1))
    sys.settrace(_global_trace)
    if not _atexit_done:
        _atexit_done = True
        atexit.register(_stop_tracing)  # before modules are torn down under the trace function
    _hook_threads()
    _register_pytest_plugin()


def enable_from_env() -> None:
    """At `import lager`: LAGER_PAUSE_ON_FAILURE (set by --pause-on-failure) turns it on."""
    if protocol.switched_on(os.environ.get(protocol.ENV_PAUSE_ON_FAILURE)) and \
            threading.current_thread() is threading.main_thread():
        pause_on_failure()


def _disabled() -> bool:
    return protocol.breakpoints_disabled(os.environ.get(protocol.ENV_BREAKPOINTS))


def is_user_file(filename: str) -> bool:
    """The user's own code: under the run's dir, and not lager, the stdlib or a package."""
    known = _user_files.get(filename)
    if known is None:
        path = os.path.realpath(filename) if not filename.startswith("<") else ""
        known = bool(path) and path.startswith(_roots) and \
            not path.startswith(_not_user) and "site-packages" not in path
        _user_files[filename] = known
    return known


# -- the trace functions -------------------------------------------------------------------


def _trace_running_frames(frame: FrameType | None) -> None:
    """Frames already running (the script's module, at `import lager`) get the local trace
    too: sys.settrace reaches only frames that start after it."""
    while frame is not None:
        if is_user_file(frame.f_code.co_filename):
            frame.f_trace_lines = False
            frame.f_trace = _local_trace
        frame = frame.f_back


def _global_trace(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "call" and is_user_file(frame.f_code.co_filename):
        frame.f_trace_lines = False  # only 'exception' (and 'return') events are wanted
        return _local_trace
    return None


def _local_trace(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "exception" and _enabled:
        _on_exception(frame, arg[1], arg[2])
    return _local_trace


def _on_exception(frame: FrameType, exc: BaseException, tb: TracebackType | None) -> None:
    """Called as exc reaches frame (raised there, or arrived from a call). Pauses when nothing
    will catch it. A stop of the run (KeyboardInterrupt) while paused leaves from here."""
    if not isinstance(exc, Exception) or isinstance(exc, (StopIteration, StopAsyncIteration)):
        return  # not a failure: Ctrl-C, sys.exit(), the end of an iteration
    if getattr(exc, _SEEN, False) or _disabled():
        return
    try:
        from .unwind import UNHANDLED, predict

        if predict(frame, exc) != UNHANDLED:
            return
    except Exception as error:  # noqa: BLE001 - the trace function must never fail the script
        say(f"lager: pause on failure skipped: {type(error).__name__}: {error}")
        return
    outer = _outer_frames(frame.f_back)
    pause_for_failure(exc, outer + _tb_frames(tb))


def _outer_frames(frame: FrameType | None) -> list[tuple[FrameType, int]]:
    found = []
    while frame is not None:
        found.append((frame, frame.f_lineno))
        frame = frame.f_back
    return list(reversed(found))


def _tb_frames(tb: TracebackType | None) -> list[tuple[FrameType, int]]:
    found = []
    while tb is not None:
        found.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    return found


# -- the pause -----------------------------------------------------------------------------


def pause_for_failure(exc: BaseException, entries: list[tuple[FrameType, int]]) -> None:
    """The failure pause: the traceback, then the banner; a console in the deepest frame of
    the user's files; on resume, back to the caller, which lets exc go on. Never raises but
    for a stop of the run (KeyboardInterrupt), which then replaces exc, as a stop should."""
    if _disabled() or not entries or getattr(exc, _SEEN, False):
        return
    link = agent_link()
    if link is None:
        return
    try:
        setattr(exc, _SEEN, True)  # once: it reaches more frames, and pytest's hook, later
        from ..console.frames import FailedStack

        user = [i for i, (f, _) in enumerate(entries) if is_user_file(f.f_code.co_filename)]
        if user:  # from the user's first frame: inside pytest, the test, not pytest itself
            entries = entries[user[0]:]
        current = user[-1] - user[0] if user else len(entries) - 1
        frame, line = entries[current]
        say(_traceback_text(exc, entries))
        stop = Stop(None, display_file(frame.f_code.co_filename), line, resolve_timeout(None),
                    True, failure=_one_line(exc))
        stack = FailedStack(entries, current, exc)

        def consoles() -> Any:
            from ..console.sessions import ConsoleSessions

            return ConsoleSessions(frame, None, f"(failure: {stop.failure}) {stop.where}",
                                   seed=stack.seed())

        with _pause_lock:
            hold(link, stop, consoles)
    except Exception as error:  # noqa: BLE001 - the failure goes on as if never paused
        say(f"lager: pause on failure skipped: {type(error).__name__}: {error}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    shown = f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__
    return shown if len(shown) <= 160 else shown[:159] + "\u2026"


def _traceback_text(exc: BaseException, entries: list[tuple[FrameType, int]]) -> str:
    """The traceback as Python will print it at the end, from the user's first frame (inside
    pytest: from the test, not pytest's own frames), with any chained exceptions before it."""
    report = traceback.TracebackException(type(exc), exc, None)
    report.stack = traceback.StackSummary.extract(
        ((f, line) for f, line in entries), capture_locals=False)
    return "".join(report.format()).rstrip("\n")


# -- threads and pytest --------------------------------------------------------------------


def _hook_threads() -> None:
    global _thread_hook
    if _thread_hook is not None:
        return
    _thread_hook = threading.excepthook

    def report(args: threading.ExceptHookArgs) -> None:
        _thread_hook(args)
        if _enabled and args.exc_type is not SystemExit:
            name = args.thread.name if args.thread is not None else "?"
            say(f"lager: the exception in thread {name!r} was not paused: pause on failure "
                "covers the main thread only")

    threading.excepthook = report


def _register_pytest_plugin() -> None:
    """pytest.main() run by the script loads lager's plugin, whose hook pauses at a failing
    test. PYTEST_PLUGINS is read when pytest configures itself; when that has happened
    already (pause_on_failure() in a conftest or a test module), the plugin joins the
    running pytest's plugin manager instead."""
    name = protocol.PYTEST_PLUGINS_ENV
    listed = os.environ.get(name)
    os.environ[name] = protocol.with_pytest_plugin(listed)
    config_module = sys.modules.get("_pytest.config")
    if config_module is None or os.environ[name] == listed:
        return  # no pytest yet, or one that loads the plugin itself (perhaps right now)
    import gc

    from . import pytest_plugin

    for config in gc.get_referrers(config_module.Config):  # its live instances
        if isinstance(config, config_module.Config):
            manager = config.pluginmanager
            if not manager.is_registered(pytest_plugin) and \
                    manager.get_plugin(PYTEST_PLUGIN) is None:
                manager.register(pytest_plugin, PYTEST_PLUGIN)


def enabled() -> bool:
    return _enabled
