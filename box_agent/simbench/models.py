"""What each instrument holds, read from the pyvisa-sim YAML: properties, defaults, limits.

The YAML stays a plain pyvisa-sim definition (pyvisa's `@sim` backend still opens it). The
simulator reads from it what pyvisa-sim means by it: each property's default, its type, its
min/max/valid specs and the getter's reply format; per channel where the YAML groups a
property under `channels`. A device's `simbench:` block (ignored by pyvisa-sim) adds what
pyvisa-sim has no words for: how the instrument words its error queue entries, its queue
length, and any model data (battery models). The top-level `wiring:` block describes the DUT.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .scpi import Limits, ScpiError

_TYPES: dict[str, type] = {"float": float, "int": int, "str": str}
# `none`: the supplies' outputs drive no DUT, as the real lager's supply test suites expect
# ("no load attached"); the electronic load, the meters and the battery's load stay wired.
# Read when the simulated bench starts (the agent's environment).
ENV_SUPPLY_LOAD = "LAGER_SIM_SUPPLY_LOAD"


@dataclass(frozen=True)
class PropSpec:
    name: str
    default: Any
    kind: type
    low: float | None
    high: float | None
    valid: tuple[Any, ...]
    reply: str  # the pyvisa-sim getter's response template, e.g. "{:.3f}"

    def limits(self, unit: str = "") -> Limits:
        low = self.low if self.low is not None else float("-inf")
        high = self.high if self.high is not None else float("inf")
        return Limits(low, high, float(self.default), unit)

    def check(self, value: Any) -> Any:
        try:
            value = self.kind(value)
        except (TypeError, ValueError):
            raise ScpiError(-224, f"{value!r} for {self.name}") from None
        if self.valid and value not in self.valid:
            raise ScpiError(-224, f"{value} is not one of {', '.join(map(str, self.valid))}")
        if (self.low is not None and value < self.low) or \
                (self.high is not None and value > self.high):
            raise ScpiError(-222, f"{value:g} not in {self.low:g} to {self.high:g}")
        return value


@dataclass
class DeviceSpec:
    name: str
    dialogues: dict[str, str]
    props: dict[tuple[str, int | None], PropSpec]
    channels: list[int]
    error_empty: str
    error_entry: str
    queue_length: int
    extra: dict[str, Any] = field(default_factory=dict)

    def prop(self, name: str, channel: int | None = None) -> PropSpec:
        return self.props[(name, channel)]


@dataclass
class Wiring:
    """The DUT: what each source terminal drives and what each meter input is wired to."""

    loads: dict[str, dict[str, float]]
    inputs: dict[str, str | float]


def _prop(name: str, entry: dict[str, Any]) -> PropSpec:
    specs = entry.get("specs", {})
    kind = _TYPES[specs.get("type", "str")]
    getter = entry.get("getter", {})
    return PropSpec(
        name=name, default=kind(entry.get("default", kind())), kind=kind,
        low=float(specs["min"]) if "min" in specs else None,
        high=float(specs["max"]) if "max" in specs else None,
        valid=tuple(kind(v) for v in specs.get("valid", ())),
        reply=str(getter.get("r", "{}")))


def _device(name: str, data: dict[str, Any]) -> DeviceSpec:
    props: dict[tuple[str, int | None], PropSpec] = {}
    for prop_name, entry in data.get("properties", {}).items():
        props[(prop_name, None)] = _prop(prop_name, entry)
    channels: list[int] = []
    for group in data.get("channels", {}).values():
        for ch in group.get("ids", []):
            channels.append(int(ch))
            for prop_name, entry in group.get("properties", {}).items():
                props[(prop_name, int(ch))] = _prop(prop_name, entry)
    dialogues = {str(d["q"]).strip(): str(d["r"]).strip()
                 for d in data.get("dialogues", []) if "r" in d}
    queue = (data.get("error", {}).get("error_queue") or [{}])[0]
    sim = data.get("simbench", {})
    return DeviceSpec(name=name, dialogues=dialogues, props=props, channels=sorted(channels),
                      error_empty=str(queue.get("default", '0,"No error"')),
                      error_entry=str(sim.get("error_entry", '{code},"{text}"')),
                      queue_length=int(sim.get("queue_length", 20)), extra=sim)


def load_models(path: Path) -> tuple[dict[str, DeviceSpec], Wiring]:
    """Devices by name, and the wiring of the DUT between them."""
    data = yaml.safe_load(path.read_text())
    devices = {name: _device(name, entry) for name, entry in data["devices"].items()}
    wiring = data.get("wiring", {})
    inputs: dict[str, str | float] = {}
    for meter, source in (wiring.get("inputs") or {}).items():
        inputs[str(meter)] = float(source["volts"]) if isinstance(source, dict) else str(source)
    loads = {str(k): {kk: float(vv) for kk, vv in v.items()}
             for k, v in (wiring.get("loads") or {}).items()}
    if os.environ.get(ENV_SUPPLY_LOAD) == "none":
        loads = {k: v for k, v in loads.items() if k.endswith(":battery")}
    return devices, Wiring(loads, inputs)
