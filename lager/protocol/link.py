"""Messages on a run's private channels: the script's breakpoint link and the monitor's socket.

script  --pause, resumed-->  monitor  --script{body}-->  agent
script  <--resume, console--  monitor  <--to_script{body}--  agent
script  <--placed-----------  monitor   (the banner is on stderr now)

One message per SOCK_SEQPACKET datagram. The monitor puts each banner the script sends on the
run's stderr itself, so it knows the banner's exact byte range there (`banner_at`); the agent
hands that range to clients in its pause and resume notices (lager/protocol/events.py).
"""
from __future__ import annotations

from .codec import Message, decode_one_of, field, message

# typing's names are for type checkers only: importing it costs a lager command ~5 ms (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# --- the script and the agent (relayed by the monitor) --------------------------------------


@message
class PauseMsg(Message):
    """script -> agent: a pause began; it blocks until a ResumeMsg with its seq arrives."""

    OP = "pause"
    WHAT = "pause message"
    seq: int
    file: str
    line: int
    timeout: float  # seconds; 0 waits forever
    console: bool  # interactive=True: a console can be opened
    label: str | None = None
    on_timeout: str = "resume"
    kind: str = "pause"  # or "failure" (pause on failure)
    banner: str | None = None  # the banner the monitor puts on stderr for the script


@message
class ResumedMsg(Message):
    """script -> agent: the pause `seq` is over (how the script heard it), with the line the
    monitor puts on stderr (`=== resumed`, `=== auto-resumed after 300s`)."""

    OP = "resumed"
    WHAT = "resumed message"
    seq: int
    how: str
    by: str | None = None
    banner: str | None = None


@message
class ResumeMsg(Message):
    """agent -> script: resume pause `seq` (how: enter, continue, timeout)."""

    OP = "resume"
    WHAT = "resume message"
    seq: int
    how: str
    after: float = 0.0  # the pause's timeout, for `=== auto-resumed after ...`
    by: str | None = None


@message
class ConsoleMsg(Message):
    """agent -> script: a console for pause `seq`; its socket travels as SCM_RIGHTS."""

    OP = "console"
    WHAT = "console message"
    seq: int
    pty: bool
    cols: int
    rows: int


@message
class BannerPlaced(Message):
    """monitor -> script: the banner of message `seq` is on stderr now. The script waits for
    it before writing on, so its own next lines come after the banner, never before."""

    OP = "placed"
    WHAT = "banner placed"
    seq: int


FROM_SCRIPT: tuple[type[Message], ...] = (PauseMsg, ResumedMsg)
TO_SCRIPT: tuple[type[Message], ...] = (ResumeMsg, ConsoleMsg, BannerPlaced)


def decode_from_script(data: bytes | str | dict[str, Any]) -> PauseMsg | ResumedMsg:
    return _one_of(data, FROM_SCRIPT, "message from the script")  # type: ignore[return-value]


def decode_to_script(data: bytes | str | dict[str, Any]) -> ResumeMsg | ConsoleMsg | BannerPlaced:
    return _one_of(data, TO_SCRIPT, "message to the script")  # type: ignore[return-value]


def _one_of(data: bytes | str | dict[str, Any], classes: tuple[type[Message], ...],
            what: str) -> Message:
    if isinstance(data, dict):
        for cls in classes:
            if data.get("op") == cls.OP:
                return cls.from_dict(data)
        import json

        data = json.dumps(data)
    return decode_one_of(data, classes, what)


# --- the monitor and the agent ----------------------------------------------------------------

BannerAt = list[int]  # [start, end): byte offsets in the run's stderr


@message
class MonitorHello(Message):
    """monitor -> agent, on every connection: the script, the log's end, the current pause,
    and the highest pause number resumed so far (`resumed`), so that a new agent still answers
    a stale `ID#N` "already resumed" (ISSUE-NOTES 9). A monitor older than that field sends
    none: 0, nothing known."""

    OP = "hello"
    WHAT = "monitor hello"
    pid: int
    end: int
    pause: PauseMsg | None = None
    paused_at: float = 0.0  # wall clock
    banner_at: BannerAt | None = None
    resumed: int = 0


@message
class MonitorOutput(Message):
    """monitor -> agent: the run's log has grown."""

    OP = "output"
    WHAT = "monitor output"
    end: int  # the log holds records up to this offset


@message
class FromScript(Message):
    """monitor -> agent: a message from the script, with where its banner landed."""

    OP = "script"
    WHAT = "relayed script message"
    body: dict[str, Any]
    at: float = 0.0  # wall clock of the current pause's start
    banner_at: BannerAt | None = None


@message
class LinkClosed(Message):
    """monitor -> agent: the script closed its breakpoint link."""

    OP = "link_closed"
    WHAT = "link closed"


@message
class MonitorExit(Message):
    """monitor -> agent: the script exited with `status`; the log ends at `end`."""

    OP = "exit"
    WHAT = "monitor exit"
    status: int
    end: int


@message
class MonitorFailed(Message):
    """monitor -> agent: the monitor could not run the script, and why."""

    OP = "failed"
    WHAT = "monitor failure"
    error: str


@message
class SignalScript(Message):
    """agent -> monitor: signal the script and everything it started."""

    OP = "signal"
    WHAT = "signal request"
    sig: int


@message
class Window(Message):
    """agent -> monitor: read the script's pipes up to log offset `until` (None: no limit)."""

    OP = "window"
    WHAT = "window"
    until: int | None
    seen: int | None = None


@message
class ToScript(Message):
    """agent -> monitor: relay `body` to the script, with any fds sent alongside."""

    OP = "to_script"
    WHAT = "message to relay"
    body: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def encode_body(body: dict[str, Any]) -> bytes:
        """The relayed message as the script reads it (a ResumeMsg or ConsoleMsg's dict)."""
        return decode_to_script(body).encode()


FROM_MONITOR: tuple[type[Message], ...] = (MonitorHello, MonitorOutput, FromScript, LinkClosed,
                                           MonitorExit, MonitorFailed)
FROM_AGENT: tuple[type[Message], ...] = (SignalScript, Window, ToScript)


def decode_from_monitor(data: bytes) -> Message:
    return decode_one_of(data, FROM_MONITOR, "message from the monitor")


def decode_from_agent(data: bytes) -> Message:
    return decode_one_of(data, FROM_AGENT, "message from the agent")
