"""What the agent sends down a console's socket: keystrokes, window sizes and interrupts.

The SSH channel carries three things a console needs: the bytes typed, the window size (at the
PTY request and at every change), and breaks/signals. A plain byte stream can carry only the
first, so the agent frames all three: a 1-byte kind and a 4-byte length, then the payload.
Only the agent holds the other end of the socket, so a frame is never the client's own bytes
misread. The console's answers go back unframed: there is only one kind of output.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_HEADER = struct.Struct("!cI")
_SIZE = struct.Struct("!HH")
DATA, WINDOW, INTERRUPT = b"d", b"w", b"i"
# The agent reads the channel 64 KiB at a time; anything far above that is a broken stream.
MAX_FRAME = 1 << 20

# A PTY request may say 0 (unknown) or 4 billion columns; the editor gets something drawable.
DEFAULT_COLS, DEFAULT_ROWS = 80, 24
MAX_COLS = MAX_ROWS = 4096


class WireError(ValueError):
    """The console's input stream is not frames: the session ends rather than guess."""


@dataclass(frozen=True)
class Data:
    payload: bytes


@dataclass(frozen=True)
class Window:
    cols: int
    rows: int


@dataclass(frozen=True)
class Interrupt:
    """A break or a signal on the channel: Ctrl-C, whatever the terminal mode."""


Frame = Data | Window | Interrupt


def clamp_size(cols: int, rows: int) -> tuple[int, int]:
    cols = DEFAULT_COLS if cols <= 0 else min(cols, MAX_COLS)
    rows = DEFAULT_ROWS if rows <= 0 else min(rows, MAX_ROWS)
    return cols, rows


def data(payload: bytes) -> bytes:
    return _HEADER.pack(DATA, len(payload)) + payload


def window(cols: int, rows: int) -> bytes:
    cols, rows = clamp_size(cols, rows)
    return _HEADER.pack(WINDOW, _SIZE.size) + _SIZE.pack(cols, rows)


def interrupt() -> bytes:
    return _HEADER.pack(INTERRUPT, 0)


class FrameDecoder:
    """Bytes in, whole frames out, however the stream was split."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        frames: list[Frame] = []
        while len(self._buf) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise WireError(f"console frame of {length} bytes")
            end = _HEADER.size + length
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[_HEADER.size:end])
            del self._buf[:end]
            if kind == DATA:
                frames.append(Data(payload))
            elif kind == WINDOW and length == _SIZE.size:
                frames.append(Window(*clamp_size(*_SIZE.unpack(payload))))
            elif kind == INTERRUPT:
                frames.append(Interrupt())
            else:
                raise WireError(f"unknown console frame {kind!r}")
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet complete: non-zero at EOF means the stream was cut."""
        return len(self._buf)
