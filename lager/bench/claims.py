"""Who owns an instrument: a flock on one file per VISA resource, held while a net is open.

The kernel drops a flock when its process dies, so a killed script leaves no stale claim.
The file's text names the holder (run id, script, pid, pause label) for the busy message.

A run also keeps a ledger of every net it has claimed (`run-ID.nets`, one JSON line per net
and process), which outlives the run: when the run ends badly, the agent reads it to put those
nets in their safe state, even the ones the script had closed again (closing a net does not
turn its output off).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import protocol
from ..errors import DeviceBusy

_lock = threading.Lock()
_held: dict[str, Claim] = {}
_ever: dict[str, str] = {}  # every net this process has claimed -> its resource
_LEDGER_PREFIX, _LEDGER_SUFFIX = "run-", ".nets"


_dir_given: Path | None = None  # the agent's own (use_claims_dir); scripts read their env


def use_claims_dir(path: Path) -> None:
    """Where this process keeps its claims, given explicitly: the agent's own instrument
    commands use it. A script learns it from LAGER_CLAIMS_DIR, which the agent sets."""
    global _dir_given
    _dir_given = path


def claims_dir() -> Path:
    configured = _dir_given or os.environ.get(protocol.ENV_CLAIMS_DIR)
    path = Path(configured) if configured else \
        Path(tempfile.gettempdir()) / f"lager-claims-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _lock_path(resource: str) -> Path:
    return claims_dir() / (hashlib.sha1(resource.encode()).hexdigest()[:16] + ".lock")


@dataclass
class Claim:
    resource: str
    fd: int
    nets: Counter[str] = field(default_factory=Counter)  # a net may be opened twice
    paused: str | None = None

    def record(self) -> None:
        info = {"resource": self.resource, "pid": os.getpid(),
                "run_id": os.environ.get(protocol.ENV_RUN_ID),
                "script": os.environ.get(protocol.ENV_SCRIPT_NAME) or _argv0(),
                "nets": sorted(self.nets), "paused": self.paused}
        data = json.dumps(info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)


def _argv0() -> str:
    import sys

    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


def read_holder(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_bytes() or b"null")
    except (OSError, ValueError):
        return None


def busy_message(net: str, what: str, holder: dict[str, Any] | None) -> str:
    if not holder:
        return f"{net}: {what} is busy: claimed by another process"
    run_id = holder.get("run_id")
    who = (f"run {protocol.short_id(run_id)} ({holder.get('script')}, pid {holder.get('pid')})"
           if run_id else f"{holder.get('script')} (pid {holder.get('pid')})")
    paused = f', paused at "{holder["paused"]}"' if holder.get("paused") else ""
    remedy = (f"; read it through `lager python --console {protocol.short_id(run_id)}`"
              if run_id else "")
    return f"{net}: {what} is busy: claimed by another process: {who}{paused}{remedy}"


def acquire(resource: str, net: str, what: str) -> Claim:
    """Claim resource for this process (nets of one instrument share the claim)."""
    with _lock:
        claim = _held.get(resource)
        if claim is None:
            path = _lock_path(resource)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
            _share(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DeviceBusy(busy_message(net, what, read_holder(path))) from None
            claim = Claim(resource, fd)
            _held[resource] = claim
        claim.nets[net] += 1
        claim.record()
        if net not in _ever:
            _ever[net] = resource
            _to_ledger(net, resource)
        return claim


def _run_id() -> str | None:
    """This run's id, when it is one the agent minted (an id from --env is not a path)."""
    run_id = os.environ.get(protocol.ENV_RUN_ID) or ""
    return run_id if run_id and all(c in "0123456789abcdef" for c in run_id) else None


def ledger_path(run_id: str) -> Path:
    return claims_dir() / f"{_LEDGER_PREFIX}{run_id}{_LEDGER_SUFFIX}"


def _to_ledger(net: str, resource: str) -> None:
    run_id = _run_id()
    if run_id is None:
        return  # not a run (the agent's own commands, a script outside `lager python`)
    line = json.dumps({"net": net, "resource": resource, "pid": os.getpid()}) + "\n"
    try:
        fd = os.open(ledger_path(run_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o640)
        try:
            os.write(fd, line.encode())  # O_APPEND: lines of concurrent processes stay whole
        finally:
            os.close(fd)
    except OSError as exc:
        # The claim stands; only the safe state after a crash would miss this net. Say so.
        import sys

        sys.stderr.write(f"lager: cannot record the claim of {net} for the safe state: "
                         f"{exc.strerror or exc}\n")


def read_ledger(run_id: str) -> dict[str, str]:
    """The nets a run has claimed (net -> resource), from its ledger; {} when there is none."""
    try:
        text = ledger_path(run_id).read_text(errors="replace")
    except OSError:
        return {}
    nets: dict[str, str] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line from a process killed mid-write
        if isinstance(entry, dict) and isinstance(entry.get("net"), str):
            nets.setdefault(entry["net"], str(entry.get("resource", "")))
    return nets


def drop_ledger(run_id: str) -> None:
    ledger_path(run_id).unlink(missing_ok=True)


def claimed_ever() -> dict[str, str]:
    """Every net this process has claimed (net -> resource), open or closed since."""
    with _lock:
        return dict(_ever)


def _share(fd: int) -> None:
    """Under privilege separation each run has its own uid and a umask of 077, but every run
    (and the agent) must be able to take and describe the same claim: the claims dir is the
    runs' shared group's (setgid), so the file only needs group read-write."""
    try:
        os.fchmod(fd, 0o660)
    except PermissionError:
        pass  # created by another run, which already shared it


def release(resource: str, net: str) -> None:
    with _lock:
        claim = _held.get(resource)
        if claim is None:
            return
        claim.nets[net] -= 1
        if claim.nets[net] <= 0:
            del claim.nets[net]
        if claim.nets:
            claim.record()
            return
        del _held[resource]
        os.ftruncate(claim.fd, 0)
        os.close(claim.fd)  # closing the last fd drops the flock


def mark_paused(paused: bool, label: str | None = None) -> None:
    """pause() tells the claims file, so a busy error can say where the holder is paused."""
    with _lock:
        for claim in _held.values():
            claim.paused = (label or "(no label)") if paused else None
            claim.record()


def holder_now(resource: str) -> dict[str, Any] | None:
    """The holder of resource, or None when nobody holds it (checked with the lock itself)."""
    with _lock:
        if resource in _held:
            return {"pid": os.getpid(), "script": _argv0(), "self": True}
    path = _lock_path(resource)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return read_holder(path) or {}
    finally:
        os.close(fd)
