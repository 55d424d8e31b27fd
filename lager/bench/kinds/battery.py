"""Battery simulator nets: the state, the driver protocol, the real lager's get-or-set Net API
(no value reads, prints and returns; a value sets). The `lager battery NET ...` verbs and
rendering: battery_spec.py, import-light for the CLI."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ...errors import NetError
from ..net import Net, in_range, say
from ..protocols import Driver, State
from .battery_spec import block

# The real lager's model names (docs: reference/python/battery, model()), to memory slots.
MODEL_ALIASES = {"18650": "1", "liion": "1", "lithium": "1", "nimh": "2", "nickel": "2",
                 "nicd": "3", "nicad": "3", "lead": "4", "leadacid": "4", "sla": "4"}
# 'discharge' (slot 0): the instrument's discharge mode, always there (docs: "always
# available"); its Voc falls evenly from voltage_full to voltage_empty.
DISCHARGE = ("discharge", "0")


@dataclass(frozen=True)
class BatteryState(State):
    enabled: bool
    soc: float
    voltage: float  # at the terminals
    current: float
    open_circuit_voltage: float
    mode: str = "dynamic"  # static or dynamic
    model: str = ""
    voltage_full: float = 0.0
    voltage_empty: float = 0.0
    capacity: float = 0.0  # Ah, the simulated battery's size
    current_limit: float = 0.0
    ovp: float = 0.0
    ocp: float = 0.0
    esr: float = 0.0
    ovp_tripped: bool = False
    ocp_tripped: bool = False


class BatteryDriver(Driver, ABC):
    """Setters and getters by parameter; the Net API turns them into get-or-set methods."""

    @abstractmethod
    def enter_battery_mode(self) -> None: ...

    @abstractmethod
    def set_output(self, on: bool) -> None: ...

    @abstractmethod
    def state(self) -> BatteryState: ...

    @abstractmethod
    def set_mode(self, dynamic: bool) -> None: ...

    @abstractmethod
    def get_mode(self) -> str: ...

    @abstractmethod
    def set_model(self, model: str) -> None: ...

    @abstractmethod
    def get_model(self) -> str: ...

    @abstractmethod
    def models(self) -> list[str]:
        """The models the instrument can recall: its stored slots and built-in models."""

    @abstractmethod
    def set_param(self, name: str, value: float) -> None:
        """soc, voc, voltage_full, voltage_empty, capacity, current_limit, ovp or ocp."""

    @abstractmethod
    def get_param(self, name: str) -> float: ...

    @abstractmethod
    def terminal_voltage(self) -> float: ...

    @abstractmethod
    def current(self) -> float: ...

    @abstractmethod
    def esr(self) -> float: ...

    @abstractmethod
    def clear_ovp(self) -> None: ...

    @abstractmethod
    def clear_ocp(self) -> None: ...


def _param(name: str, unit: str, low: float, high: float | None, show: str) -> Any:
    """A get-or-set method: no value reads (prints and returns), a value sets."""

    def method(self: BatteryNet, value: float | None = None) -> float | None:
        if value is None:
            read = self._driver.get_param(name)
            say(show.format(read))
            return read
        self._driver.set_param(name, in_range(self.name, name.replace("_", " "), value, low,
                                              high, unit))
        return None

    method.__name__ = name
    method.__doc__ = f"Read (print and return) the {name.replace('_', ' ')}, or set it ({unit})."
    return method


class BatteryNet(Net):
    _driver: BatteryDriver

    voc = _param("voc", "V", 0, None, "{:g} V")
    voltage_full = _param("voltage_full", "V", 0, None, "{:g} V")
    voltage_empty = _param("voltage_empty", "V", 0, None, "{:g} V")
    capacity = _param("capacity", "Ah", 1e-9, None, "{:g} Ah")
    current_limit = _param("current_limit", "A", 0.001, 6.0, "{:g} A")  # docs: 0.001-6 A
    ovp = _param("ovp", "V", 0, None, "{:g} V")
    ocp = _param("ocp", "A", 0, None, "{:g} A")

    def soc(self, value: float | None = None) -> float | None:
        """Read (print and return) the state of charge, or set it (0-100 %, rounded)."""
        if value is None:
            read = self._driver.get_param("soc")
            say(f"{read:g}%")
            return read
        self.set_soc(round(in_range(self.name, "SOC", value, 0, 100, "%")))
        return None

    def set_soc(self, percent: float) -> None:
        self._driver.set_param("soc", in_range(self.name, "SOC", percent, 0, 100, "%"))

    def mode(self, mode_type: str | None = None) -> str | None:
        """Read (print and return) 'static' or 'dynamic', or set it."""
        if mode_type is None:
            read = self._driver.get_mode()
            say(read)
            return read
        word = str(mode_type).strip().lower()
        if word not in ("static", "dynamic"):
            raise NetError(f"{self.name}: mode {mode_type!r} is not 'static' or 'dynamic'")
        self._driver.set_mode(dynamic=word == "dynamic")
        return None

    def set_mode_battery(self) -> None:
        """Put the instrument in its battery simulator role."""
        self._driver.enter_battery_mode()

    # The real lager's setter names (its device methods, which its own API tests call).
    def set_mode(self, mode_type: str) -> None:
        self.mode(mode_type)

    def set_voc(self, value: float) -> None:
        self.voc(value)

    def set_volt_full(self, value: float) -> None:
        self.voltage_full(value)

    def set_volt_empty(self, value: float) -> None:
        self.voltage_empty(value)

    def set_capacity(self, value: float) -> None:
        self.capacity(value)

    def set_current_limit(self, value: float) -> None:
        self.current_limit(value)

    def set_ovp(self, value: float) -> None:
        self.ovp(value)

    def set_ocp(self, value: float) -> None:
        self.ocp(value)

    def set_model(self, partnumber: str | int) -> None:
        self.model(partnumber)

    def enable_battery(self) -> None:
        self.enable()

    def disable_battery(self) -> None:
        self.disable()

    def set_to_battery_mode(self) -> None:
        """The real lager's other name for set_mode_battery() (its API tests use it)."""
        self.set_mode_battery()

    def get_monitor_state(self, channel: int | None = None) -> dict[str, Any]:
        """The state under the real lager's monitor keys (its API tests read them)."""
        self._own_channel(channel)
        s = self._driver.state()
        return {"terminal_voltage": s.voltage, "current": s.current, "esr": s.esr,
                "soc": s.soc, "voc": s.open_circuit_voltage, "enabled": s.enabled,
                "mode": s.mode, "model": s.model, "capacity": s.capacity,
                "current_limit": s.current_limit, "ocp_limit": s.ocp, "ovp_limit": s.ovp,
                "volt_full": s.voltage_full, "volt_empty": s.voltage_empty,
                "ocp_tripped": s.ocp_tripped, "ovp_tripped": s.ovp_tripped}

    def model(self, partnumber: str | int | None = None) -> str | None:
        """Read (print and return) the active model, or recall one: a slot (1-9), a built-in
        model (LI-ION4_2...), or one of the real lager's names ('18650', 'nimh'...)."""
        if partnumber is None:
            read = self._driver.get_model()
            say(read)
            return read
        token = str(partnumber).strip()
        key = token.lower().replace("-", "").replace("_", "")
        if token.lower() in DISCHARGE:
            token = DISCHARGE[0]
        wanted = MODEL_ALIASES.get(key, token)
        try:
            self._driver.set_model(wanted)
        except NetError:
            held = self._driver.models()
            if wanted.upper() in held:
                raise  # refused for another reason (the simulation runs...): its own words
            slot = f" (slot {wanted})" if wanted != token else ""
            raise NetError(f"{self.name}: no model {token!r}{slot}; the instrument holds "
                           f"{', '.join(held)}; 'discharge' is always available") from None
        return None

    def models(self) -> list[str]:
        """Print and return the models the instrument holds (slots, then built-ins)."""
        found = self._driver.models()
        say("\n".join(found))
        return found

    def model_catalog(self) -> list[str]:
        """The docs' name for models()."""
        return self.models()

    def enable(self) -> None:
        self._driver.set_output(True)

    def disable(self, teardown: bool = True) -> None:  # the real signature; teardown: at close
        self._driver.set_output(False)

    def clear_ovp(self) -> None:
        self._driver.clear_ovp()

    def clear_ocp(self) -> None:
        self._driver.clear_ocp()

    def clear(self) -> None:
        self._driver.clear_ovp()
        self._driver.clear_ocp()

    def terminal_voltage(self) -> float:
        return self._driver.terminal_voltage()

    def current(self) -> float:
        return self._driver.current()

    def esr(self) -> float:
        return self._driver.esr()

    def state(self) -> BatteryState:
        """The state, returned (not printed: print_state() prints)."""
        return self._driver.state()

    def print_state(self) -> BatteryState:
        state = self._driver.state()
        say(block(state.as_dict()))
        return state
