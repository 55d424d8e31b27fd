"""The SSH wire format as the quick client (client/quick_ssh.py) reads and writes it: message
numbers, the encodings of RFC 4251 5, and the errors that say how a connection went."""
from __future__ import annotations

import struct

# Message numbers (RFC 4250).
DISCONNECT, IGNORE, UNIMPLEMENTED, DEBUG = 1, 2, 3, 4
SERVICE_REQUEST, SERVICE_ACCEPT, EXT_INFO = 5, 6, 7
KEXINIT, NEWKEYS, KEX_ECDH_INIT, KEX_ECDH_REPLY = 20, 21, 30, 31
USERAUTH_REQUEST, USERAUTH_FAILURE, USERAUTH_SUCCESS, USERAUTH_BANNER = 50, 51, 52, 53
GLOBAL_REQUEST, REQUEST_SUCCESS, REQUEST_FAILURE = 80, 81, 82


class Unsupported(Exception):
    """The quick client cannot go on; nothing has reached a subsystem, so the caller may take
    the full path (which repeats the connection and reports any error in lager's words)."""


class Unreachable(Unsupported):
    """No SSH connection came up (refused, or closed before the handshake ended): the box may
    be between two agents (client/keeper_retry.py's patiently tries again)."""


class Lost(ConnectionError):
    """The connection broke, or the box broke the protocol."""


def printable(text: bytes, limit: int = 200) -> str:
    """What a box says, fit for one line of our stderr: no control characters (a hostile box
    must not drive the terminal with escape sequences), and not a page long."""
    decoded = text.decode("utf-8", "replace")[:limit]
    return "".join(c if c.isprintable() else "?" for c in decoded)


# --- wire encoding ---

def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def mpint(value: bytes) -> bytes:
    """An unsigned big-endian integer as an SSH mpint."""
    value = value.lstrip(b"\0")
    if value and value[0] & 0x80:
        value = b"\0" + value
    return string(value)


class Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise Lost("truncated message")
        self.pos += 1
        return self.data[self.pos - 1]

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise Lost("truncated message")
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def string(self) -> bytes:
        size = self.u32()
        if self.pos + size > len(self.data):
            raise Lost("truncated message")
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def names(self) -> list[bytes]:
        raw = self.string()
        return raw.split(b",") if raw else []
