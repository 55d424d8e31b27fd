"""Rigol DP821: two channels (CH1 60 V/1 A, CH2 8 V/10 A) on one VISA resource."""
from __future__ import annotations

from ..protocols import PowerSupplyDriver, SupplyState


class RigolDP821Supply(PowerSupplyDriver):
    @property
    def ch(self) -> int:
        return self.channel or 1

    def set_voltage(self, volts: float) -> None:
        self._w(f":SOUR{self.ch}:VOLT {volts:.3f}")

    def set_current(self, amps: float) -> None:
        self._w(f":SOUR{self.ch}:CURR {amps:.4f}")

    def set_output(self, on: bool) -> None:
        self._w(f":OUTP CH{self.ch},{'ON' if on else 'OFF'}")

    def state(self) -> SupplyState:
        ch = self.ch
        return SupplyState(enabled=self._q(f":OUTP? CH{ch}") == "ON",
                           set_voltage=self._f(f":SOUR{ch}:VOLT?"),
                           set_current=self._f(f":SOUR{ch}:CURR?"),
                           voltage=self._f(f":MEAS:VOLT? CH{ch}"),
                           current=self._f(f":MEAS:CURR? CH{ch}"))
