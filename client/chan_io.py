"""Reading a channel's stream to its end: the one loop for stdout and stderr alike."""
from __future__ import annotations

from collections.abc import Callable

_PIECE = 65536


def read_to_end(recv: Callable[[int], bytes]) -> bytes:
    """Everything `recv` (a channel's recv or recv_stderr) gives until it says EOF (b"")."""
    return b"".join(iter(lambda: recv(_PIECE), b""))
