"""Voltage inputs: a Keithley DAQ6510 scan card channel, or a Keysight 34461A DMM."""
from __future__ import annotations

from ..kinds.adc import ADCDriver


class KeithleyDAQ6510Input(ADCDriver):
    def read_voltage(self) -> float:
        # :MEAS:VOLT:DC? with a channel list closes that channel and reads it.
        return self._f(f":MEAS:VOLT:DC? (@{self.channel or 101})")


class Keysight34461AInput(ADCDriver):
    def read_voltage(self) -> float:
        return self._f("MEAS:VOLT:DC? DEF,DEF")
