"""Keithley 2281S: a power supply and a battery simulator in one box (one VISA resource).

The two roles share the output terminals; `:ENTR:FUNC` picks one, and the instrument turns its
output off when the role changes. Every setting is followed by a read of the error queue, so
a refused value (a current limit below 0.1 A, a model parameter changed while the simulation
runs) is an error naming the net, the command and the instrument's words.
"""
from __future__ import annotations

from ..protocols import BatteryDriver, BatteryState, PowerSupplyDriver, SupplyState
from ..session import InstrumentSession

# :STAT:QUES:INST:ISUM:COND? bits (2281S reference manual, appendix D)
_CC, _CV = 1, 2


class _Keithley2281S:
    net: str
    session: InstrumentSession

    def _set(self, command: str) -> None:
        self.session.configure(self.net, command)


class Keithley2281SSupply(_Keithley2281S, PowerSupplyDriver):
    def set_voltage(self, volts: float) -> None:
        self._set(f":SOUR:VOLT {volts:.4f}")

    def set_current(self, amps: float) -> None:
        self._set(f":SOUR:CURR {amps:.4f}")

    def set_output(self, on: bool) -> None:
        if on:  # the 2281S sources in one role at a time
            self._set(":ENTR:FUNC POW")
        self._set(f":OUTP {'ON' if on else 'OFF'}")

    def state(self) -> SupplyState:
        # :MEAS:CONC? measures both at once and answers "amps,volts".
        amps, volts = (float(x) for x in self._q(":MEAS:CONC?").split(",")[:2])
        return SupplyState(enabled=self._q(":OUTP?") == "1",
                           set_voltage=self._f(":SOUR:VOLT?"),
                           set_current=self._f(":SOUR:CURR?"),
                           voltage=volts, current=amps)

    def voltage(self) -> float:
        return self._f(":MEAS:VOLT?")

    def current(self) -> float:
        return self._f(":MEAS:CURR?")

    def power(self) -> float:
        amps, volts = (float(x) for x in self._q(":MEAS:CONC?").split(",")[:2])
        return amps * volts

    def mode(self) -> str:
        bits = int(self._f(":STAT:QUES:INST:ISUM:COND?"))
        return "CC" if bits & _CC else "CV" if bits & _CV else "OFF"

    def set_ovp(self, volts: float) -> None:
        self._set(f":SOUR:VOLT:PROT {volts:.4f}")

    def set_ocp(self, amps: float) -> None:
        self._set(f":SOUR:CURR:PROT {amps:.4f}")

    def get_ovp_limit(self) -> float:
        return self._f(":SOUR:VOLT:PROT?")

    def get_ocp_limit(self) -> float:
        return self._f(":SOUR:CURR:PROT?")

    def is_ovp(self) -> bool:
        return self._q(":OUTP:PROT:TRIP?") == "OVP"

    def is_ocp(self) -> bool:
        return self._q(":OUTP:PROT:TRIP?") == "OCP"

    def clear_ovp(self) -> None:
        self._set(":OUTP:PROT:CLE")

    def clear_ocp(self) -> None:
        self._set(":OUTP:PROT:CLE")


class Keithley2281SBattery(_Keithley2281S, BatteryDriver):
    def set_soc(self, percent: float) -> None:
        self._set(f":BATT:SIM:SOC {percent:.2f}")

    def set_output(self, on: bool) -> None:
        if on:
            self._set(":ENTR:FUNC SIM")
        self._set(f":BATT:OUTP {'ON' if on else 'OFF'}")

    def state(self) -> BatteryState:
        return BatteryState(enabled=self._q(":BATT:OUTP?") == "1",
                            soc=self._f(":BATT:SIM:SOC?"),
                            voltage=self._f(":BATT:SIM:TVOL?"),
                            current=self._f(":BATT:SIM:CURR?"),
                            open_circuit_voltage=self._f(":BATT:SIM:VOC?"))

    # The battery simulator's parameters (the real lager's battery methods use these).

    def set_mode(self, dynamic: bool) -> None:
        self._set(f":BATT:SIM:METH {'DYN' if dynamic else 'STAT'}")

    def get_mode(self) -> str:
        """'dynamic' or 'static'."""
        return "dynamic" if self._q(":BATT:SIM:METH?") == "DYN" else "static"

    def set_voc(self, volts: float) -> None:
        self._set(f":BATT:SIM:VOC {volts:.4f}")

    def get_voc(self) -> float:
        return self._f(":BATT:SIM:VOC?")

    def set_voltage_full(self, volts: float) -> None:
        self._set(f":BATT:SIM:VOC:FULL {volts:.4f}")

    def get_voltage_full(self) -> float:
        return self._f(":BATT:SIM:VOC:FULL?")

    def set_voltage_empty(self, volts: float) -> None:
        self._set(f":BATT:SIM:VOC:EMPT {volts:.4f}")

    def get_voltage_empty(self) -> float:
        return self._f(":BATT:SIM:VOC:EMPT?")

    def set_capacity(self, amp_hours: float) -> None:
        self._set(f":BATT:SIM:CAP:LIM {amp_hours:.4f}")

    def get_capacity(self) -> float:
        return self._f(":BATT:SIM:CAP:LIM?")

    def set_current_limit(self, amps: float) -> None:
        self._set(f":BATT:SIM:CURR:LIM {amps:.4f}")

    def get_current_limit(self) -> float:
        return self._f(":BATT:SIM:CURR:LIM?")

    def set_ovp(self, volts: float) -> None:
        self._set(f":BATT:SIM:TVOL:PROT {volts:.4f}")

    def get_ovp(self) -> float:
        return self._f(":BATT:SIM:TVOL:PROT?")

    def set_ocp(self, amps: float) -> None:
        self._set(f":BATT:SIM:CURR:PROT {amps:.4f}")

    def get_ocp(self) -> float:
        return self._f(":BATT:SIM:CURR:PROT?")

    def set_model(self, model: str) -> None:
        """A memory slot (1-9) or a built-in model name such as LI-ION4_2."""
        self._set(f":BATT:MOD:RCL {model}")

    def get_model(self) -> str:
        return self._q(":BATT:MOD:RCL?")

    def terminal_voltage(self) -> float:
        return self._f(":BATT:SIM:TVOL?")

    def current(self) -> float:
        return self._f(":BATT:SIM:CURR?")

    def esr(self) -> float:
        return self._f(":BATT:SIM:RES?")

    def is_ovp(self) -> bool:
        return self._q(":BATT:OUTP:PROT:TRIP?") == "OVP"

    def is_ocp(self) -> bool:
        return self._q(":BATT:OUTP:PROT:TRIP?") == "OCP"

    def clear_ovp(self) -> None:
        self._set(":BATT:OUTP:PROT:CLE")

    def clear_ocp(self) -> None:
        self._set(":BATT:OUTP:PROT:CLE")
