"""The registry of net kinds this bench serves: one declaration per kind says everything about
it (lager/bench/kinds/spec.py says what), in kinds/<kind>_spec.py; its state, driver protocol
and Net API class are in kinds/<kind>.py. Adding a kind is those two modules, listed below,
plus its drivers; the CLI, the box and Net.get all read it from KINDS.

Import-light on purpose: the `lager` CLI imports this on every start, so nothing here (nor in
the kinds' declarations) imports pyvisa or yaml until a net is opened, nor typing,
dataclasses, inspect or abc (issue 13). The declarations (kinds/<kind>_spec.py) load on first
use: `lager supply ...` loads only supply's, and anything that reads KINDS loads them all.
The Net classes, states and driver protocols (kinds/<kind>.py) load when a net is opened.
"""
from __future__ import annotations

import importlib

from .spec import Kind

# The kind modules, in KINDS order.
_MODULES = ("supply", "battery", "adc", "load")

KINDS: tuple[Kind, ...]  # made on first use (module __getattr__ below)


def _kind(module: str) -> Kind:
    # The declaration only (kinds/<kind>_spec.py): the Net class and drivers load on use.
    kind: Kind = importlib.import_module(f"{__name__}.{module}_spec").KIND
    return kind


def __getattr__(name: str) -> object:
    if name == "KINDS":
        global KINDS
        KINDS = tuple(_kind(m) for m in _MODULES)
        return KINDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def by_command(name: str) -> Kind | None:
    """The kind a CLI command (or the nets request's "command") names, aliases included."""
    if name in _MODULES and _kind(name).name == name:
        return _kind(name)  # the common case, without importing the other kinds
    return next((k for k in _all() if name == k.name or name in k.aliases), None)


def by_type(net_type: str) -> Kind | None:
    """The kind serving a NetType member name (`PowerSupply`), if this bench has one."""
    return next((k for k in _all() if k.net_type == net_type), None)


def _all() -> tuple[Kind, ...]:
    return KINDS if "KINDS" in globals() else __getattr__("KINDS")  # type: ignore[return-value]
