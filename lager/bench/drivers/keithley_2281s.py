"""Keithley 2281S: a power supply and a battery simulator in one box (one VISA resource).

The two roles share the output terminals; `:ENTR:FUNC` picks one, and the instrument turns its
output off when the role changes. Every setting is followed by a read of the error queue, so
a refused value (a current limit below 0.1 A, a model parameter changed while the simulation
runs) is an error naming the net, the command and the instrument's words.
"""
from __future__ import annotations

from ..kinds.battery import BatteryDriver, BatteryState
from ..kinds.supply import SupplyDriver, SupplyState

# :STAT:QUES:INST:ISUM:COND? bits (2281S reference manual, appendix D)
_CC, _CV = 1, 2
# The five models in the firmware (:BATT:MOD:RCL <name>, manual 7-35), as the manual spells them.
BUILTIN_MODELS = ("LI-ION4_2", "NIMH1_2", "NICD1_2", "LEAD-ACID12", "NIMH12")
DISCHARGE = "discharge"
RATED = (20.0, 6.0)  # volts, amps
# The battery parameters (lager.bench.kinds.battery) and the :BATT:SIM node that holds each.
_PARAMS = {"soc": ("SOC", "{:.2f}"), "voc": ("VOC", "{:.4f}"),
           "voltage_full": ("VOC:FULL", "{:.4f}"), "voltage_empty": ("VOC:EMPT", "{:.4f}"),
           "capacity": ("CAP:LIM", "{:.4f}"), "current_limit": ("CURR:LIM", "{:.4f}"),
           "ovp": ("TVOL:PROT", "{:.4f}"), "ocp": ("CURR:PROT", "{:.4f}")}


class Keithley2281SSupply(SupplyDriver):
    def set_voltage(self, volts: float) -> None:
        self._set(f":SOUR:VOLT {volts:.4f}")

    def set_current(self, amps: float) -> None:
        self._set(f":SOUR:CURR {amps:.4f}")

    def set_output(self, on: bool) -> None:
        if on:  # the 2281S sources in one role at a time
            self.set_mode()
        self._set(f":OUTP {'ON' if on else 'OFF'}")

    def set_mode(self) -> None:
        self._set(":ENTR:FUNC POW")

    def setpoints(self) -> tuple[float, float]:
        return self._f(":SOUR:VOLT?"), self._f(":SOUR:CURR?")

    def ratings(self) -> tuple[float, float]:
        """20 V / 6 A, as the model's name (2281S-20-6) and the real lager's docs say:
        `:SOUR:CURR? MAX` answers 6.1 A, the setting range beyond the rating."""
        return min(self._f(":SOUR:VOLT? MAX"), RATED[0]), min(self._f(":SOUR:CURR? MAX"), RATED[1])

    def state(self) -> SupplyState:
        # :MEAS:CONC? measures both at once and answers "amps,volts".
        amps, volts = (float(x) for x in self._q(":MEAS:CONC?").split(",")[:2])
        set_v, set_a = self.setpoints()
        trip = self._q(":OUTP:PROT:TRIP?")
        return SupplyState(enabled=self._q(":OUTP?") == "1", set_voltage=set_v,
                           set_current=set_a, voltage=volts, current=amps, power=volts * amps,
                           mode=self.mode(), channel="CH1", ovp_limit=self.get_ovp_limit(),
                           ocp_limit=self.get_ocp_limit(), ovp_tripped=trip == "OVP",
                           ocp_tripped=trip == "OCP")
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


class Keithley2281SBattery(BatteryDriver):
    def enter_battery_mode(self) -> None:
        self._set(":ENTR:FUNC SIM")

    def set_soc(self, percent: float) -> None:
        self.set_param("soc", percent)

    def set_output(self, on: bool) -> None:
        if on:
            self.enter_battery_mode()
        self._set(f":BATT:OUTP {'ON' if on else 'OFF'}")

    def state(self) -> BatteryState:
        trip = self._q(":BATT:OUTP:PROT:TRIP?")
        return BatteryState(enabled=self._q(":BATT:OUTP?") == "1",
                            soc=self._f(":BATT:SIM:SOC?"),
                            voltage=self._f(":BATT:SIM:TVOL?"),
                            current=self._f(":BATT:SIM:CURR?"),
                            open_circuit_voltage=self._f(":BATT:SIM:VOC?"),
                            mode=self.get_mode(), model=self.get_model(),
                            voltage_full=self.get_param("voltage_full"),
                            voltage_empty=self.get_param("voltage_empty"),
                            capacity=self.get_param("capacity"),
                            current_limit=self.get_param("current_limit"),
                            ovp=self.get_param("ovp"), ocp=self.get_param("ocp"),
                            esr=self.esr(), ovp_tripped=trip == "OVP", ocp_tripped=trip == "OCP")

    def set_param(self, name: str, value: float) -> None:
        node, fmt = _PARAMS[name]
        self._set(f":BATT:SIM:{node} {fmt.format(value)}")

    def get_param(self, name: str) -> float:
        return self._f(f":BATT:SIM:{_PARAMS[name][0]}?")

    def models(self) -> list[str]:
        """Slots 1-9 that hold a model (:BATT:MOD<n>:VOC:STEP? answers its length, manual
        7-30, read-only), then the firmware's built-in models."""
        stored = [str(n) for n in range(1, 10) if self._f(f":BATT:MOD{n}:VOC:STEP?") > 0]
        return stored + list(BUILTIN_MODELS)

    # The battery simulator's parameters (the real lager's battery methods use these).

    def set_mode(self, dynamic: bool) -> None:
        self._set(f":BATT:SIM:METH {'DYN' if dynamic else 'STAT'}")

    def get_mode(self) -> str:
        """'dynamic' or 'static'."""
        return "dynamic" if self._q(":BATT:SIM:METH?") == "DYN" else "static"

    # Named setters and getters over set_param/get_param, for code that calls them by name.

    def set_voc(self, volts: float) -> None:
        self.set_param("voc", volts)

    def get_voc(self) -> float:
        return self.get_param("voc")

    def set_capacity(self, amp_hours: float) -> None:
        self.set_param("capacity", amp_hours)

    def get_capacity(self) -> float:
        return self.get_param("capacity")

    def set_current_limit(self, amps: float) -> None:
        self.set_param("current_limit", amps)

    def get_current_limit(self) -> float:
        return self.get_param("current_limit")

    def set_model(self, model: str) -> None:
        """A memory slot (1-9), a built-in model name such as LI-ION4_2, or 'discharge' (the
        discharge mode, slot 0 on the simulated 2281S)."""
        self._set(f":BATT:MOD:RCL {'0' if model == DISCHARGE else model}")

    def get_model(self) -> str:
        model = self._q(":BATT:MOD:RCL?")
        return DISCHARGE if model == "0" else model

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
