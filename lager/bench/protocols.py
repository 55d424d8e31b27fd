"""One protocol per kind of instrument; vendor drivers implement them and return values."""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

from .session import InstrumentSession


@dataclass(frozen=True)
class SupplyState:
    enabled: bool
    set_voltage: float
    set_current: float
    voltage: float
    current: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatteryState:
    enabled: bool
    soc: float
    voltage: float
    current: float
    open_circuit_voltage: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Driver:
    def __init__(self, session: InstrumentSession, channel: int | None, net: str) -> None:
        self.session = session
        self.channel = channel
        self.net = net  # errors name the net the user asked for

    def _w(self, command: str) -> None:
        self.session.write(self.net, command)

    def _q(self, command: str) -> str:
        return self.session.query(self.net, command)

    def _f(self, command: str) -> float:
        return self.session.query_float(self.net, command)


class PowerSupplyDriver(Driver):
    @abstractmethod
    def set_voltage(self, volts: float) -> None: ...

    @abstractmethod
    def set_current(self, amps: float) -> None: ...

    @abstractmethod
    def set_output(self, on: bool) -> None: ...

    @abstractmethod
    def state(self) -> SupplyState: ...


class BatteryDriver(Driver):
    @abstractmethod
    def set_soc(self, percent: float) -> None: ...

    @abstractmethod
    def set_output(self, on: bool) -> None: ...

    @abstractmethod
    def state(self) -> BatteryState: ...


class ADCDriver(Driver):
    @abstractmethod
    def read_voltage(self) -> float: ...
