"""How much a box keeps of its runs: each run's output log, and how long and how many
finished runs stay listable (issue 11; `lager-box serve --run-log-limit`, `--keep-finished`,
`--keep-finished-runs`, and the deploy role's variables of the same names).

The parsers raise ValueError with the one line a user is shown; `lager-box serve` prefixes
the option's name and exits 2.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .runlog import DEFAULT_LIMIT, MAX_LIMIT, MIN_LIMIT

DEFAULT_KEEP_FINISHED = 24 * 3600.0  # seconds a finished run stays, from its end
DEFAULT_KEEP_FINISHED_RUNS = 100  # finished runs kept, newest first
MAX_KEEP_FINISHED = 366 * 24 * 3600.0
MAX_KEEP_FINISHED_RUNS = 100_000

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}  # as sshd_config
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])", re.IGNORECASE)


@dataclass(frozen=True)
class RunLimits:
    log_limit: int = DEFAULT_LIMIT  # bytes of output log kept per run (newest)
    keep_finished: float = DEFAULT_KEEP_FINISHED
    keep_finished_runs: int = DEFAULT_KEEP_FINISHED_RUNS


def _shown(text: str) -> str:
    return repr(text[:40])


def describe_size(size: int) -> str:
    """64M, 1G, 1536K, 1000000: the shortest exact way to write it back."""
    for unit in "TGMK":
        if size % _SIZE_UNITS[unit.lower()] == 0:
            return f"{size // _SIZE_UNITS[unit.lower()]}{unit}"
    return str(size)


def parse_size(text: str) -> int:
    """Bytes from `64M`, `1G`, `1.5G`, `512KiB` or plain bytes (K, M, G, T are powers of
    1024), within the limits a run's log may have."""
    return parse_bytes(text, MIN_LIMIT, MAX_LIMIT, "a run's log keeps", "a run")


def parse_bytes(text: str, low: int, high: int, low_means: str, high_means: str) -> int:
    """Bytes as parse_size reads them, between low and high; the error says what low is for
    ("a run's log keeps at least 64K") and what high is per ("at most 1T a run")."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{_shown(text)} is not a size: use bytes or a number with K, M, G "
                         "or T (64M, 1G)")
    value = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value > high:  # 400 digits are a float's inf
        raise ValueError(f"{_shown(text)} is too big: at most {describe_size(high)} "
                         f"{high_means}")
    size = math.floor(value)
    if size < low:
        raise ValueError(f"{_shown(text)} is too small: {low_means} at least "
                         f"{describe_size(low)}")
    return size


def parse_duration(text: str) -> float:
    """Seconds from `24h`, `90m`, `3600s`, `1d`, `2w`, `1h30m` or plain seconds; at least 1 s,
    at most a year."""
    given = text.strip()
    seconds: float | None = None
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", given):
        seconds = float(given)
    elif given and re.fullmatch(f"(?:{_DURATION_PART.pattern})+", given, re.IGNORECASE):
        seconds = sum(float(n) * _DURATION_UNITS[u.lower()]
                      for n, u in _DURATION_PART.findall(given))
    if seconds is None:
        raise ValueError(f"{_shown(text)} is not a duration: use 24h, 90m, 3600s, 1d, 2w or "
                         "seconds")
    if seconds < 1:
        raise ValueError(f"{_shown(text)} is too short: at least 1s")
    if seconds > MAX_KEEP_FINISHED:
        raise ValueError(f"{_shown(text)} is too long: at most 366d")
    return seconds


def parse_count(text: str) -> int:
    """A number of finished runs: 1 to MAX_KEEP_FINISHED_RUNS."""
    given = text.strip()
    if not re.fullmatch(r"[0-9]+", given):  # ASCII: "²".isdigit() is True, int("²") fails
        raise ValueError(f"{_shown(text)} is not a number of runs")
    count = int(given)
    if not 1 <= count <= MAX_KEEP_FINISHED_RUNS:
        raise ValueError(f"{_shown(text)} is out of range: 1 to {MAX_KEEP_FINISHED_RUNS}")
    return count
