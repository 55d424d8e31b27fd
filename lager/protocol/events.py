"""The run channel's framed form (v2, asked for with `events`): output and events as records.

A client that asks for events (`"events": true` in the run header, or `LAGER_PROTOCOL=2` in an
attach channel's env) gets every byte of the run on the channel's stdout as records:

    [stream: 1 byte][length: 4 bytes, big-endian][payload]

stream 1 is the script's stdout, 2 its stderr, 3 an event (one JSON object), 4 a line of the
box's own for the client's stderr (`lager: run timed out ...`), which is not the script's and
so not counted in the stderr offset. Offsets stay per stream (a reattach still says how many
bytes of each it has), and the payloads of 1 and 2 are exactly the bytes a client that did not
ask gets on stdout and stderr. One stream of records keeps the box's notices in order with the
output. A refusal still comes as one line on the channel's stderr and an exit status. The first
record is always a Hello event: a client that sees anything else first speaks to a box older
than version 2.

Events: Hello; PauseNotice before the banner's bytes and on attaching to a paused run;
ResumeNotice before the resume line's bytes. `banner_at` is the banner's [start, end) in the
run's stderr byte count, so a client can leave exactly those bytes out of a live view.
"""
from __future__ import annotations

import struct
import time

from .codec import Message, ProtocolError, decode_one_of, message

TYPE_CHECKING = False  # collections.abc costs a short command's start ~3 ms (issue 13)
if TYPE_CHECKING:
    from collections.abc import Sized

STDOUT, STDERR, EVENT, NOTICE = 1, 2, 3, 4
RECORD = struct.Struct(">BI")
MAX_EVENT = 64 * 1024  # an event is a small JSON object; more is a broken stream


@message
class Hello(Message):
    """The first record of a framed channel: the box's protocol version and the run."""

    OP = "hello"
    WHAT = "hello event"
    v: int
    run_id: str


@message
class PauseNotice(Message):
    """A run is paused (sent as it pauses, and to a client attaching while it is paused)."""

    OP = "pause"
    WHAT = "pause notice"
    run_id: str
    seq: int  # the pause's number: `--continue ID#SEQ` resumes this pause and no later one
    file: str
    line: int
    label: str | None = None
    kind: str = "pause"  # or "failure"
    console: bool = False
    timeout: float = 0.0  # 0: no auto-resume
    deadline: float | None = None  # wall clock of the auto-resume, None without one
    remaining: float | None = None  # seconds to the auto-resume when the notice was sent
    on_timeout: str = "resume"
    banner: str | None = None  # the banner's text, as it appears on stderr
    banner_at: list[int] | None = None  # its [start, end) in the run's stderr bytes

    @property
    def continue_id(self) -> str:
        """What `lager python --continue` takes to resume exactly this pause."""
        return f"{self.run_id}#{self.seq}"

    def deadline_monotonic(self, received_at: float | None = None) -> float | None:
        """The auto-resume on this machine's monotonic clock (clocks of box and laptop
        may disagree; `remaining` does not depend on them)."""
        if self.remaining is None:
            return None
        return (time.monotonic() if received_at is None else received_at) + self.remaining


@message
class ResumeNotice(Message):
    """The pause `seq` is over: how (enter, continue, timeout), and by whom when known."""

    OP = "resume"
    WHAT = "resume notice"
    run_id: str
    seq: int
    how: str
    by: str | None = None
    banner: str | None = None  # the resume line (`=== resumed`)
    banner_at: list[int] | None = None


Event = Hello | PauseNotice | ResumeNotice
EVENTS: tuple[type[Message], ...] = (Hello, PauseNotice, ResumeNotice)


def decode_event(data: bytes) -> Event:
    return decode_one_of(data, EVENTS, "event")  # type: ignore[return-value]


def record(stream: int, payload: Sized) -> bytes:
    """The record header for payload (the payload itself is written after it): bytes, or
    anything with a length (the agent's FileBytes, still on disk)."""
    return RECORD.pack(stream, len(payload))


def event_record(event: Message) -> bytes:
    body = event.encode()
    return RECORD.pack(EVENT, len(body)) + body


class FrameDecoder:
    """Splits a framed channel's bytes into (stream, bytes) pieces as they arrive.

    Output payloads are passed on piece by piece (a 1 MiB record need not be whole before
    its first bytes show); events are collected whole and decoded. Anything that is not a
    valid record raises ProtocolError.
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self._stream = 0
        self._left = 0
        self._in_payload = False
        self._event = bytearray()

    def feed(self, data: bytes | memoryview) -> list[tuple[int, bytes | memoryview | Event]]:
        """bytes in, bytes out (a payload is copied out of a packet that holds more); a
        memoryview in, views of it out (no copy: the client's run reader, client/follow.py)."""
        pieces: list[tuple[int, bytes | memoryview | Event]] = []
        view = memoryview(data)
        pos, size = 0, len(view)
        while pos < size or (self._in_payload and self._left == 0):
            if not self._in_payload:
                need = RECORD.size - len(self._head)
                self._head += view[pos:pos + need]
                pos += min(need, size - pos)
                if len(self._head) < RECORD.size:
                    break
                self._stream, self._left = RECORD.unpack(self._head)
                self._head.clear()
                if self._stream not in (STDOUT, STDERR, EVENT, NOTICE) or \
                        (self._stream == EVENT and not 0 < self._left <= MAX_EVENT):
                    raise ProtocolError(f"malformed run stream: a record of stream "
                                        f"{self._stream} and {self._left} bytes")
                self._in_payload = True
                continue
            take = min(self._left, size - pos)
            piece = view[pos:pos + take]
            pos += take
            self._left -= take
            if self._stream == EVENT:
                self._event += piece
                if self._left == 0:
                    pieces.append((EVENT, decode_event(bytes(self._event))))
                    self._event.clear()
            elif take:
                # A packet that is all payload is passed on as it is, not copied.
                whole = take == size and isinstance(data, bytes)
                pieces.append((self._stream, data if whole else
                               piece if isinstance(data, memoryview) else bytes(piece)))
            if self._left == 0:
                self._in_payload = False
        return pieces

    @property
    def mid_record(self) -> bool:
        return bool(self._head) or self._in_payload
