"""What a run channel's bytes mean: the script's output, the box's notices, and events.

A client that asked for events (v2) gets the framed form (lager/protocol/events.py) from a box
that speaks it, and the plain form (stdout and stderr as they are) from an older one: which,
the first bytes tell (a framed channel starts with a Hello record). Either way, the caller
gets (stream, bytes) pieces to show, per-stream byte counts for a reattach, and each event, in
order: an event comes as an (EVENT, event) piece between the output pieces around it.

For a live view that draws its own line for a pause (fleets), `show_banners=False` leaves out
exactly the banner's bytes, which each notice locates (`banner_at`) in the run's stderr.
"""
from __future__ import annotations

from collections.abc import Callable

from lager.protocol import version
from lager.protocol.codec import ProtocolError
from lager.protocol.events import (
    EVENT,
    NOTICE,
    RECORD,
    STDERR,
    STDOUT,
    Event,
    FrameDecoder,
    Hello,
    PauseNotice,
    ResumeNotice,
)

OnEvent = Callable[[Event], None]
# (STDOUT or STDERR, bytes) or (EVENT, the event); the bytes as a memoryview when the channel
# handed one (client/chan_buffer.py take_views)
Piece = tuple[int, bytes | memoryview | Event]
# A framed channel's first bytes: a Hello record's header and the start of its JSON.
_HELLO_HEAD = b'{"op":"hello"'
_PEEK = RECORD.size + len(_HELLO_HEAD)


class RunStream:
    """One run channel's reader state (a reconnect makes a new one, keeping `received`)."""

    def __init__(self, asked_events: bool, show_banners: bool = True,
                 received: dict[int, int] | None = None) -> None:
        self.framed: bool | None = None if asked_events else False
        self.show_banners = show_banners
        self.received = received if received is not None else {STDOUT: 0, STDERR: 0}
        self.box_version: int | None = None  # None until known
        self._decoder = FrameDecoder()
        self._peeked = b""
        self._hidden: list[tuple[int, int]] = []  # stderr byte ranges left out (banners)
        self._error_line_starts = True  # the next framed stderr byte starts a refusal line

    # --- bytes in ---

    def stdout_data(self, data: bytes | memoryview) -> list[Piece]:
        """The channel's stdout: records when framed, the script's stdout otherwise."""
        if not data:
            return []
        if self.framed is None:
            self._peeked += data
            if self._peeked[0] != EVENT:  # the script's own stdout: an older box
                return self._plain_now()
            if len(self._peeked) < _PEEK:
                return []
            data, self._peeked = self._peeked, b""
            self.framed = data[0] == EVENT and data[RECORD.size:_PEEK] == _HELLO_HEAD
            if not self.framed:
                self.box_version = 1
        if not self.framed:
            self.received[STDOUT] += len(data)
            return [(STDOUT, data)]
        pieces: list[Piece] = []
        for stream, payload in self._decoder.feed(data):
            if stream == EVENT:
                assert not isinstance(payload, (bytes, memoryview))
                self._event(payload)
                pieces.append((EVENT, payload))
            elif stream == NOTICE:
                assert isinstance(payload, (bytes, memoryview))
                pieces.append((STDERR, payload))
            else:
                assert isinstance(payload, (bytes, memoryview))
                pieces.extend(self._output(stream, payload))
        return pieces

    def stderr_data(self, data: bytes) -> list[Piece]:
        """The channel's stderr: the script's stderr when plain; when framed, only the box's
        refusal lines (not the run's output, so not counted)."""
        if self.framed is None:
            # Before the hello: an older box's script, or a box refusing the run before its
            # hello; the stdout that follows (none after a refusal) tells which. The box sends
            # its hello first, so readers take stdout before stderr (follow.py's _drain).
            self.received[STDERR] += len(data)
            return [(STDERR, data)]
        if not self.framed:
            self.received[STDERR] += len(data)
            return [(STDERR, data)]
        return [(STDERR, self._as_errors(data))]

    def _as_errors(self, data: bytes) -> bytes:
        """A framed channel's stderr is only the box refusing the run (a reservation, a
        quota...): each line is said as the CLI says every error, `Error: REASON`."""
        said = bytearray()
        for piece in data.splitlines(keepends=True):
            if self._error_line_starts:
                said += b"Error: "
            said += piece
            self._error_line_starts = piece.endswith(b"\n")
        return bytes(said)

    def at_end(self) -> list[Piece]:
        """The channel ended: bytes still held to decide the form are the script's."""
        if self.framed is None and self._peeked:
            return self._plain_now()
        if self.framed and self._decoder.mid_record:
            raise ProtocolError("the run stream ended in the middle of a record")
        return []

    def older_box_note(self, box_name: str) -> str | None:
        """One line when events were asked of a box too old to send them."""
        if self.box_version is None or self.box_version >= 2:
            return None
        return version.older_box_note(
            self.box_version, box_name, "no structured pause notices (no live countdown)")

    # --- inside ---

    def _plain_now(self) -> list[Piece]:
        self.framed, self.box_version = False, 1
        data, self._peeked = self._peeked, b""
        return self.stdout_data(data) if data else []

    def _event(self, event: Event) -> None:
        if isinstance(event, Hello):
            self.box_version = event.v
        elif isinstance(event, (PauseNotice, ResumeNotice)) and event.banner_at \
                and not self.show_banners:
            start, end = event.banner_at[0], event.banner_at[-1]
            if end > self.received[STDERR]:
                self._hidden.append((max(start, self.received[STDERR]), end))

    def _output(self, stream: int, data: bytes | memoryview) -> list[Piece]:
        start = self.received[stream]
        self.received[stream] += len(data)
        if stream != STDERR or not self._hidden:
            return [(stream, data)]
        end = start + len(data)
        kept, pos = [], start
        for low, high in self._hidden:
            if high <= pos or low >= end:
                continue
            if low > pos:
                kept.append(data[pos - start:low - start])
            pos = max(pos, high)
        kept.append(data[pos - start:] if pos < end else b"")
        self._hidden = [(low, high) for low, high in self._hidden if high > end]
        joined = b"".join(kept)
        return [(STDERR, joined)] if joined else []
