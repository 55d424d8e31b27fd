"""Rigol DL3021 electronic load (DL3000 programming guide): CC, CV, CR and CP modes.

Every setting is followed by a read of the error queue, so a value the load refuses (more than
40 A, say) is an error naming the net, the command and the instrument's words.
"""
from __future__ import annotations

from ..kinds.load import LoadDriver, LoadState

# Mode -> the :SOURce:FUNCtion word and the node holding that mode's set point.
_FUNCTION = {"CC": "CURR", "CV": "VOLT", "CR": "RES", "CP": "POW"}
# :SOUR:FUNC? answers CC, CV, CR or CP; accept the function words too.
_ANSWER = {"CURR": "CC", "CURRENT": "CC", "VOLT": "CV", "VOLTAGE": "CV", "RES": "CR",
           "RESISTANCE": "CR", "POW": "CP", "POWER": "CP", "CW": "CP"}


class RigolDL3021Load(LoadDriver):
    def set_mode(self, mode: str) -> None:
        self._set(f":SOUR:FUNC {_FUNCTION[mode]}")

    def get_mode(self) -> str:
        answer = self._q(":SOUR:FUNC?").strip().upper()
        return _ANSWER.get(answer, answer)

    def set_level(self, mode: str, value: float) -> None:
        self._set(f":SOUR:{_FUNCTION[mode]}:LEV:IMM {value:.4f}")

    def get_level(self, mode: str) -> float:
        return self._f(f":SOUR:{_FUNCTION[mode]}:LEV:IMM?")

    def set_input(self, on: bool) -> None:
        self._set(f":SOUR:INP:STAT {'ON' if on else 'OFF'}")

    def input_on(self) -> bool:
        return self._q(":SOUR:INP:STAT?").strip().upper() in ("1", "ON")

    def measured(self) -> tuple[float, float, float]:
        return self._f(":MEAS:VOLT?"), self._f(":MEAS:CURR?"), self._f(":MEAS:POW?")

    def state(self) -> LoadState:
        volts, amps, watts = self.measured()
        return LoadState(enabled=self.input_on(), mode=self.get_mode(),
                         current_set=self.get_level("CC"), voltage_set=self.get_level("CV"),
                         resistance_set=self.get_level("CR"), power_set=self.get_level("CP"),
                         voltage=volts, current=amps, power=watts)
