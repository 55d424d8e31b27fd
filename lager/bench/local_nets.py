"""The real lager's "Manage Net Configuration" API, behind Net's class methods: list the box's
nets, save, rename and delete the ones scripts keep in the local nets file
(lager/bench/saved_nets.py says where it lives and what a saved net may be).

Every net is listed as the real lager lists it (`name`, `role`, `instrument`, `channel`,
`address`), plus `type` (the NetType member's name) and `source`: `bench-file` for the box
operator's nets, which scripts cannot change, or `saved`.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import NetError
from . import saved_nets
from .config import InstrumentSpec, NetSpec, bench_location, load_bench_file
from .saved_nets import SavedNetError

BENCH_FILE, SAVED = "bench-file", "saved"


def record(spec: NetSpec) -> dict[str, Any]:
    from .net import NetType

    net_type = NetType.parse(spec.kind)
    return {"name": spec.name, "role": net_type.role, "type": net_type.name,
            "instrument": spec.instrument.driver, "channel": spec.channel,
            "address": spec.instrument.resource, "source": SAVED if spec.saved else BENCH_FILE}


def local_nets() -> list[dict[str, Any]]:
    """Every net of the box: the bench file's, then the saved ones in the file's order (one
    this bench cannot serve is listed with `problem`, so a script can see and delete it)."""
    location = bench_location()
    instruments, file_nets = load_bench_file(location)
    rows = [record(spec) for spec in file_nets.values()]
    try:
        entries = saved_nets.read_entries(saved_nets.path_for(location))
    except SavedNetError as exc:
        sys.stderr.write(f"lager: {exc}; listing the bench file's nets only\n")
        return rows
    for entry in entries[:saved_nets.MAX_NETS]:
        if not isinstance(entry, dict):
            continue
        try:
            rows.append({**entry, **record(saved_nets.resolve(entry, instruments, file_nets))})
        except SavedNetError as exc:
            rows.append({**entry, "source": SAVED, "problem": str(exc)})
    return rows


class _Bench:
    """The bench file and the saved nets file, for one change."""

    def __init__(self) -> None:
        location = bench_location()
        self.instruments: dict[str, InstrumentSpec]
        self.instruments, self.file_nets = load_bench_file(location)
        self.path = saved_nets.path_for(location)

    def check(self, data: Any) -> dict[str, Any] | None:
        """A net to save, checked: a copy for the file, or None for a bench-file net given
        back unchanged (a script's read-modify-write of the whole list)."""
        if not isinstance(data, dict):
            raise SavedNetError(f"a net to save is a dict with name, role, instrument and "
                                f"channel, not {type(data).__name__}")
        name = data.get("name")
        if isinstance(name, str) and name in self.file_nets:
            self._same_as_file(data, self.file_nets[name])
            return None
        saved_nets.resolve(data, self.instruments, self.file_nets)
        try:
            return json.loads(json.dumps(data))  # type: ignore[no-any-return]
        except (TypeError, ValueError):
            raise SavedNetError(f"{name}: a saved net holds only JSON values "
                                "(text, numbers, lists, dicts)") from None

    def _same_as_file(self, data: dict[str, Any], spec: NetSpec) -> None:
        others = {k: v for k, v in self.file_nets.items() if k != spec.name}
        try:
            given = saved_nets.resolve(data, self.instruments, others)
        except SavedNetError as exc:
            given, why = None, str(exc)
        if given is None or (given.kind, given.instrument, given.channel) != \
                (spec.kind, spec.instrument, spec.channel):
            detail = f" ({why})" if given is None else ""
            raise SavedNetError(f"{spec.name} is a net of the bench file; scripts cannot change "
                                f"it{detail}")

    def refuse_file_net(self, name: str, what: str) -> None:
        if name in self.file_nets:
            raise SavedNetError(f"{name} is a net of the bench file; scripts cannot {what} it "
                                "(only nets saved with Net.save_local_net)")


def save_local_net(data: Any) -> None:
    bench = _Bench()
    entry = bench.check(data)
    if entry is None:
        return
    with saved_nets.editing(bench.path) as entries:
        role = _role(entry["role"])
        for old in entries:
            if isinstance(old, dict) and old.get("name") == entry["name"] \
                    and _role(old.get("role")) != role:
                raise SavedNetError(f"{entry['name']} is already saved as a {old.get('role')} "
                                    "net; delete it first, or choose another name")
        entries[:] = [old for old in entries
                      if not (isinstance(old, dict) and old.get("name") == entry["name"])]
        entries.append(entry)


def save_local_nets(nets: Any) -> None:
    """The saved nets become these (the bench file's nets in the list are left as they are)."""
    if not isinstance(nets, list):
        raise SavedNetError(f"save_local_nets takes a list of nets, not {type(nets).__name__}")
    bench = _Bench()
    kept: list[dict[str, Any]] = []
    for data in nets:
        entry = bench.check(data)
        if entry is None:
            continue
        if any(k["name"] == entry["name"] for k in kept):
            raise SavedNetError(f"{entry['name']} is in the list twice")
        kept.append(entry)
    with saved_nets.editing(bench.path) as entries:
        entries[:] = kept


def delete_local_net(name: str, role: str | None = None) -> bool:
    bench = _Bench()
    spec = bench.file_nets.get(name)
    if spec is not None and (role is None or _role(role) == _role(spec.kind)):
        bench.refuse_file_net(name, "delete")
    with saved_nets.editing(bench.path) as entries:
        before = len(entries)
        entries[:] = [e for e in entries if not (
            isinstance(e, dict) and e.get("name") == name
            and (role is None or _role(e.get("role")) == _role(role)))]
        return len(entries) != before


def delete_all_local_nets() -> bool:
    """Every saved net goes (the bench file's stay); a broken file is started afresh too."""
    bench = _Bench()
    with saved_nets.locked(bench.path):
        saved_nets.write(bench.path, [])
    return True


def rename_local_net(old_name: str, new_name: str) -> bool:
    bench = _Bench()
    bench.refuse_file_net(old_name, "rename")
    new_name = saved_nets.check_name(new_name)
    if new_name in bench.file_nets:
        raise SavedNetError(f"{new_name} is a net of the bench file; choose another name")
    with saved_nets.editing(bench.path) as entries:
        if new_name != old_name and any(isinstance(e, dict) and e.get("name") == new_name
                                        for e in entries):
            raise SavedNetError(f"a net named {new_name} is already saved; choose another name")
        changed = False
        for entry in entries:
            if isinstance(entry, dict) and entry.get("name") == old_name:
                entry["name"] = new_name
                changed = True
        return changed


def filter_nets(all_nets: list[dict[str, Any]], name: str,
                role: str | None = None) -> list[dict[str, Any]]:
    """The nets named `name` (and of `role`, if given), as the docs describe it."""
    return [n for n in all_nets if isinstance(n, dict) and n.get("name") == name
            and (role is None or _role(n.get("role")) == _role(role))]


def list_all_from_env() -> list[dict[str, Any]]:
    """The real lager's legacy listing, from LAGER_MUXES (which this agent never sets)."""
    raw = os.environ.get("LAGER_MUXES")
    if not raw:
        return []
    try:
        muxes = json.loads(raw)
    except ValueError:
        raise NetError("LAGER_MUXES is not JSON") from None
    found = []
    for mux in muxes if isinstance(muxes, list) else []:
        if not isinstance(mux, dict):
            continue
        for mapping in mux.get("mappings") or []:
            if isinstance(mapping, dict):
                found.append({"name": mapping.get("net"), "role": mux.get("role"),
                              "channel": _mux_channel(mux)})
    return found


def _mux_channel(mux: dict[str, Any]) -> int | str | None:
    try:
        point = str(mux["scope_points"][0][1])
    except (KeyError, IndexError, TypeError):
        return None
    if point.isdigit():
        return int(point)
    return ord(point) - ord("A") + 1 if point in ("A", "B", "C", "D") else point


def _role(value: Any) -> str:
    """A role or a NetType name, compared the same way (`power-supply` = `PowerSupply`)."""
    from .net import NetType

    try:
        return NetType.parse(value).name
    except NetError:
        return str(value)
