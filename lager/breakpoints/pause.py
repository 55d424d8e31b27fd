"""`pause()`: stop the script at the call site until the agent pushes a resume."""
from __future__ import annotations

import itertools
import os
import sys
import threading
from types import FrameType
from typing import Any

from .. import protocol
from .agent_link import AgentLink, agent_link

# Pauses from several threads are served one at a time: a second one waits its turn.
_pause_lock = threading.Lock()
CONSOLE_THREAD = "lager-console"  # the name lager.console gives its exec threads
_seq = itertools.count(1)
_LAGER_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_STDLIB_DIR = os.path.dirname(os.__file__)  # cheaper than sysconfig at import time


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def resolve_timeout(timeout: float | None) -> float:
    """`timeout=` argument, then LAGER_BREAKPOINT_TIMEOUT, then 300 s; 0 means forever."""
    if timeout is not None:
        try:
            value = float(timeout)
            if value >= 0 and value == value:
                return value
        except (TypeError, ValueError):
            pass
        _say(f"lager: pause timeout={timeout!r} is not a number of seconds >= 0; "
             f"using {protocol.DEFAULT_BREAKPOINT_TIMEOUT:g}s")
        return protocol.DEFAULT_BREAKPOINT_TIMEOUT
    raw = os.environ.get(protocol.ENV_BREAKPOINT_TIMEOUT)
    if raw is None or raw.strip() == "":
        return protocol.DEFAULT_BREAKPOINT_TIMEOUT
    try:
        value = float(raw)
        if value >= 0 and value == value and value != float("inf"):
            return value
    except ValueError:
        pass
    _say(f"lager: {protocol.ENV_BREAKPOINT_TIMEOUT}={raw!r} is not a number of seconds >= 0; "
         f"using {protocol.DEFAULT_BREAKPOINT_TIMEOUT:g}s")
    return protocol.DEFAULT_BREAKPOINT_TIMEOUT


def _caller_frame() -> FrameType | None:
    """The user's frame: skip lager itself and stdlib wrappers (functools, contextlib)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_LAGER_DIR) or name.startswith(_STDLIB_DIR)):
            return frame
        frame = frame.f_back
    return None


def display_file(filename: str) -> str:
    """The name the user ran for the main script; a path relative to the run for the rest."""
    path = os.path.realpath(filename)
    main = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if path == main:
        return os.environ.get(protocol.ENV_SCRIPT_NAME) or os.path.basename(path)
    rel = os.path.relpath(path, os.path.realpath(os.getcwd()))
    return filename if rel.startswith("..") else rel


def _fmt_seconds(value: float) -> str:
    return f"{value:g}s"


def banner(label: str | None, where: str, run_id: str, box: str, timeout: float,
           interactive: bool) -> str:
    ident = protocol.short_id(run_id)
    title = f' "{label}"' if label else ""
    lines = [f"=== lager breakpoint{title} at {where}  (id {ident})",
             f"    resume: press Enter here, or `lager python --continue {ident} --box {box}`"]
    if interactive:
        lines.append(f"    inspect: `lager python --console {ident} --box {box}`")
    lines.append(f"    auto-resume in {_fmt_seconds(timeout)}" if timeout > 0
                 else "    no auto-resume")
    return "\n".join(lines)


def pause(label: str | None = None, *, timeout: float | None = None,
          interactive: bool = False) -> None:
    """Block here until resumed: Enter, `lager python --continue ID`, or the timeout.

    A safe no-op outside `lager python` or with LAGER_BREAKPOINTS=off. Never raises into the
    script (KeyboardInterrupt and SystemExit still stop it, as a stop of the run should).
    """
    if protocol.breakpoints_disabled(os.environ.get(protocol.ENV_BREAKPOINTS)):
        return
    if threading.current_thread().name == CONSOLE_THREAD:
        # The pause that owns this console holds the pause lock: waiting here would hang it.
        _say("lager: pause() inside the console is ignored")
        return
    try:
        link = agent_link()
        if link is None:
            if not os.environ.get(protocol.ENV_AGENT_FD):  # a child of a run stays quiet
                _say("not running under `lager python`; skipping breakpoint")
            return
        frame = _caller_frame()
        with _pause_lock:
            _pause(link, None if label is None else str(label), resolve_timeout(timeout),
                   bool(interactive), frame)
    except Exception as exc:  # noqa: BLE001 - pause() must never break the user's script
        _say(f"lager: breakpoint skipped: {type(exc).__name__}: {exc}")


def _pause(link: AgentLink, label: str | None, timeout: float, interactive: bool,
           frame: FrameType | None) -> None:
    from ..console.sessions import ConsoleSessions  # only paid for by a real pause

    where_file = display_file(frame.f_code.co_filename) if frame else "?"
    line = frame.f_lineno if frame else 0
    seq = next(_seq)
    link.send({"op": "pause", "seq": seq, "label": label, "file": where_file, "line": line,
               "timeout": timeout, "console": interactive})
    run_id = os.environ.get(protocol.ENV_RUN_ID, "????????")
    box = os.environ.get(protocol.ENV_BOX_NAME, "BOX")
    _say(banner(label, f"{where_file}:{line}", run_id, box, timeout, interactive))
    consoles = ConsoleSessions(frame, label, f"{where_file}:{line}") if interactive else None
    # Only a script that has opened nets has claims to annotate; others never import them.
    claims = sys.modules.get("lager.bench.claims")
    if claims is not None:
        claims.mark_paused(True, label)
    try:
        while True:
            msg = link.receive()
            if msg is None:
                _say("lager: lost the box agent; continuing")
                return
            op, msg_seq = msg.body.get("op"), msg.body.get("seq")
            if op == "console" and consoles is not None and msg_seq == seq and msg.fds:
                consoles.open(msg.fds[0], bool(msg.body.get("pty")))
                for extra in msg.fds[1:]:
                    os.close(extra)
                continue
            for fd in msg.fds:
                os.close(fd)
            if op == "resume" and msg_seq == seq:
                break
    finally:
        if consoles is not None:
            consoles.close_all()
        if claims is not None:
            claims.mark_paused(False)
    if msg.body.get("how") == "timeout":
        _say(f"=== auto-resumed after {_fmt_seconds(float(msg.body.get('after', timeout)))}")
    else:
        _say("=== resumed")


def breakpoint_hook(*args: Any, **kwargs: Any) -> None:
    """PYTHONBREAKPOINT target: `breakpoint("check DUT")` is `pause("check DUT")`."""
    pause(*args, **kwargs)
