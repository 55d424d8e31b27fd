"""Electronic load nets (NetType.ELoad): CC, CV, CR and CP modes, the real lager's Net API
(get-or-set methods that return, and measured_*()), and `lager load NET ...` (also spelled
`lager eload`, the real lager's name, with its cc/cv/cr/cp verbs: load_spec.py, import-light
for the CLI)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ...errors import NetError
from ..net import Net, in_range, say
from ..protocols import Driver, State
from .load_spec import LEVELS, SPELLINGS, block


@dataclass(frozen=True)
class LoadState(State):
    enabled: bool
    mode: str  # CC, CV, CR or CP
    current_set: float
    voltage_set: float
    resistance_set: float
    power_set: float
    voltage: float  # measured at the input
    current: float
    power: float


class LoadDriver(Driver, ABC):
    @abstractmethod
    def set_mode(self, mode: str) -> None:
        """CC, CV, CR or CP."""

    @abstractmethod
    def get_mode(self) -> str: ...

    @abstractmethod
    def set_level(self, mode: str, value: float) -> None:
        """The set point that mode regulates to (A, V, ohm or W)."""

    @abstractmethod
    def get_level(self, mode: str) -> float: ...

    @abstractmethod
    def set_input(self, on: bool) -> None: ...

    @abstractmethod
    def measured(self) -> tuple[float, float, float]:
        """(volts, amps, watts) at the input."""

    @abstractmethod
    def state(self) -> LoadState: ...


def mode_word(name: str, mode: Any) -> str:
    found = SPELLINGS.get(str(mode).strip().upper())
    if found is None:
        raise NetError(f"{name}: mode {mode!r} is not CC, CV, CR or CW/CP")
    return found


def _level(mode: str) -> Any:
    what, unit = LEVELS[mode]

    def method(self: ELoadNet, value: float | None = None) -> float | None:
        if value is None:
            return self._driver.get_level(mode)
        self._driver.set_level(mode, in_range(self.name, what, value, 0, None, unit))
        return None

    method.__name__ = what
    method.__doc__ = f"Read (return) the {mode} set point, or set it ({unit})."
    return method


class ELoadNet(Net):
    _driver: LoadDriver

    current = _level("CC")
    voltage = _level("CV")
    resistance = _level("CR")
    power = _level("CP")

    def mode(self, mode_type: str | None = None) -> str | None:
        """Read (return) CC, CV, CR or CW (the real lager's name for CP), or set it."""
        if mode_type is None:
            mode = self._driver.get_mode()
            return "CW" if mode == "CP" else mode
        self._driver.set_mode(mode_word(self.name, mode_type))
        return None

    def enable(self) -> None:
        self._driver.set_input(True)

    def disable(self, teardown: bool = True) -> None:  # the real signature; teardown: at close
        self._driver.set_input(False)

    def measured_voltage(self) -> float:
        return self._driver.measured()[0]

    def measured_current(self) -> float:
        return self._driver.measured()[1]

    def measured_power(self) -> float:
        return self._driver.measured()[2]

    def state(self) -> LoadState:
        return self._driver.state()

    def print_state(self) -> LoadState:
        state = self._driver.state()
        say(block(state.as_dict()))
        return state
