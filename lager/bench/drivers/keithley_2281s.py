"""Keithley 2281S: a power supply and a battery simulator in one box (one VISA resource)."""
from __future__ import annotations

from ..protocols import BatteryDriver, BatteryState, PowerSupplyDriver, SupplyState


class Keithley2281SSupply(PowerSupplyDriver):
    def set_voltage(self, volts: float) -> None:
        self._w(f":SOUR:VOLT {volts:.4f}")

    def set_current(self, amps: float) -> None:
        self._w(f":SOUR:CURR {amps:.4f}")

    def set_output(self, on: bool) -> None:
        if on:  # the 2281S sources in one role at a time
            self._w(":ENTR:FUNC POWER")
        self._w(f":OUTP {1 if on else 0}")

    def state(self) -> SupplyState:
        return SupplyState(enabled=self._q(":OUTP?") == "1",
                           set_voltage=self._f(":SOUR:VOLT?"),
                           set_current=self._f(":SOUR:CURR?"),
                           voltage=self._f(":MEAS:VOLT?"),
                           current=self._f(":MEAS:CURR?"))


class Keithley2281SBattery(BatteryDriver):
    def set_soc(self, percent: float) -> None:
        self._w(f":BATT:SIM:SOC {percent:.2f}")

    def set_output(self, on: bool) -> None:
        if on:
            self._w(":ENTR:FUNC SIMULATOR")
        self._w(f":BATT:OUTP {1 if on else 0}")

    def state(self) -> BatteryState:
        return BatteryState(enabled=self._q(":BATT:OUTP?") == "1",
                            soc=self._f(":BATT:SIM:SOC?"),
                            voltage=self._f(":BATT:SIM:TVOL?"),
                            current=self._f(":BATT:SIM:CURR?"),
                            open_circuit_voltage=self._f(":BATT:SIM:VOC?"))
