"""ADC nets: one voltage input (`Net.get(name, type=NetType.ADC).input()`, `lager adc NET`).
The `lager adc` declaration: adc_spec.py, import-light for the CLI."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..net import Net
from ..protocols import Driver, State


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
