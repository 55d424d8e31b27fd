"""Electronic load nets (NetType.ELoad): CC, CV, CR and CP modes, the real lager's Net API
(get-or-set methods that return, and measured_*()), and `lager load NET ...` (also spelled
`lager eload`, the real lager's name, with its cc/cv/cr/cp verbs)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ...errors import NetError
from ..net import Net, in_range, say
from ..protocols import Driver, State
from .safe import ENABLED, SafeSetting, switch
from .spec import NUMBER, WORD, Kind, Verb

MODES = ("CC", "CV", "CR", "CP")
# The real lager calls constant power CW and accepts CP too; the instrument says CP.
_SPELLINGS = {"CC": "CC", "CV": "CV", "CR": "CR", "CP": "CP", "CW": "CP"}
_LEVELS = {"CC": ("current", "A"), "CV": ("voltage", "V"), "CR": ("resistance", "ohm"),
           "CP": ("power", "W")}


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
    found = _SPELLINGS.get(str(mode).strip().upper())
    if found is None:
        raise NetError(f"{name}: mode {mode!r} is not CC, CV, CR or CW/CP")
    return found


def _level(mode: str) -> Any:
    what, unit = _LEVELS[mode]

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


def block(s: dict[str, Any]) -> str:
    what, unit = _LEVELS[s["mode"]]
    return "\n".join([
        "Electronic Load State:", f"  Mode: {s['mode']}",
        f"  Input: {'Enabled' if s['enabled'] else 'Disabled'}",
        f"  Measured Voltage: {s['voltage']:.3f} V", f"  Measured Current: {s['current']:.3f} A",
        f"  Measured Power: {s['power']:.3f} W",
        f"  {what.capitalize()} Setting: {s[what + '_set']:.3f} {unit}"])


def line(s: dict[str, Any]) -> str:
    what, unit = _LEVELS[s["mode"]]
    return (f"{s['net']}: {'on ' if s['enabled'] else 'off'}  {s['mode']} "
            f"{s[what + '_set']:g} {unit}  measured {s['voltage']:.3f} V "
            f"{s['current']:.4f} A {s['power']:.3f} W")


def _setpoint(mode: str) -> Any:
    """`cc 0.5`: CC mode at 0.5 A, as the real `lager eload NET cc 0.5` does."""

    def run(net: ELoadNet, value: Any, _opts: dict[str, float]) -> None:
        if value is not None:
            # The level first: one the load refuses (`cr 0`) then leaves its mode as it was.
            # The DL3000 keeps a set point per mode, so setting another mode's is harmless.
            getattr(net, _LEVELS[mode][0])(value)
            net.mode(mode)

    return run


def _mode(net: ELoadNet, value: Any, _opts: dict[str, float]) -> None:
    if value is not None:
        net.mode(value)


def _verb(spelling: str) -> Verb:
    """`cc`, `cv`, `cr`, `cp`, and `cw`: the real lager's name for CP."""
    mode = _SPELLINGS[spelling]
    what, unit = _LEVELS[mode]
    return Verb(spelling.lower(),
                f"read the {spelling} set point, or set {spelling} mode at VALUE ({unit})",
                _setpoint(mode), NUMBER, unit=unit,
                show=lambda s: f"{s['net']}: {spelling} {s[what + '_set']:g} {unit}")


KIND = Kind(
    name="load", aliases=("eload",), net_type="ELoad", summary="Electronic load net",
    net_class=ELoadNet, default_verb="state",
    verbs=(
        Verb("state", "show the load's mode, set points and measurements",
             show=lambda s: line(s) + "\n" + block(s)),
        *(_verb(spelling) for spelling in (*MODES, "CW")),
        Verb("mode", "read or set the mode: CC, CV, CR or CP (CW)", _mode, WORD,
             choices=("CC", "CV", "CR", "CP", "CW"),
             show=lambda s: f"{s['net']}: {s['mode']}"),
        Verb("enable", "turn the input on (start sinking)", lambda n, _v, _o: n.enable(),
             confirm="Enable Net?"),
        Verb("disable", "turn the input off", lambda n, _v, _o: n.disable()),
    ),
    drivers={"rigol_dl3021": "lager.bench.drivers.rigol_dl3021:RigolDL3021Load"},
    snapshot=lambda net: net.state().as_dict(),
    line=line,
    safe=(SafeSetting(ENABLED, switch("enable", "disable")),),  # the input stops sinking
)
