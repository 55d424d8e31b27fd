"""The connection keeper's socket (client/mux.py, client/keeper_stream.py, and an attached run
serving as keeper): one KeeperRequest in, one KeeperReply out, for a short request; StreamOpen,
then frames, for a console.

Apart from the run channel's messages (lager.protocol.channel) because every short command
from a second terminal loads this module: it makes these six classes, not all twenty-odd
(issue 13). Like every message, they are made by codec's `@message`, so this path imports
neither dataclasses nor typing.
"""
from __future__ import annotations

from .codec import Message, message

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@message
class KeeperRequest(Message):
    """client -> its connection keeper: one short subsystem request to forward."""

    WHAT = "keeper request"
    subsystem: str
    line: str | None = None
    env: dict[str, str] | None = None
    v: int = 1  # a request without v is version 1; ours set PROTOCOL_VERSION
    # With a `list`: the bare continue id to number. A keeper that knows the pause (an
    # attached run's own, a standalone keeper's `pauses` table) answers `pinned` at once;
    # others (and older ones) answer the list. With a bare `continue` (the same id): the keeper
    # numbers it and sends `ID#N` in the same exchange (KeeperReply.pinned says what it sent);
    # a keeper from before forwards the bare id.
    pin: str | None = None


@message
class StreamOpen(Message):
    """client -> its keeper's stream socket (client/keeper_stream.py): open a console channel;
    the frames that follow carry its bytes."""

    WHAT = "keeper stream request"
    subsystem: str
    line: str | None = None
    pty: list[Any] | None = None  # [TERM, cols, rows]


@message
class StreamRefused(Message):
    """keeper -> client, instead of the open channel: why not (the client goes another way)."""

    WHAT = "keeper stream refusal"
    error: str = ""


@message
class StreamResize(Message):
    """client -> keeper: the terminal's new size, for the console's PTY."""

    WHAT = "window size"
    cols: int
    rows: int


@message
class StreamExit(Message):
    """keeper -> client: the console channel's exit status, its last frame."""

    WHAT = "console exit"
    status: int


@message
class KeeperReply(Message):
    """The box's answer (status >= 0), or why there is none and whether the request went out
    (`delivered`: False means the client may safely go direct)."""

    WHAT = "keeper reply"
    out: str = ""
    err: str = ""
    status: int = -1
    error: str | None = None
    delivered: bool | None = None
    v: int = 1  # a request without v is version 1; ours set PROTOCOL_VERSION
    pinned: str | None = None  # the answer to a `pin`, given without asking the box
