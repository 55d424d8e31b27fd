"""The bench config: which net is which instrument, channel and role.

```yaml
instruments:
  dp821: {driver: rigol_dp821, resource: "TCPIP0::10.0.0.7::5555::SOCKET"}
nets:
  supply2: {kind: PowerSupply, instrument: dp821, channel: 1, safe: off}
```
`safe:` is the net's safe state (lager/bench/kinds/safe.py): what the agent puts it in when a
run that claimed it ends badly. A script run by `lager python` finds the bench through
LAGER_BENCH_CONFIG, which the agent sets. The nets scripts save (Net.save_local_net, the real
lager's local nets file) are added to the bench file's by lager/bench/saved_nets.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..errors import BenchConfigError, LagerError

if TYPE_CHECKING:  # the kinds import the Net classes, which import this module
    from .kinds.safe import SafeState


@dataclass(frozen=True)
class InstrumentSpec:
    name: str
    driver: str
    resource: str
    timeout_ms: int = 2000


@dataclass(frozen=True)
class NetSpec:
    name: str
    kind: str
    instrument: InstrumentSpec
    channel: int | None = None
    safe: SafeState | None = None  # None: the bench file declares none; (): `safe: none`
    saved: bool = False  # a net a script saved (saved_nets.json), not one of the bench file's


def _kind(value: Any) -> str | None:
    """A kind this bench serves, by its NetType name (`PowerSupply`) or the real lager's role
    string (`power-supply`); None for anything else."""
    from . import kinds  # the registry imports the Net classes, which import this module
    from .net import NetType

    try:
        found = NetType.parse(value) if isinstance(value, str) else None
    except LagerError:
        return None
    return found.name if found is not None and kinds.by_type(found.name) else None


def parse_instruments(data: Any, source: str) -> dict[str, InstrumentSpec]:
    if not isinstance(data, dict) or not isinstance(data.get("nets"), dict) \
            or not isinstance(data.get("instruments"), dict):
        raise BenchConfigError(f"{source}: needs 'instruments' and 'nets' mappings")
    instruments: dict[str, InstrumentSpec] = {}
    for name, entry in data["instruments"].items():
        if not isinstance(entry, dict) or not entry.get("driver") or not entry.get("resource"):
            raise BenchConfigError(f"{source}: instrument {name!r} needs driver and resource")
        instruments[name] = InstrumentSpec(str(name), str(entry["driver"]),
                                           str(entry["resource"]),
                                           int(entry.get("timeout_ms", 2000)))
    return instruments


def _parse(data: Any, source: str) -> tuple[dict[str, InstrumentSpec], dict[str, NetSpec]]:
    instruments = parse_instruments(data, source)
    from .kinds import KINDS
    from .kinds.safe import parse_safe

    nets: dict[str, NetSpec] = {}
    for name, entry in data["nets"].items():
        kind = _kind(entry.get("kind")) if isinstance(entry, dict) else None
        if kind is None:
            served = ", ".join(k.net_type for k in KINDS)
            raise BenchConfigError(f"{source}: net {name!r} needs a kind, one of {served}")
        if entry.get("instrument") not in instruments:
            raise BenchConfigError(f"{source}: net {name!r} names unknown instrument "
                                   f"{entry.get('instrument')!r}")
        instrument = instruments[entry["instrument"]]
        kind_decl = next(k for k in KINDS if k.net_type == kind)
        served_by = kind_decl.drivers
        if instrument.driver not in served_by:
            raise BenchConfigError(f"{source}: net {name!r}: driver {instrument.driver!r} "
                                   f"cannot serve a {kind} net (drivers that can: "
                                   f"{', '.join(sorted(served_by))})")
        channel = entry.get("channel")
        safe = parse_safe(kind_decl, entry["safe"], f"{source}: net {name!r}") \
            if "safe" in entry else None
        nets[str(name)] = NetSpec(str(name), kind, instrument,
                                  int(channel) if channel is not None else None, safe)
    return instruments, nets


_location_given: str | None = None


def use_bench_location(path: str | Path | None) -> None:
    """This process's bench file, given explicitly (the agent's own instrument commands: issue
    14's "configuration is passed, not put in os.environ"); a script finds its bench through
    LAGER_BENCH_CONFIG, which the agent sets for it."""
    global _location_given
    _location_given = None if path is None else str(path)


def bench_location(path: str | Path | None = None) -> str:
    location = path or _location_given or os.environ.get(protocol.ENV_BENCH_CONFIG)
    if not location:
        raise BenchConfigError("no bench configured: run under `lager python`, or set "
                               f"{protocol.ENV_BENCH_CONFIG} to a bench file")
    return str(location)


def load_bench(path: str | Path | None = None, *, with_saved: bool = True
               ) -> dict[str, NetSpec]:
    """The bench file's nets, then the nets scripts saved that are usable on it (a saved
    net that is not usable is passed over here; Net.get of it says why)."""
    instruments, nets = load_bench_file(path)
    if not with_saved:
        return nets
    from . import saved_nets

    return {**nets, **saved_nets.usable(bench_location(path), instruments, nets)}


def load_bench_file(path: str | Path | None = None
                    ) -> tuple[dict[str, InstrumentSpec], dict[str, NetSpec]]:
    import yaml

    location = bench_location(path)
    try:
        text = Path(location).read_text()
    except OSError as exc:
        raise BenchConfigError(f"cannot read bench config {location}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BenchConfigError(f"bench config {location} is not valid YAML: {exc}") from None
    return _parse(data, str(location))
