"""Power supply nets: the state, the driver protocol and the Net API the real lager documents
(the `lager supply NET ...` verbs and rendering: supply_spec.py, import-light for the CLI)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any

from ...errors import NetError
from ..net import Net, in_range, say
from ..protocols import Driver, State
from .supply_spec import block


@dataclass(frozen=True)
class SupplyState(State):
    enabled: bool
    set_voltage: float
    set_current: float
    voltage: float  # measured
    current: float  # measured
    power: float = 0.0  # measured
    mode: str = "CV"  # CV, CC (or what the instrument says when off)
    channel: str = "CH1"
    ovp_limit: float = 0.0
    ocp_limit: float = 0.0
    ovp_tripped: bool = False
    ocp_tripped: bool = False
    voltage_max: float | None = None  # the channel's rating; only from get_full_state()
    current_max: float | None = None

    def __repr__(self) -> str:
        # Short, because in the console `psu.state()` shows this right after its printed block.
        return (f"SupplyState({'on' if self.enabled else 'off'} {self.mode} "
                f"{self.voltage:.4f} V {self.current:.4f} A, set {self.set_voltage:g} V "
                f"{self.set_current:g} A)")


class SupplyDriver(Driver, ABC):
    @abstractmethod
    def set_voltage(self, volts: float) -> None: ...

    @abstractmethod
    def set_current(self, amps: float) -> None: ...

    @abstractmethod
    def set_output(self, on: bool) -> None: ...

    @abstractmethod
    def state(self) -> SupplyState: ...

    @abstractmethod
    def setpoints(self) -> tuple[float, float]:
        """(volts, amps) set."""

    @abstractmethod
    def ratings(self) -> tuple[float, float]:
        """(volts, amps) the channel is rated for."""

    @abstractmethod
    def voltage(self) -> float: ...

    @abstractmethod
    def current(self) -> float: ...

    @abstractmethod
    def power(self) -> float: ...

    @abstractmethod
    def set_ovp(self, volts: float) -> None: ...

    @abstractmethod
    def set_ocp(self, amps: float) -> None: ...

    @abstractmethod
    def get_ovp_limit(self) -> float: ...

    @abstractmethod
    def get_ocp_limit(self) -> float: ...

    @abstractmethod
    def is_ovp(self) -> bool: ...

    @abstractmethod
    def is_ocp(self) -> bool: ...

    @abstractmethod
    def clear_ovp(self) -> None: ...

    @abstractmethod
    def clear_ocp(self) -> None: ...

    def set_mode(self) -> None:
        """Put a multi-role instrument in its power supply role (nothing to do on most)."""

    def protection_switches(self) -> tuple[bool, bool] | None:
        """Whether OVP and OCP are on, where setting a limit also turns it on (so a refused
        change can put them back); None where a limit is only a level."""
        return None

    def set_protection_switches(self, ovp: bool, ocp: bool) -> None:
        """Put back what protection_switches() read."""


class PowerSupplyNet(Net):
    _driver: SupplyDriver

    def set_voltage(self, value: float) -> None:
        self._driver.set_voltage(in_range(self.name, "voltage", value, 0, None, "V"))

    def set_current(self, value: float) -> None:
        self._driver.set_current(in_range(self.name, "current", value, 0, None, "A"))

    def voltage(self, value: float | None = None, ovp: float | None = None,
                ocp: float | None = None) -> float | None:
        """The measured voltage; with a value (or limits), set them instead."""
        if value is None and ovp is None and ocp is None:
            return self._driver.voltage()
        self.apply(voltage=value, ovp=ovp, ocp=ocp)
        return None

    def current(self, value: float | None = None, ovp: float | None = None,
                ocp: float | None = None) -> float | None:
        """The measured current; with a value (or limits), set them instead."""
        if value is None and ovp is None and ocp is None:
            return self._driver.current()
        self.apply(current=value, ovp=ovp, ocp=ocp)
        return None

    def power(self) -> float:
        return self._driver.power()

    def measured_voltage(self) -> float:
        return self._driver.voltage()

    def measured_current(self) -> float:
        return self._driver.current()

    def measured_power(self) -> float:
        return self._driver.power()

    def enable(self) -> None:
        self._driver.set_output(True)

    def disable(self, teardown: bool = True) -> None:  # the real signature; teardown: at close
        self._driver.set_output(False)

    def set_mode(self) -> None:
        self._driver.set_mode()

    def set_ovp(self, limit: float) -> None:
        """Over-voltage protection; refused below the voltage set point, as the docs say."""
        self.apply(ovp=limit)

    def set_ocp(self, limit: float) -> None:
        self._driver.set_ocp(in_range(self.name, "OCP", limit, 0, None, "A"))

    def get_ovp_limit(self) -> float:
        return self._driver.get_ovp_limit()

    def get_ocp_limit(self) -> float:
        return self._driver.get_ocp_limit()

    def is_ovp(self) -> bool:
        return self._driver.is_ovp()

    def is_ocp(self) -> bool:
        return self._driver.is_ocp()

    def clear_ovp(self) -> None:
        self._driver.clear_ovp()

    def clear_ocp(self) -> None:
        self._driver.clear_ocp()

    def read_state(self) -> SupplyState:
        """The state, without printing it."""
        return self._driver.state()

    def state(self) -> SupplyState:
        """Print the state block the real lager prints, and return it."""
        state = self._driver.state()
        say(block(state.as_dict(), full=False))
        return state

    def get_full_state(self) -> SupplyState:
        """state(), plus the set points and the channel's ratings."""
        volts, amps = self._driver.ratings()
        state = replace(self._driver.state(), voltage_max=volts, current_max=amps)
        say(block(state.as_dict(), full=True))
        return state

    # Not on the docs' page, but the real lager has them and its own API tests call them.
    def output_is_enabled(self) -> bool:
        return self._driver.state().enabled

    def get_output_mode(self) -> str:
        """'CV' or 'CC'."""
        return self._driver.state().mode

    def get_channel_limits(self) -> dict[str, float]:
        """The channel's ratings: voltage_max (V) and current_max (A)."""
        volts, amps = self._driver.ratings()
        return {"voltage_max": volts, "current_max": amps}

    def get_monitor_state(self, channel: int | None = None) -> dict[str, Any]:
        """The state under the real lager's monitor keys (voltage_set, not set_voltage)."""
        self._own_channel(channel)
        s = self._driver.state()
        volts, amps = self._driver.ratings()
        return {"voltage": s.voltage, "current": s.current, "power": s.power,
                "enabled": s.enabled, "mode": s.mode, "voltage_set": s.set_voltage,
                "current_set": s.set_current, "voltage_max": volts, "current_max": amps,
                "ocp_limit": s.ocp_limit, "ocp_tripped": s.ocp_tripped,
                "ovp_limit": s.ovp_limit, "ovp_tripped": s.ovp_tripped}

    def apply(self, voltage: float | None = None, current: float | None = None,
              ovp: float | None = None, ocp: float | None = None) -> None:
        """Set points and limits together, checked before anything is sent.

        OVP must be at least the voltage set point and, when both are given, OCP at least
        the current. A limit is moved before a set point that rises past the old limit and
        after one that falls, so the output never sees a set point above its own limit.
        """
        name, d = self.name, self._driver
        volts = in_range(name, "voltage", voltage, 0, None, "V") if voltage is not None else None
        amps = in_range(name, "current", current, 0, None, "A") if current is not None else None
        o_v = in_range(name, "OVP", ovp, 0, None, "V") if ovp is not None else None
        o_c = in_range(name, "OCP", ocp, 0, None, "A") if ocp is not None else None
        set_v, set_a = d.setpoints() if (o_v is not None or o_c is not None) else (0.0, 0.0)
        if o_v is not None:
            floor = volts if volts is not None else set_v
            if o_v < floor:
                raise NetError(f"{name}: OVP {o_v:g} V is below the voltage set point "
                               f"{floor:g} V; OVP must be >= the voltage set point")
        if o_c is not None and amps is not None and o_c < amps:
            raise NetError(f"{name}: OCP {o_c:g} A is below the current set point {amps:g} A; "
                           "OCP must be >= the current set point")
        if sum(x is not None for x in (volts, amps, o_v, o_c)) < 2:
            _ordered(volts, o_v, set_v, d.set_voltage, d.set_ovp)
            _ordered(amps, o_c, set_a, d.set_current, d.set_ocp)
        else:
            _undoable(d, (volts, o_v, set_v), (amps, o_c, set_a))


def _undoable(d: SupplyDriver, voltage: tuple[float | None, float | None, float],
              current: tuple[float | None, float | None, float]) -> None:
    """Several writes (each (point, limit, old point)). When the instrument refuses one part
    way (a limit past its own maximum), the ones before it are undone, newest first (back
    through the same safe states), so a refused command changes nothing."""
    (old_v, old_a), old_ovp, old_ocp = d.setpoints(), d.get_ovp_limit(), d.get_ocp_limit()
    switches = d.protection_switches()
    done: list[tuple[Any, float]] = []

    def write(setter: Any, old: float) -> Any:
        def run(value: float) -> None:
            setter(value)
            done.append((setter, old))
        return run

    try:
        _ordered(*voltage, write(d.set_voltage, old_v), write(d.set_ovp, old_ovp))
        _ordered(*current, write(d.set_current, old_a), write(d.set_ocp, old_ocp))
    except NetError:
        for setter, old in reversed(done):
            setter(old)
        if switches is not None and done:
            d.set_protection_switches(*switches)
        raise


def _ordered(point: float | None, limit: float | None, old: float, set_point: Any,
             set_limit: Any) -> None:
    if limit is not None and (point is None or point > old):
        set_limit(limit)
        limit = None
    if point is not None:
        set_point(point)
    if limit is not None:
        set_limit(limit)
