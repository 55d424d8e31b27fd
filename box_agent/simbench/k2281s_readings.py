"""The Keithley 2281S's measurements and reading buffer: `:MEAS`, `:READ?`, `:FETC?`, `:INIT`,
`:TRAC:CLE` and `:DATA:DATA?` (pymeasure's `buffer_data`), in the supply role and the battery
roles alike. Split from keithley_2281s.py, which keeps the sourcing and the battery model.
"""
from __future__ import annotations

from typing import Any

from .instrument import Instrument, Sfx
from .physics import BatteryModel, Clock, Output, noisy
from .scpi import Params, ScpiError


class Readings(Instrument):
    """What the readings need from the instrument (keithley_2281s.Keithley2281S has it)."""

    out: Output
    batt_amps: float
    buffer: list[tuple[float, ...]]
    clock: Clock
    t0: float

    def model(self) -> BatteryModel:
        raise NotImplementedError

    def _resistance(self, model: BatteryModel) -> float:
        raise NotImplementedError

    def _simulating(self) -> bool:
        raise NotImplementedError

    def _reading(self) -> tuple[float, float]:
        if self.get("function") == "POWER":
            out = self.out
            if out.mode == "OFF":
                return 0.0, 0.0
            return max(0.0, noisy(out.amps, 0.00002)), max(0.0, noisy(out.volts, 0.0002))
        volts = noisy(self.out.volts, 0.0002) if self._simulating() else 0.0
        return self.batt_amps, max(0.0, volts)

    def _record(self) -> tuple[float, float]:
        amps, volts = self._reading()
        rel = self.clock.last - self.t0
        if len(self.buffer) >= self.get("trace_points"):
            self.buffer.pop(0)
        model = self.model()
        self.buffer.append((amps, volts, rel, float(self.get("batt_soc")),
                            self._resistance(model)))
        return amps, volts

    def _measure(self, what: str) -> Any:
        def getter(p: Params, _s: Sfx) -> str:
            p.expect(0)
            amps, volts = self._record()
            if what == "volt":
                return self.reply("meas_volt", value=volts)
            if what == "curr":
                return self.reply("meas_curr", value=amps)
            return f"{self.reply('meas_curr', value=amps)},{self.reply('meas_volt', value=volts)}"

        return getter

    def _fetch(self, p: Params, _s: Sfx) -> str:
        p.expect(0)
        if not self.buffer:
            raise ScpiError(-230, "no reading in the buffer")
        amps, volts = self.buffer[-1][:2]
        return f"{self.reply('meas_curr', value=amps)},{self.reply('meas_volt', value=volts)}"

    def _initiate(self, p: Params, _s: Sfx) -> None:
        p.expect(0)
        self._record()

    def _clear_buffer(self, p: Params, _s: Sfx) -> None:
        p.expect(0)
        self.buffer.clear()

    def _data(self, *allowed: str) -> Any:
        columns = {"READ": 0, "CURR": 0, "SOUR": 1, "VOLT": 1, "REL": 2, "SOC": 3, "RES": 4}

        def getter(p: Params, _s: Sfx) -> str:
            p.expect(0, 1)
            wanted = [w.strip().upper() for w in p.string(0).split(",")] if p.has(0) \
                else list(allowed[:1])
            for word in wanted:
                if word not in allowed:
                    raise ScpiError(709, text="buffer elements not supported in this mode")
            if not self.buffer:
                return ""
            return ",".join(f"{row[columns[w]]:+.6E}" for row in self.buffer for w in wanted)

        return getter
