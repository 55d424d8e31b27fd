"""`Net.get(name, type=NetType.X)`: the script's handle on one net of the bench."""
from __future__ import annotations

import enum
import threading
from typing import Any

from ..errors import NetError, UnknownNet, WrongNetType
from .config import NetSpec, load_bench
from .drivers import DRIVERS
from .protocols import (
    ADCDriver,
    BatteryDriver,
    BatteryState,
    Driver,
    PowerSupplyDriver,
    SupplyState,
)
from .session import close_session, open_session

_bench: dict[str, NetSpec] | None = None
_bench_lock = threading.Lock()


class NetType(enum.Enum):
    PowerSupply = "PowerSupply"
    Battery = "Battery"
    ADC = "ADC"

    @property
    def article(self) -> str:
        return "an" if self.value[0] in "AEIOU" else "a"


def bench() -> dict[str, NetSpec]:
    global _bench
    with _bench_lock:
        if _bench is None:
            _bench = load_bench()
        return _bench


class Net:
    """Base of every net: a claim on its instrument until close() (or the process ends)."""

    kind: NetType

    def __init__(self, spec: NetSpec, driver: Driver) -> None:
        self.spec = spec
        self.name = spec.name
        self._driver = driver
        self._closed = False

    @staticmethod
    def get(name: str, type: NetType | str | None = None) -> Any:
        specs = bench()
        spec = specs.get(name)
        if spec is None:
            raise UnknownNet(f"no net {name!r} on this bench; nets: {', '.join(sorted(specs))}")
        kind = NetType(spec.kind)
        if type is not None:
            try:
                wanted = type if isinstance(type, NetType) else NetType(type)
            except ValueError:
                raise NetError(f"unknown net type {type!r}; use NetType.PowerSupply, "
                               "NetType.Battery or NetType.ADC") from None
            if wanted is not kind:
                raise WrongNetType(f"{name} is {kind.article} {kind.value} net, "
                                   f"not {wanted.article} {wanted.value}")
        driver_cls = DRIVERS.get(spec.instrument.driver, {}).get(kind.value)
        if driver_cls is None:
            raise NetError(f"{name}: driver {spec.instrument.driver!r} cannot serve "
                           f"{kind.article} {kind.value} net")
        session = open_session(spec.instrument, name)
        return _NET_CLASSES[kind](spec, driver_cls(session, spec.channel, name))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close_session(self.spec.instrument, self.name)

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{self.kind.value} net {self.name} on {self.spec.instrument.name}>"


def _in_range(net: str, what: str, value: float, low: float, high: float | None,
              unit: str) -> float:
    number = float(value)
    if not (number >= low and (high is None or number <= high)):
        limit = f"{low:g} to {high:g}" if high is not None else f"at least {low:g}"
        raise NetError(f"{net}: {what} {number:g} {unit} is out of range ({limit} {unit})")
    return number


class PowerSupplyNet(Net):
    kind = NetType.PowerSupply
    _driver: PowerSupplyDriver

    def set_voltage(self, volts: float) -> None:
        self._driver.set_voltage(_in_range(self.name, "voltage", volts, 0, None, "V"))

    def set_current(self, amps: float) -> None:
        self._driver.set_current(_in_range(self.name, "current", amps, 0, None, "A"))

    def enable(self) -> None:
        self._driver.set_output(True)

    def disable(self) -> None:
        self._driver.set_output(False)

    def state(self) -> SupplyState:
        return self._driver.state()


class BatteryNet(Net):
    kind = NetType.Battery
    _driver: BatteryDriver

    def set_soc(self, percent: float) -> None:
        self._driver.set_soc(_in_range(self.name, "SOC", percent, 0, 100, "%"))

    def enable(self) -> None:
        self._driver.set_output(True)

    def disable(self) -> None:
        self._driver.set_output(False)

    def state(self) -> BatteryState:
        return self._driver.state()


class ADCNet(Net):
    kind = NetType.ADC
    _driver: ADCDriver

    def input(self) -> float:
        return self._driver.read_voltage()


_NET_CLASSES: dict[NetType, type[Net]] = {NetType.PowerSupply: PowerSupplyNet,
                                          NetType.Battery: BatteryNet, NetType.ADC: ADCNet}
