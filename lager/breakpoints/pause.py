"""`pause()`: stop the script at the call site until the agent pushes a resume."""
from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..protocol.link import ConsoleMsg, PauseMsg, ResumedMsg, ResumeMsg
from .agent_link import AgentLink, agent_link
from .terminal import say

if TYPE_CHECKING:
    from ..console.sessions import ConsoleSessions

# Pauses from several threads are served one at a time: a second one waits its turn.
_pause_lock = threading.Lock()
CONSOLE_THREAD = "lager-console"  # the name lager.console gives its exec threads
_seq = itertools.count(1)
_LAGER_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_STDLIB_DIR = os.path.dirname(os.__file__)  # cheaper than sysconfig at import time
RESUME, SAFE, FAIL = protocol.ON_TIMEOUT_CHOICES


def _say(line: str) -> None:
    say(line)


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


def resolve_on_timeout(value: Any) -> str:
    """resume, safe or fail; anything else is said and taken as the default (never raises)."""
    if isinstance(value, str) and value.strip().lower() in protocol.ON_TIMEOUT_CHOICES:
        return value.strip().lower()
    _say(f"lager: pause on_timeout={value!r} is not one of "
         f"{', '.join(protocol.ON_TIMEOUT_CHOICES)}; using {RESUME!r}")
    return RESUME


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
           interactive: bool, *, failure: str | None = None,
           on_timeout: str = RESUME) -> str:
    ident = protocol.short_id(run_id)
    title = f" (failure: {failure})" if failure is not None else \
        (f' "{label}"' if label else "")
    lines = [f"=== lager breakpoint{title} at {where}  (id {ident})",
             f"    resume: press Enter here, or `lager python --continue {ident} --box {box}`"]
    if interactive:
        lines.append(f"    inspect: `lager python --console {ident} --box {box}`")
    if timeout <= 0:
        lines.append("    no auto-resume")
    else:
        then = {SAFE: ", after putting the run's nets in their safe state",
                FAIL: ", then pause() raises lager.PauseTimeout"}.get(on_timeout, "")
        lines.append(f"    auto-resume in {_fmt_seconds(timeout)}{then}")
    return "\n".join(lines)


@dataclass
class Stop:
    """One pause as the agent and the banner see it."""

    label: str | None
    file: str
    line: int
    timeout: float
    interactive: bool
    on_timeout: str = RESUME
    failure: str | None = None  # "ValueError: bad reading" for a pause on failure

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def agent_label(self) -> str | None:
        """What --list and busy messages show: the label, or the failure."""
        return f"failure: {self.failure}" if self.failure is not None else self.label


def pause(label: str | None = None, *, timeout: float | None = None,
          interactive: bool = False, on_timeout: str = RESUME) -> None:
    """Block here until resumed: Enter, `lager python --continue ID`, or the timeout.

    A safe no-op outside `lager python` or with LAGER_BREAKPOINTS=off. Never raises into the
    script, but for the one documented, opt-in case: on_timeout="fail" raises PauseTimeout when
    the timeout resumes it. (KeyboardInterrupt and SystemExit still stop the script, as a stop
    of the run should.) on_timeout="safe" puts the run's nets in their safe state first.
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
        text = None if label is None else str(label)
        stop = Stop(text, display_file(frame.f_code.co_filename) if frame else "?",
                    frame.f_lineno if frame else 0, resolve_timeout(timeout),
                    bool(interactive), resolve_on_timeout(on_timeout))
        consoles = _consoles_for(frame, text, stop.where) if stop.interactive else None
        with _pause_lock:
            how = hold(link, stop, consoles)
    except Exception as exc:  # noqa: BLE001 - pause() must never break the user's script
        _say(f"lager: breakpoint skipped: {type(exc).__name__}: {exc}")
        return
    if how == "timeout" and stop.on_timeout == FAIL:
        from ..errors import PauseTimeout

        shown = f'"{stop.label}" ' if stop.label else ""
        raise PauseTimeout(f"pause {shown}at {stop.where} timed out after "
                           f"{_fmt_seconds(stop.timeout)} with nobody resuming it "
                           '(on_timeout="fail")')


def _consoles_for(frame: FrameType | None, label: str | None,
                  where: str) -> Callable[[], ConsoleSessions]:
    def make() -> ConsoleSessions:
        from ..console.sessions import ConsoleSessions  # only paid for by a real pause

        return ConsoleSessions(frame, label, where)

    return make


def hold(link: AgentLink, stop: Stop,
         consoles: Callable[[], ConsoleSessions] | None) -> str:
    """Register the pause, show its banner, serve its consoles and wait for its resume.

    Returns how it ended: "enter", "continue", "timeout", or "lost" (the agent is gone).
    The caller holds the pause lock.
    """
    seq = next(_seq)
    # No trace function while paused: a console statement can leave CPython 3.11's eval
    # breaker stuck until its sessions close (lager/console/unstick.py), and a traced call
    # would spin on it. Pause on failure's own tracer is one; coverage or a debugger another.
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        return _hold(link, stop, consoles, seq)
    finally:
        sys.settrace(tracer)


# Characters of label (and of a failure's text) a pause carries: the monitor reads the link's
# datagrams 64 KiB at a time, and the label travels twice (alone, and in the banner), each
# character as up to 12 bytes of JSON (an astral one, an emoji, is a pair of \u escapes).
LABEL_ROOM = 2000


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= LABEL_ROOM else text[:LABEL_ROOM] + "\u2026"


def _hold(link: AgentLink, stop: Stop, consoles: Callable[[], ConsoleSessions] | None,
          seq: int) -> str:
    stop = dataclasses.replace(stop, label=_cut(stop.label), failure=_cut(stop.failure))
    run_id = os.environ.get(protocol.ENV_RUN_ID, "????????")
    box = os.environ.get(protocol.ENV_BOX_NAME, "BOX")
    text = banner(stop.label, stop.where, run_id, box, stop.timeout, stop.interactive,
                  failure=stop.failure, on_timeout=stop.on_timeout)
    _flush_script_output()
    # The monitor puts the banner on the run's stderr (after what the script wrote before),
    # so the box knows where it lies and can say so in its pause notice.
    link.send(PauseMsg(seq=seq, label=stop.agent_label, file=stop.file, line=stop.line,
                       timeout=stop.timeout, console=stop.interactive,
                       on_timeout=stop.on_timeout,
                       kind="failure" if stop.failure is not None else "pause",
                       banner=text + "\n"))
    sessions = consoles() if consoles is not None else None
    # Only a script that has opened nets has claims to annotate; others never import them.
    claims = sys.modules.get("lager.bench.claims")
    if claims is not None:
        claims.mark_paused(True, stop.agent_label)
    resume: ResumeMsg | None = None
    try:
        while True:
            msg = link.receive()
            if msg is None:
                _say("lager: lost the box agent; continuing")
                return "lost"
            body = msg.body
            if isinstance(body, ConsoleMsg) and sessions is not None and body.seq == seq \
                    and msg.fds:
                sessions.open(msg.fds[0], body.pty)
                for extra in msg.fds[1:]:
                    os.close(extra)
                continue
            for fd in msg.fds:
                os.close(fd)
            if isinstance(body, ResumeMsg) and body.seq == seq:
                resume = body
                break
    finally:
        if sessions is not None:
            sessions.close_all()
        if claims is not None:
            claims.mark_paused(False)
    how = resume.how or "continue"
    line = _resume_line(stop, how, resume.after or stop.timeout)
    _flush_script_output()
    link.send(ResumedMsg(seq=seq, how=how, by=resume.by, banner=line + "\n"))
    link.wait_placed(seq)
    return how


def _resume_line(stop: Stop, how: str, after_seconds: float) -> str:
    if how != "timeout":
        return "=== resumed"
    after = _fmt_seconds(after_seconds)
    if after_seconds > stop.timeout:  # the box's agent was down when it fell due
        after = (f"{_fmt_seconds(round(after_seconds, 1))} (the {_fmt_seconds(stop.timeout)} "
                 "auto-resume fell due while the box's agent was down)")
    if stop.on_timeout == SAFE:
        return f"=== auto-resumed after {after}; {_safe_state_here()}"
    if stop.on_timeout == FAIL:
        return f"=== timed out after {after}; raising lager.PauseTimeout"
    return f"=== auto-resumed after {after}"


def _flush_script_output() -> None:
    """What the script printed before the banner comes before it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a closed or odd stream: nothing of the script's is waiting in it


def _safe_state_here() -> str:
    """on_timeout="safe": every net this script has claimed, to its safe state, in this
    process (the script holds their claims, so the agent could not)."""
    claims = sys.modules.get("lager.bench.claims")
    nets = claims.claimed_ever() if claims is not None else {}
    if not nets:
        return "safe state: this script has claimed no nets"
    from ..bench.kinds.safe import apply_nets

    try:
        done, failed = apply_nets(nets)
    except Exception as exc:  # noqa: BLE001 - reported; the script resumes as it was told to
        return f"safe state failed: {type(exc).__name__}: {exc}"
    return "safe state: " + (", ".join(done + failed) or "nothing to do")


def breakpoint_hook(*args: Any, **kwargs: Any) -> None:
    """PYTHONBREAKPOINT target: `breakpoint("check DUT")` is `pause("check DUT")`."""
    pause(*args, **kwargs)
