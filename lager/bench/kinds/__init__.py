"""The registry of net kinds this bench serves: one module per kind declares everything about
it (lager/bench/kinds/spec.py says what). Adding a kind is one module here, listed below, plus
its drivers; the CLI, the box and Net.get all read it from KINDS.

Import-light on purpose: the `lager` CLI imports this on every start, so nothing here (nor in
the kind modules) imports pyvisa or yaml until a net is opened.
"""
from __future__ import annotations

from . import adc, battery, load, supply
from .spec import Kind

KINDS: tuple[Kind, ...] = (supply.KIND, battery.KIND, adc.KIND, load.KIND)


def by_command(name: str) -> Kind | None:
    """The kind a CLI command (or the nets request's "command") names, aliases included."""
    return next((k for k in KINDS if name == k.name or name in k.aliases), None)


def by_type(net_type: str) -> Kind | None:
    """The kind serving a NetType member name (`PowerSupply`), if this bench has one."""
    return next((k for k in KINDS if k.net_type == net_type), None)
