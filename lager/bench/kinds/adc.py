"""ADC nets: one voltage input (`Net.get(name, type=NetType.ADC).input()`, `lager adc NET`)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..net import Net
from ..protocols import Driver, State
from .spec import Kind, Verb


@dataclass(frozen=True)
class ADCReading(State):
    voltage: float


class ADCDriver(Driver, ABC):
    @abstractmethod
    def read_voltage(self) -> float: ...


class ADCNet(Net):
    _driver: ADCDriver

    def input(self) -> float:
        """The input's voltage, in volts."""
        return self._driver.read_voltage()

    def read_state(self) -> ADCReading:
        return ADCReading(self.input())


KIND = Kind(
    name="adc", net_type="ADC", summary="ADC net (a voltage input)",
    net_class=ADCNet, default_verb="read",
    verbs=(Verb("read", "read the input's voltage (V)"),),
    drivers={"keithley_daq6510": "lager.bench.drivers.meters:KeithleyDAQ6510Input",
             "keysight_34461a": "lager.bench.drivers.meters:Keysight34461AInput"},
    snapshot=lambda net: net.read_state().as_dict(),
    line=lambda s: f"{s['net']}: {s['voltage']:.4f} V",
)
