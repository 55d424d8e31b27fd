"""The instrument commands other terminals run while a script is paused (`nets` subsystem).

They run in the agent's process, through the same lager.bench API and claims as scripts, so
an instrument a script holds answers busy here too, and a free one just works.
"""
from __future__ import annotations

from typing import Any

from lager.bench import claims
from lager.bench.net import Net, NetType, bench
from lager.errors import LagerError

ACTIONS: dict[str, tuple[str, ...]] = {
    "supply": ("state", "voltage", "current", "enable", "disable"),
    "battery": ("state", "soc", "enable", "disable"),
    "adc": ("read",),
}
_TYPES = {"supply": NetType.PowerSupply, "battery": NetType.Battery, "adc": NetType.ADC}
_NEEDS_VALUE = {"voltage", "current", "soc"}


def list_nets() -> list[dict[str, Any]]:
    rows = []
    for spec in bench().values():
        holder = claims.holder_now(spec.instrument.resource)
        rows.append({"name": spec.name, "kind": spec.kind, "instrument": spec.instrument.name,
                     "driver": spec.instrument.driver, "resource": spec.instrument.resource,
                     "channel": spec.channel, "held_by": holder})
    return rows


def execute(request: dict[str, Any]) -> Any:
    command = request.get("command")
    if command == "nets":
        return list_nets()
    if command not in ACTIONS:
        raise LagerError(f"unknown instrument command {command!r}")
    action = request.get("action", "state" if command != "adc" else "read")
    if action not in ACTIONS[command]:
        raise LagerError(f"lager {command} has no action {action!r}; "
                         f"use one of: {', '.join(ACTIONS[command])}")
    value = request.get("value")
    if action in _NEEDS_VALUE and not isinstance(value, (int, float)):
        raise LagerError(f"lager {command} {action} needs a number")
    name = str(request.get("net", ""))
    with Net.get(name, type=_TYPES[command]) as net:
        if command == "adc":
            return {"net": name, "voltage": net.input()}
        if action == "voltage":
            net.set_voltage(value)
        elif action == "current":
            net.set_current(value)
        elif action == "soc":
            net.set_soc(value)
        elif action == "enable":
            net.enable()
        elif action == "disable":
            net.disable()
        return {"net": name, **net.state().as_dict()}
