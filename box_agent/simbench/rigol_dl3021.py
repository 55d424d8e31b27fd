"""Rigol DL3021 electronic load (DL3000 programming guide): 150 V, 40 A, 200 W, CC/CV/CR/CP.

Its input is wired (the models file's `wiring: inputs:`) to a source terminal. The load reads
that terminal's voltage, and while its input is on the source sees the current the load sinks
at that voltage (physics.Bench.sinks), so a supply feeding it shows the extra current, and
goes CC, or trips OCP, as it would on a real bench.
"""
from __future__ import annotations

from .instrument import Instrument, Sfx, answer
from .physics import noisy
from .scpi import Handler, Params, ScpiError

# :SOURce:FUNCtion word -> the mode :SOURce:FUNCtion? answers, and the property holding its
# set point.
FUNCTIONS = {"CURRENT": ("CC", "curr"), "VOLTAGE": ("CV", "volt"),
             "RESISTANCE": ("CR", "res"), "POWER": ("CP", "pow")}
MAX_AMPS = 40.0
MAX_WATTS = 200.0
# Below this the load cannot hold its current: it looks like a small resistance (the DL3021's
# minimum operating voltage), which also keeps the supply's solution continuous near 0 V.
R_MIN = 0.05
# CV mode sinks whatever pulls the input down to its set point; this is how stiffly.
R_CV = 0.001


class RigolDL3021(Instrument):
    def sink_current(self, volts: float) -> float:
        """What the load draws at `volts` on its input, in its mode (0 with the input off)."""
        if not self.get("input") or volts <= 0:
            return 0.0
        mode = self.get("function")
        if mode == "CC":
            amps = min(self.get("curr"), volts / R_MIN)
        elif mode == "CR":
            amps = volts / self.get("res")
        elif mode == "CV":
            amps = max(0.0, volts - self.get("volt")) / R_CV
        else:
            amps = min(self.get("pow") / volts, volts / R_MIN)
        return min(amps, MAX_AMPS, MAX_WATTS / volts)

    def settle(self) -> None:
        """A change here (input, mode, level) changes what the wired source delivers: settle
        the source now, so its very next reading shows it (a source settles after the
        messages it handles itself, which would be one message late)."""
        source = self.bench.wiring.inputs.get(self.name)
        instrument = self.bench.instruments.get(source.partition(":")[0]) \
            if isinstance(source, str) else None
        if instrument is not None:
            instrument.tick()
            instrument.settle()

    def _input_volts(self) -> float:
        return self.bench.input_volts(self.name)

    def register(self) -> None:
        self.add("[SOURce]:FUNCtion", set=self._function_set,
                 query=answer(lambda: str(self.get("function"))))
        self.add("[SOURce]:FUNCtion:MODE", set=self._fixed_mode, query=answer(lambda: "FIXED"))
        self.add_prop("[SOURce]:CURRent[:LEVel][:IMMediate]", "curr", "A")
        self.add_prop("[SOURce]:VOLTage[:LEVel][:IMMediate]", "volt", "V")
        self.add_prop("[SOURce]:RESistance[:LEVel][:IMMediate]", "res", "OHM")
        self.add_prop("[SOURce]:POWer[:LEVel][:IMMediate]", "pow", "W")
        self.add_bool("[SOURce]:INPut[:STATe]", "input")
        self.add("MEASure[:SCALar]:VOLTage[:DC]", query=self._measure("volt"))
        self.add("MEASure[:SCALar]:CURRent[:DC]", query=self._measure("curr"))
        self.add("MEASure[:SCALar]:POWer[:DC]", query=self._measure("pow"))
        self.add("MEASure[:SCALar]:RESistance[:DC]", query=self._measure("res"))

    def _function_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        self.put("function", FUNCTIONS[p.choice(0, ("CURRent", "RESistance", "VOLTage",
                                                     "POWer"))][0])

    def _fixed_mode(self, p: Params, _s: Sfx) -> None:
        """Only the fixed (static) operation is simulated; list, wave, battery are refused."""
        p.expect(1)
        word = p.choice(0, ("FIXed", "LIST", "WAVe", "BATTery", "OCP", "OPP"))
        if word != "FIXED":
            raise ScpiError(-221, f"{word} operation is not simulated")

    def _measure(self, what: str) -> Handler:
        def getter(p: Params, _s: Sfx) -> str:
            p.expect(0)
            volts = self._input_volts()
            amps = self.sink_current(volts)
            values = {"volt": max(0.0, noisy(volts, 0.0005)) if volts > 0 else 0.0,
                      "curr": max(0.0, noisy(amps, 0.00005)) if amps > 0 else 0.0}
            values["pow"] = values["volt"] * values["curr"]
            if what == "res":
                return self.reply("meas_res", value=volts / amps if amps > 0 else 9.9e37)
            return self.reply(f"meas_{what}", value=values[what])

        return getter

