"""Rigol DP821: two channels (CH1 60 V/1 A, CH2 8 V/10 A) on one VISA resource.

Commands are the DP800 programming guide's. Every setting is followed by a read of the error
queue, so a value the instrument refuses (CH2 above 8 V, say) is an error naming the net.
"""
from __future__ import annotations

from ..kinds.supply import SupplyDriver, SupplyState


class RigolDP821Supply(SupplyDriver):
    @property
    def ch(self) -> int:
        return self.channel or 1

    def set_voltage(self, volts: float) -> None:
        self._set(f":SOUR{self.ch}:VOLT {volts:.3f}")

    def set_current(self, amps: float) -> None:
        self._set(f":SOUR{self.ch}:CURR {amps:.4f}")

    def set_output(self, on: bool) -> None:
        self._set(f":OUTP CH{self.ch},{'ON' if on else 'OFF'}")

    def setpoints(self) -> tuple[float, float]:
        # :APPL? answers "CH1:60V/1A,5.000,1.0000" (older firmware "CH1,5.000,1.0000").
        applied = self._q(f":APPL? CH{self.ch}").split(",")
        return _number(applied[-2]), _number(applied[-1])

    def ratings(self) -> tuple[float, float]:
        return self._f(f":SOUR{self.ch}:VOLT? MAX"), self._f(f":SOUR{self.ch}:CURR? MAX")

    def state(self) -> SupplyState:
        ch = self.ch
        volts, amps = self.setpoints()
        measured = self._q(f":MEAS:ALL? CH{ch}").split(",")  # "volts,amps,watts"
        return SupplyState(enabled=self._q(f":OUTP? CH{ch}") == "ON",
                           set_voltage=volts, set_current=amps,
                           voltage=_number(measured[0]), current=_number(measured[1]),
                           power=_number(measured[2]), mode=self.mode(), channel=f"CH{ch}",
                           ovp_limit=self.get_ovp_limit(), ocp_limit=self.get_ocp_limit(),
                           ovp_tripped=self.is_ovp(), ocp_tripped=self.is_ocp())

    def voltage(self) -> float:
        return self._f(f":MEAS:VOLT? CH{self.ch}")

    def current(self) -> float:
        return self._f(f":MEAS:CURR? CH{self.ch}")

    def power(self) -> float:
        return self._f(f":MEAS:POWE? CH{self.ch}")

    def mode(self) -> str:
        """CV, CC or UR."""
        return self._q(f":OUTP:MODE? CH{self.ch}")

    def set_ovp(self, volts: float) -> None:
        self._set(f":OUTP:OVP:VAL CH{self.ch},{volts:.3f}")
        self._set(f":OUTP:OVP CH{self.ch},ON")

    def set_ocp(self, amps: float) -> None:
        self._set(f":OUTP:OCP:VAL CH{self.ch},{amps:.4f}")
        self._set(f":OUTP:OCP CH{self.ch},ON")

    def protection_switches(self) -> tuple[bool, bool]:
        return (self._q(f":OUTP:OVP? CH{self.ch}").strip().upper() in ("ON", "1"),
                self._q(f":OUTP:OCP? CH{self.ch}").strip().upper() in ("ON", "1"))

    def set_protection_switches(self, ovp: bool, ocp: bool) -> None:
        self._set(f":OUTP:OVP CH{self.ch},{'ON' if ovp else 'OFF'}")
        self._set(f":OUTP:OCP CH{self.ch},{'ON' if ocp else 'OFF'}")

    def get_ovp_limit(self) -> float:
        return self._f(f":OUTP:OVP:VAL? CH{self.ch}")

    def get_ocp_limit(self) -> float:
        return self._f(f":OUTP:OCP:VAL? CH{self.ch}")

    def is_ovp(self) -> bool:
        return self._q(f":OUTP:OVP:QUES? CH{self.ch}") == "YES"

    def is_ocp(self) -> bool:
        return self._q(f":OUTP:OCP:QUES? CH{self.ch}") == "YES"

    def clear_ovp(self) -> None:
        self._set(f":OUTP:OVP:CLEAR CH{self.ch}")

    def clear_ocp(self) -> None:
        self._set(f":OUTP:OCP:CLEAR CH{self.ch}")


def _number(text: str) -> float:
    from ...errors import InstrumentFault

    try:
        return float(text)
    except ValueError:
        raise InstrumentFault(f"garbled number {text[:40]!r} from the DP821") from None
