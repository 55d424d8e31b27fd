"""The box's reservation in its state dir: the hand-made lock, the forced unlocks `lager boxes
status` shows, the places of waiters (box_agent/queue_places.py), and the audit log.

The state file is written atomically (a temporary file, fsync, rename, fsync of the dir), so
an agent killed mid-write leaves the old state or the new one, never half of either; a damaged
record (only a hand edit makes one) costs only itself. The audit log is appended to, one JSON
record a line.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lager.protocol.codec import ProtocolError
from lager.protocol.reservation import ForcedUnlock, Hold

from .monitor_link import read_json

log = logging.getLogger("lager-box.reservations")

STATE_FILE = "reservation.json"
AUDIT_FILE = "audit.log"
KEEP_FORCED = 10  # forced unlocks `lager boxes status` shows, newest last


@dataclass
class Saved:
    """What the state file holds: `queue` is KeptPlaces' records, read by it."""

    lock: Hold | None = None
    forced: list[ForcedUnlock] = field(default_factory=list)
    queue: Any = None


def load(path: Path) -> Saved:
    saved = read_json(path)
    found = Saved()
    if not saved:
        if path.exists():  # written atomically, so only a hand edit gets here
            log.error("%s is not readable JSON; starting without its lock", path)
        return found
    lock = saved.get("lock")
    try:
        found.lock = Hold.from_dict(lock) if lock is not None else None
    except ProtocolError as exc:
        log.error("%s: the lock record is damaged (%s); starting without it", path, exc)
    forced = saved.get("forced")
    for record in forced if isinstance(forced, list) else []:
        try:
            found.forced.append(ForcedUnlock.from_dict(record))
        except ProtocolError as exc:  # one damaged record costs only itself
            log.error("%s: a forced-unlock record is damaged (%s)", path, exc)
    found.forced = found.forced[-KEEP_FORCED:]
    found.queue = saved.get("queue")
    return found


def save(path: Path, lock: Hold | None, forced: list[ForcedUnlock],
         queue: list[dict[str, Any]]) -> None:
    data = {"lock": lock.to_dict() if lock else None,
            "forced": [f.to_dict() for f in forced], "queue": queue}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def append_audit(path: Path, record: dict[str, Any]) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as exc:
        log.error("cannot write the audit record to %s: %s", path, exc)
