"""How often the box changes a connection's session keys: sshd's RekeyLimit ("1G 1h": after
so much data sent, or so much time, whichever comes first).

The box drives rekeying. paramiko deadlocks for 30 s, then drops the connection, when a channel
closes during a key exchange it started itself (paramiko issue #822), so lager's client never
starts one (client/ssh.py) and relies on this limit to change keys on long streams.
"""
from __future__ import annotations

from dataclasses import dataclass

from .run_limits import parse_bytes, parse_duration

MIN_BYTES = 64 << 10  # below this a busy stream would spend its time in key exchanges
MAX_BYTES = 1 << 40


@dataclass(frozen=True)
class RekeyLimit:
    bytes: int = 1 << 30
    seconds: float = 3600.0  # 0: no time limit


def parse_rekey_limit(text: str) -> RekeyLimit:
    """`1G`, `512M 30m`, `default none`: a size, then optionally a time, as sshd_config writes
    RekeyLimit ("default" keeps the box's own value, a time of "none" or 0 sets no time limit).

    asyncssh counts what the box sends; sshd counts both directions. lager's clients never
    rekey, so a long upload alone changes keys by time only."""
    parts = text.split()
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"{text[:40]!r} is not a rekey limit: use a size and an optional "
                         "time (1G, 1G 1h)")
    size = RekeyLimit.bytes if parts[0] == "default" else \
        parse_bytes(parts[0], MIN_BYTES, MAX_BYTES, "keys change after", "of data per key")
    when = parts[1] if len(parts) == 2 else "default"
    seconds = RekeyLimit.seconds if when == "default" else 0.0 if when in ("none", "0") else \
        parse_duration(when)
    return RekeyLimit(size, seconds)
