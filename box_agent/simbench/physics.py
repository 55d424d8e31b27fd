"""What the bench does electrically: supplies into their loads, a battery that discharges,
and meters that read what the wiring connects them to.

Terminals are named `device` or `device:sub` (`rigol_dp821:1`, `keithley_2281s:battery`,
`keithley_daq6510:101`); the models file's `wiring:` block says what load each source terminal
drives and what each meter input measures, so a script sees its own action on the bench.
"""
from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .models import Wiring

if TYPE_CHECKING:
    from .instrument import Instrument

OVERFLOW = 9.9e37  # what a meter reports for an input beyond its range (SCPI convention)


def noisy(value: float, scale: float) -> float:
    """The last digit of noise a real reading shows."""
    return value + random.uniform(-scale, scale)


@dataclass(frozen=True)
class Output:
    volts: float
    amps: float
    mode: str  # CV, CC or OFF


OFF = Output(0.0, 0.0, "OFF")
Sink = Callable[[float], float]  # amps an electronic load draws at a given input voltage


def drive(on: bool, volts: float, limit: float, load: dict[str, float],
          sinks: Sequence[Sink] = ()) -> Output:
    """A CV/CC supply set to `volts` with current limit `limit`, into `load`.

    A resistive load (`ohms`) draws V/R until that reaches the limit; then the supply holds
    the current and the voltage falls to I*R (constant-current mode). A constant-current load
    (`amps`) above the limit collapses the voltage. No load: an open circuit. Electronic
    loads wired to the output (`sinks`) draw beside it.
    """
    if not on:
        return OFF
    if sinks:
        return _drive_with_sinks(volts, limit, load, sinks)
    if "ohms" in load and load["ohms"] > 0:
        demand = volts / load["ohms"]
        if demand > limit:
            return Output(limit * load["ohms"], limit, "CC")
        return Output(volts, demand, "CV")
    if "amps" in load:
        if load["amps"] > limit:
            return Output(0.0, limit, "CC")
        return Output(volts, load["amps"], "CV")
    return Output(volts, 0.0, "CV")


def _drive_with_sinks(volts: float, limit: float, load: dict[str, float],
                      sinks: Sequence[Sink]) -> Output:
    """CV while everything wired draws no more than the limit; else CC at the limit, at the
    highest voltage where the draw fits (found by bisection: the draws rise with voltage,
    except a constant-power load's, for which any crossing will do)."""

    def demand(v: float) -> float:
        ohms = load.get("ohms", 0.0)
        fixed = v / ohms if ohms > 0 else (load.get("amps", 0.0) if v > 0 else 0.0)
        return fixed + sum(sink(v) for sink in sinks)

    want = demand(volts)
    if want <= limit:
        return Output(volts, want, "CV")
    low, high = 0.0, volts
    for _ in range(48):
        mid = (low + high) / 2
        if demand(mid) > limit:
            high = mid
        else:
            low = mid
    return Output(low, limit, "CC")


@dataclass(frozen=True)
class BatteryModel:
    """Open-circuit voltage and internal resistance at SOC 0, 10, ... 100 %."""

    name: str
    voc: tuple[float, ...]
    res: tuple[float, ...]

    def _at(self, table: tuple[float, ...], soc: float) -> float:
        x = max(0.0, min(100.0, soc)) / 100.0 * (len(table) - 1)
        i = min(int(x), len(table) - 2)
        return table[i] + (table[i + 1] - table[i]) * (x - i)

    def voc_at(self, soc: float) -> float:
        return self._at(self.voc, soc)

    def res_at(self, soc: float) -> float:
        return self._at(self.res, soc)

    def soc_at(self, voc: float) -> float:
        """The inverse of voc_at (the manual requires Voc non-decreasing with SOC)."""
        table = self.voc
        if voc <= table[0]:
            return 0.0
        if voc >= table[-1]:
            return 100.0
        i = max(1, bisect.bisect_left(table, voc))
        low, high = table[i - 1], table[i]
        frac = (voc - low) / (high - low) if high > low else 0.0
        return (i - 1 + frac) * 100.0 / (len(table) - 1)


DISCHARGE = "0"  # the 2281S's discharge mode, as this simulator's slot 0
DISCHARGE_RES = 0.1


def battery_model(models: dict[Any, Any], key: Any, window: tuple[float, float]) -> BatteryModel:
    """The model a 2281S slot or built-in name holds (models: the YAML's `battery_models`).
    Discharge mode is a battery whose Voc falls evenly across `window` (VOC:EMPT to VOC:FULL)."""
    if str(key) == DISCHARGE:
        empty, full = window
        return BatteryModel("discharge", tuple(empty + (full - empty) * i / 10 for i in range(11)),
                            (DISCHARGE_RES,) * 11)
    key = int(key) if str(key).isdigit() else key
    entry = models.get(key, "LI-ION4_2")
    name = entry if isinstance(entry, str) else str(key)
    data = models[entry] if isinstance(entry, str) else entry
    return BatteryModel(name, tuple(data["voc"]), tuple(data["res"]))


class Clock:
    """Seconds since the last step, for state that changes with time."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def step(self) -> float:
        now = time.monotonic()
        elapsed, self.last = now - self.last, now
        return elapsed


class Bench:
    """Every instrument of the simulated bench, and the wiring between them."""

    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring
        self.instruments: dict[str, Instrument] = {}

    def load(self, terminal: str) -> dict[str, float]:
        return self.wiring.loads.get(terminal, {})

    def sinks(self, terminal: str) -> list[Sink]:
        """The electronic loads whose input is wired to a source terminal."""
        found = []
        for meter, source in self.wiring.inputs.items():
            sink = getattr(self.instruments.get(meter.partition(":")[0]), "sink_current", None)
            if source == terminal and sink is not None:
                found.append(sink)
        return found

    def input_volts(self, meter_terminal: str) -> float:
        """What a meter input sees: a fixed signal, a source's terminal, or nothing (0 V)."""
        source = self.wiring.inputs.get(meter_terminal)
        if source is None:
            return 0.0
        if isinstance(source, float):
            return source
        device, _, sub = source.partition(":")
        instrument = self.instruments.get(device)
        if instrument is None:
            return 0.0
        instrument.tick()
        instrument.settle()
        return instrument.terminal_volts(sub or None)

    def wired(self, meter_terminal: str) -> bool:
        return meter_terminal in self.wiring.inputs
