"""The nets scripts save on the box: the real lager's local nets file (`saved_nets.json`, a
JSON list of `{"name", "role", "instrument", "channel", "address"}`) and its API
(Net.save_local_net, delete_local_net, rename_local_net...).

A saved net is one more name for an instrument (and channel) the bench file already has: it
is checked against the bench file when it is saved and again whenever the file is read, so a
saved net that names an instrument, channel or kind this bench lacks is a one-line error and
never a net. The bench file's own nets are the box operator's: a script may list them, and
save them back unchanged (the real API's read-modify-write), but not change, rename or
delete them.

The file is shared by every run (and read by the agent), and under privilege separation each
run writes it as a uid of its own; so every write is atomic (a temp file renamed over it),
read-modify-writes hold a lock, and the reader trusts nothing in it: a regular file, at most
MAX_BYTES, each entry checked as if a script had just saved it.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import protocol
from ..errors import BenchConfigError, NetError
from .config import InstrumentSpec, NetSpec

MAX_BYTES = 1 << 20
MAX_NETS = 1000
MAX_TEXT = 200
LOCK_WAIT = 10.0  # seconds a save waits for another process's save

# The channels each instrument has (an instrument with one set of terminals has none: its
# net gives no channel, or channel 1 as the real lager writes it). A driver not listed here
# is not checked.
CHANNELS: dict[str, tuple[int, ...]] = {
    "rigol_dp821": (1, 2),
    "keithley_2281s": (),
    "rigol_dl3021": (),
    "keysight_34461a": (),
    "keithley_daq6510": tuple(range(101, 111)),
}

# How the real lager's saved nets name instruments (`rigol_dp800`, `keithley`...): any of
# these inside the name picks that driver, as the real lager matches them.
FAMILIES: dict[str, tuple[str, ...]] = {
    "rigol_dp821": ("rigol_dp", "dp8"),
    "keithley_2281s": ("2281", "keithley"),
    "rigol_dl3021": ("rigol_dl", "dl3"),
    "keysight_34461a": ("34461",),
    "keithley_daq6510": ("daq6510",),
}


class SavedNetError(BenchConfigError):
    """A saved net this bench cannot have, or a saved nets file that cannot be used."""


# --------------------------------------------------------------------------- where it lives

_path_given: Path | None = None


def use_saved_nets(path: Path) -> None:
    """Where this process's saved nets live, given explicitly: the agent's own instrument
    commands use it. A script learns it from LAGER_SAVED_NETS, which the agent sets."""
    global _path_given
    _path_given = path


def path_for(bench_location: str) -> Path:
    """Given (use_saved_nets), else LAGER_SAVED_NETS (the agent sets it: a dir in its state dir
    that runs may write), else saved_nets.json beside the bench file."""
    configured = _path_given or os.environ.get(protocol.ENV_SAVED_NETS)
    if configured:
        return Path(configured)
    return Path(bench_location).resolve().parent / protocol.SAVED_NETS_FILE


def signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or written: a cached bench is stale then."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


# --------------------------------------------------------------------------- reading

def read_entries(path: Path) -> list[Any]:
    """The file's list, as written; [] when there is none. Never follows a link or blocks on
    a FIFO another run left in its place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SavedNetError(f"saved nets file {path} cannot be read: "
                            f"{exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SavedNetError(f"saved nets file {path} is not a regular file")
        if info.st_size > MAX_BYTES:
            raise SavedNetError(f"saved nets file {path} is larger than {MAX_BYTES} bytes")
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        entries = json.loads(data or b"[]")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...
        raise SavedNetError(f"saved nets file {path} is not JSON; fix it, or start it afresh "
                            "with Net.delete_all_local_nets()") from None
    if not isinstance(entries, list):
        raise SavedNetError(f"saved nets file {path} is not a JSON list of nets")
    return entries


def usable(bench_location: str, instruments: dict[str, InstrumentSpec],
           file_nets: dict[str, NetSpec]) -> dict[str, NetSpec]:
    """The saved nets this bench can serve. Anything wrong with the file or an entry leaves
    the bench file's nets as they are: Net.get of a saved net that is not usable says why."""
    try:
        entries = read_entries(path_for(bench_location))
    except SavedNetError:
        return {}
    found: dict[str, NetSpec] = {}
    for entry in entries[:MAX_NETS]:
        try:
            spec = resolve(entry, instruments, file_nets)
        except SavedNetError:
            continue
        found.setdefault(spec.name, spec)
    return found


def why_not(name: str, bench_location: str) -> str | None:
    """Why a saved net `name` is not on the bench (None: nothing is saved under that name)."""
    from .config import load_bench_file

    path = path_for(bench_location)
    try:
        entries = read_entries(path)
        instruments, file_nets = load_bench_file(bench_location)
    except BenchConfigError as exc:
        return str(exc)
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            try:
                resolve(entry, instruments, file_nets)
            except SavedNetError as exc:
                return f"saved net {name!r} is not usable on this bench: {exc}"
    return None


# --------------------------------------------------------------------------- checking

def resolve(entry: Any, instruments: dict[str, InstrumentSpec],
            file_nets: dict[str, NetSpec]) -> NetSpec:
    """The net a saved entry names, checked against the bench file; else a one-line error."""
    from . import kinds
    from .net import NetType

    if not isinstance(entry, dict):
        raise SavedNetError(f"a saved net is a mapping with name and role, not {_show(entry)}")
    name = _text(entry.get("name"), "name", None)
    if name in file_nets:
        raise SavedNetError(f"{name} is a net of the bench file; a saved net cannot replace it "
                            "(choose another name)")
    role = _text(entry.get("role"), "role", name)
    try:
        net_type: NetType | None = NetType.parse(role)
    except NetError:
        net_type = None
    kind = kinds.by_type(net_type.name) if net_type is not None else None
    if kind is None:
        served = ", ".join(NetType.parse(k.net_type).role for k in kinds.KINDS)
        raise SavedNetError(f"{name}: this box has no {role} nets (it has {served})")
    instrument = _instrument(name, entry, instruments, kind.drivers, kind.net_type)
    channel = _channel(name, entry, instrument)
    twin = next((n for n in file_nets.values() if n.instrument == instrument
                 and n.channel == channel and n.kind == kind.net_type), None)
    # The bench file's net on the same terminals gives the saved one its safe state; an
    # input (a kind with no safe settings) has nothing to put safe.
    safe = twin.safe if twin is not None else (None if kind.safe else ())
    return NetSpec(name, kind.net_type, instrument, channel, safe, saved=True)


def _instrument(name: str, entry: dict[str, Any], instruments: dict[str, InstrumentSpec],
                drivers: Any, net_type: str) -> InstrumentSpec:
    wanted = _text(entry.get("instrument"), "instrument", name)
    address = entry.get("address")
    address = _text(address, "address", name) if address not in (None, "") else None
    candidates = [i for i in instruments.values() if i.driver in drivers]
    exact = [i for i in candidates if wanted in (i.name, i.driver)]
    named = exact or [i for i in candidates
                      if any(part in wanted.lower() for part in FAMILIES.get(i.driver, ()))]
    at = [i for i in named if address is None or address in (i.resource, _host(i.resource))]
    if len(at) == 1:
        return at[0]
    have = ", ".join(f"{i.name} ({i.driver} at {i.resource})" for i in candidates) or "none"
    if not named:
        raise SavedNetError(f"{name}: this bench has no instrument {wanted!r} that can serve "
                            f"a {net_type} net (it has: {have})")
    if not at:
        raise SavedNetError(f"{name}: this bench has no {wanted} at {address} (it has: {have})")
    raise SavedNetError(f"{name}: {wanted!r} is more than one instrument here; give the "
                        f"instrument's name or its address (it has: {have})")


def _channel(name: str, entry: dict[str, Any], instrument: InstrumentSpec) -> int | None:
    raw = entry.get("channel")
    if raw in (None, ""):
        return None
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        channel = int(raw)
    except (TypeError, ValueError, OverflowError):
        raise SavedNetError(f"{name}: channel {_show(raw)} is not a whole number") from None
    known = CHANNELS.get(instrument.driver)
    if known is None:
        return channel
    if not known:
        if channel == 1:
            return None  # the real lager numbers a single output 1
        raise SavedNetError(f"{name}: {instrument.name} ({instrument.driver}) has one set of "
                            f"terminals, no channel {channel}")
    if channel not in known:
        raise SavedNetError(f"{name}: {instrument.name} ({instrument.driver}) has no channel "
                            f"{channel} (it has {known[0]}-{known[-1]})")
    return channel


def _host(resource: str) -> str:
    parts = resource.split("::")
    return parts[1] if len(parts) > 2 else resource


def check_name(value: Any) -> str:
    return _text(value, "name", None)


def _text(value: Any, what: str, name: str | None) -> str:
    where = f"{name}: " if name else ""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT \
            or any(ord(c) < 32 or c == "\x7f" for c in value):
        raise SavedNetError(f"{where}a saved net's {what} must be a short line of text, not "
                            f"{_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- writing

@contextmanager
def editing(path: Path) -> Iterator[list[Any]]:
    """The saved nets, for one read-modify-write: the list it yields is written back
    (atomically) when the block ends without an error. One writer at a time."""
    with locked(path):
        entries = read_entries(path)
        before = json.dumps(entries)
        yield entries
        if json.dumps(entries) != before:
            write(path, entries)


def write(path: Path, entries: list[Any]) -> None:
    if len(entries) > MAX_NETS:
        raise SavedNetError(f"a box keeps at most {MAX_NETS} saved nets")
    data = (json.dumps(entries, indent=2) + "\n").encode()
    if len(data) > MAX_BYTES:
        raise SavedNetError(f"the saved nets would be larger than {MAX_BYTES} bytes")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o644)  # every run and the agent read it
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _unwritable(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One writer at a time: a flock on the file's directory, which no run can replace or
    leave unreadable to the others (a lock file could be made by a run whose umask hides it)."""
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SavedNetError(f"the saved nets ({path}) are being changed by another "
                                        f"process for over {LOCK_WAIT:g} s; try again") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _unwritable(path: Path, exc: OSError) -> SavedNetError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return SavedNetError(f"cannot save nets on this box: {path.parent} is not writable by "
                             f"this script ({exc.strerror}); the agent gives runs a writable "
                             f"one in {protocol.ENV_SAVED_NETS}")
    if exc.errno == errno.ENOENT:
        return SavedNetError(f"cannot save nets on this box: {path.parent} does not exist")
    return SavedNetError(f"cannot save nets in {path}: {exc.strerror or exc}")
