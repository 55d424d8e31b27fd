"""Messages on the run and attach channels (client -> box), and the short JSON requests.

`run`: one RunHeader line, then the bytes of each file it lists, in order; after that the
client may send control lines (Enter, a signal, a stop), one JSON object each.
`attach`: one line, `ID` or `ID STDOUT_BYTES STDERR_BYTES` (LAGER_PROTOCOL in its env).
A detached run is answered by one RunStarted line.
`nets`: one InstrumentRequest line (lager.protocol.instrument). `download`: one
DownloadRequest line, answered by DownloadFile records and a DownloadEnd. The connection
keeper's own socket has its messages in lager.protocol.keeper.
"""
from __future__ import annotations

from .codec import Message, ProtocolError, decode_one_of, field, load_object, message

# Defined in its own module (the keeper path loads it without the run channel's messages),
# and still importable from here, as it always was.
from .instrument import InstrumentRequest as InstrumentRequest


@message
class FileEntry(Message):
    """One file of a run request: its bytes follow the header, in the order listed."""

    WHAT = "file entry"
    path: str
    size: int
    mode: int = 0o644


@message
class RunHeader(Message):
    """The run request. Every key but `main` and `files` may be left out (OpenSSH users write
    it by hand: the README's example is `{"main": "t.py", "files": [...]}`)."""

    WHAT = "run request"
    main: str
    files: list[FileEntry] = field(default_factory=list)
    script: str | None = None  # the name the user ran, for banners and --list
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 0.0
    detach: bool = False
    box: str | None = None
    stop_on_disconnect: bool = False
    client_ref: str | None = None
    pause_on_failure: bool = False
    safe_state: str = "on-failure"
    v: int = 1
    events: bool = False  # v2: frame the channel as records, with pause/resume notices
    # Shared boxes: who asks, in words (shown by the box, never trusted), and the queue's grant
    # once a client waited for its turn (the `reservation` subsystem's ticket).
    label: str | None = None
    ticket: str | None = None
    fleet: str | None = None  # the fleet id (`f-3c9a`) of a fan-out (issue 18), on --list


@message
class Enter(Message):
    """Resume the current pause (counted only while the run is paused)."""

    OP = "enter"
    WHAT = "control line"


@message
class Signal(Message):
    """Ctrl-C (INT) or SIGTERM (TERM) from the client, for the script's process group."""

    OP = "signal"
    WHAT = "control line"
    name: str


@message
class Stop(Message):
    """The client leaves and the box finishes stopping the run by itself."""

    OP = "stop"
    WHAT = "control line"


CONTROLS: tuple[type[Message], ...] = (Enter, Signal, Stop)


def decode_control(line: bytes) -> Enter | Signal | Stop:
    return decode_one_of(line, CONTROLS, "control line")  # type: ignore[return-value]


@message
class AttachRequest(Message):
    """What an attach line says. The line keeps the form OpenSSH users type; a client that
    wants events says so in its channel env (LAGER_PROTOCOL=2), not here."""

    WHAT = "attach request"
    id: str
    have: list[int] | None = None  # [stdout bytes, stderr bytes] the client already has


def parse_attach(line: str) -> AttachRequest:
    """`ID` or `ID STDOUT_BYTES STDERR_BYTES`."""
    text = line.strip()
    words = text.split()
    if len(words) == 3 and all(w.isdigit() and len(w) < 19 for w in words[1:]):
        return AttachRequest(words[0], [int(words[1]), int(words[2])])
    if len(words) > 1:
        raise ProtocolError("attach wants one line: ID [STDOUT_BYTES STDERR_BYTES]")
    return AttachRequest(text)


@message
class RunStarted(Message):
    """run -> a detached client (`--detach`): the only line on stdout, then status 0."""

    WHAT = "run started"
    id: str
    short_id: str  # the banner's form (`7f3a…e9`), for the hint the client prints


@message
class DownloadRequest(Message):
    """`download`: files of an ended run, each path relative to its dir; a directory brings
    every regular file below it. One line; the answer is DownloadFile records, then
    DownloadEnd."""

    WHAT = "download request"
    id: str
    paths: list[str]
    v: int = 1  # a request without v is version 1; ours set PROTOCOL_VERSION


@message
class DownloadFile(Message):
    """box -> client, per file: this line, then exactly `size` bytes of it."""

    WHAT = "download file"
    path: str
    size: int
    mode: int


@message
class DownloadMissing(Message):
    """A requested path that was not sent, and why (the other files still come)."""

    WHAT = "missing download"
    path: str
    reason: str


@message
class DownloadEnd(Message):
    """box -> client, last: the download is whole; then status 0."""

    WHAT = "download end"
    end: bool = True
    missing: list[DownloadMissing] = field(default_factory=list)


def decode_download(line: bytes) -> DownloadFile | DownloadEnd:
    """One line of a download's answer: a file's header or the end."""
    body = load_object(line, DownloadFile.WHAT)
    return DownloadEnd.from_dict(body) if body.get("end") else DownloadFile.from_dict(body)
