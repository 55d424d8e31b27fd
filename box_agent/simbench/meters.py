"""Keithley DAQ6510 (with a scan card) and Keysight 34461A: meters that read their wiring."""
from __future__ import annotations

import functools
import time

from .instrument import Instrument, Sfx, action, answer
from .physics import OVERFLOW, noisy
from .scpi import Handler, Limits, Params, ScpiError, mnemonic_forms

_KINDS = (("VOLTage", "VOLT"), ("CURRent", "CURR"), ("RESistance", "RES"),
          ("FRESistance", "FRES"))


def function_name(text: str) -> str:
    """`"voltage"`, `VOLT:DC` or `volt` -> `VOLT:DC` (the DMM6500/DAQ6510 reply form)."""
    parts = [p for p in text.strip("\"'").upper().split(":") if p]
    if not parts or len(parts) > 2:
        raise ScpiError(-224, f"{text} is not a measure function")
    for word, short in _KINDS:
        if parts[0] in mnemonic_forms(word):
            if short in ("RES", "FRES"):
                if len(parts) > 1:
                    raise ScpiError(-224, f"{text} is not a measure function")
                return short
            coupling = parts[1] if len(parts) > 1 else "DC"
            if coupling not in ("DC", "AC"):
                raise ScpiError(-224, f"{text} is not a measure function")
            return f"{short}:{coupling}"
    raise ScpiError(-224, f"{text} is not a measure function")


def reading(function: str, volts: float, wired: bool, span: float | None) -> float:
    """What a meter input shows for a DC node at `volts`, under `function`."""
    if function.startswith(("RES", "FRES")):
        return OVERFLOW  # nothing resistive is wired to the inputs: an open circuit
    if function.startswith("CURR") or function.endswith("AC") or not wired:
        value = noisy(0.0, 1e-9 if function.startswith("CURR") else 0.00002)
    else:
        value = noisy(volts, 0.00006)
    if span is not None and abs(value) > span * 1.2:
        return OVERFLOW
    return value


class KeithleyDAQ6510(Instrument):
    def on_reset(self) -> None:
        self.closed: list[int] = []
        self.buffer: list[tuple[float, float, int | None, str]] = []  # value, time, channel, f
        self.clock = time.monotonic()

    def _channels(self, p: Params, i: int) -> list[int]:
        channels = p.channels(i)
        for ch in channels:
            if ch not in self.spec.channels:
                raise ScpiError(-224, f"channel {ch} does not exist")
        return channels

    def _read(self, function: str, channel: int | None) -> float:
        terminal = f"{self.name}:{channel}" if channel else self.name
        short = function.split(":")[0].lower()
        span = None
        if short in ("volt", "curr", "res") and not self.get(f"{short}_auto"):
            span = float(self.get(f"{short}_range"))
        value = reading(function, self.bench.input_volts(terminal), self.bench.wired(terminal),
                        span)
        self.buffer.append((value, time.monotonic() - self.clock, channel, function))
        del self.buffer[:-100000]
        return value

    def _format(self, value: float) -> str:
        return self.spec.prop("level", self.spec.channels[0]).reply.format(value)

    def _elements(self, row: tuple[float, float, int | None, str], elements: list[str]) -> str:
        value, rel, channel, function = row
        words = {"READING": self._format(value), "RELATIVE": f"{rel:.9f}",
                 "CHANNEL": str(channel or ""), "UNIT": _UNITS[function]}
        return ",".join(words[e] for e in elements)

    def register(self) -> None:
        self.add("[SENSe#]:FUNCtion[:ON]", set=self._function_set, query=self._function_get)
        for word, short in _KINDS[:3]:
            key = short.lower()
            dc = "[:DC]" if short != "RES" else ""
            self.add_prop(f"[SENSe#]:{word}{dc}:NPLCycles", f"{key}_nplc",
                          where=self._skip_list)
            self.add_prop(f"[SENSe#]:{word}{dc}:RANGe[:UPPer]", f"{key}_range",
                          {"volt": "V", "curr": "A", "res": "OHM"}[key], where=self._skip_list,
                          on_set=functools.partial(self._manual, key))
            self.add_bool(f"[SENSe#]:{word}{dc}:RANGe:AUTO", f"{key}_auto", self._skip_list)
        self.add("[SENSe#]:FRESistance:OCOMpensated", set=self._ocom_set,
                 query=answer(lambda: self.reply("fres_ocom")))
        self.add("ROUTe:CLOSe", set=self._close, query=self._closed)
        self.add("ROUTe:OPEN", set=self._open)
        self.add("ROUTe:OPEN:ALL", set=self._open_all)
        self.add("READ", query=self._read_query)
        self.add("FETCh", query=self._fetch)
        self.add("INITiate[:IMMediate]", set=self._initiate)
        self.add("ABORt", set=action())
        self.add("MEASure", query=self._measure(None))
        for word, short in _KINDS:
            dc = "[:DC]" if short in ("VOLT", "CURR") else ""
            self.add(f"MEASure:{word}{dc}", query=self._measure(f"{short}:DC" if dc else short))
            if dc:
                self.add(f"MEASure:{word}:AC", query=self._measure(f"{short}:AC"))
        self.add("TRACe:CLEar", set=self._trace_clear)
        self.add("TRACe:ACTual", query=answer(lambda: str(len(self.buffer))))
        self.add("SYSTem:BEEPer[:IMMediate]", set=self._beep)

    def _manual(self, key: str, _channel: int | None) -> None:
        """Setting a range turns autoranging off."""
        self.put(f"{key}_auto", 0)

    def _skip_list(self, p: Params, _s: Sfx) -> tuple[int | None, int]:
        """A trailing channel list applies the setting to those channels (all the same here)."""
        if len(p) >= 1 and p.tokens[-1].startswith("("):
            self._channels(p, len(p) - 1)
            p.tokens = p.tokens[:-1]
        return None, 0

    def _function_set(self, p: Params, sfx: Sfx) -> None:
        self._skip_list(p, sfx)
        p.expect(1)
        self.put("function", function_name(p.string(0)))

    def _function_get(self, p: Params, sfx: Sfx) -> str:
        self._skip_list(p, sfx)
        p.expect(0)
        return self.reply("function")

    def _ocom_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        self.put("fres_ocom", p.choice(0, ("OFF", "ON", "AUTO")))

    def _close(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        # A DMM card closes one measurement channel at a time; closing another opens the first.
        self.closed = self._channels(p, 0)[-1:]

    def _closed(self, p: Params, _s: Sfx) -> str:
        p.expect(0)
        return "(@" + ",".join(map(str, self.closed)) + ")"

    def _open(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        opened = set(self._channels(p, 0))
        self.closed = [ch for ch in self.closed if ch not in opened]

    def _open_all(self, p: Params, _s: Sfx) -> None:
        p.expect(0)
        self.closed = []

    def _buffer_args(self, p: Params, first: int = 0) -> list[str]:
        """["bufferName"[, element...]]: which reading buffer, and what to answer of a reading
        (READing, RELative, CHANnel, UNIT are simulated; others are refused, not ignored)."""
        p.expect(first, first + 5)
        if p.has(first) and p.string(first).lower() not in ("defbuffer1", "defbuffer2"):
            raise ScpiError(-224, f"no reading buffer {p.string(first)!r}")
        elements = [p.choice(i, ("READing", "RELative", "CHANnel", "UNIT"))
                    for i in range(first + 1, len(p))]
        return elements or ["READING"]

    def _here(self) -> int | None:
        return self.closed[0] if self.closed else None

    def _read_query(self, p: Params, _s: Sfx) -> str:
        elements = self._buffer_args(p)
        self._read(self.get("function"), self._here())
        return self._elements(self.buffer[-1], elements)

    def _fetch(self, p: Params, _s: Sfx) -> str:
        elements = self._buffer_args(p)
        if not self.buffer:
            raise ScpiError(-230, "the reading buffer is empty")
        return self._elements(self.buffer[-1], elements)

    def _initiate(self, p: Params, _s: Sfx) -> None:
        p.expect(0)
        self._read(self.get("function"), self._here())

    def _trace_clear(self, p: Params, _s: Sfx) -> None:
        p.expect(0, 1)
        self.buffer.clear()

    def _beep(self, p: Params, _s: Sfx) -> None:
        p.expect(2)
        p.number(0, Limits(20, 8000, 1000, "HZ"))
        p.number(1, Limits(0.001, 100, 1, "S"))

    def _measure(self, function: str | None) -> Handler:
        def getter(p: Params, _s: Sfx) -> str:
            chosen = function or self.get("function")
            if p.has(0) and p.raw(0).startswith("("):  # a channel list: each one, in turn
                p.expect(1)
                channels = self._channels(p, 0)
                self.put("function", chosen)  # :MEAS:<function>? selects that function
                return ",".join(self._format(self._read(chosen, ch)) for ch in channels)
            elements = self._buffer_args(p)
            self.put("function", chosen)
            self._read(chosen, self._here())
            return self._elements(self.buffer[-1], elements)

        return getter


_UNITS = {"VOLT:DC": "Volt DC", "VOLT:AC": "Volt AC", "CURR:DC": "Amp DC",
          "CURR:AC": "Amp AC", "RES": "Ohm", "FRES": "Ohm 4W"}
_RANGES = {"VOLT": (0.1, 1.0, 10.0, 100.0, 1000.0), "CURR": (1e-4, 1e-3, 1e-2, 0.1, 1.0, 3.0),
           "RES": (100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)}


class Keysight34461A(Instrument):
    """34461A Truevolt DMM; one input, wired by the models file (to supply2 by default)."""

    def on_reset(self) -> None:
        self.memory: list[float] = []

    def _kind(self) -> str:
        return str(self.get("function")).split(":")[0].replace("FRES", "RES")

    def _take(self) -> float:
        span = None if self.get("auto") else float(self.get("range"))
        function = str(self.get("function"))
        coupling = function if ":" in function else f"{function}:DC"
        value = reading(coupling, self.bench.input_volts(self.name),
                        self.bench.wired(self.name), span)
        self.memory = [value]
        return value

    def _format(self, value: float) -> str:
        return self.reply("level", value=value)

    def _configure(self, function: str, p: Params) -> None:
        """CONF/MEAS parameters: [range|AUTO|MIN|MAX|DEF[, resolution|MIN|MAX|DEF]]."""
        p.expect(0, 2)
        ranges = _RANGES[function.split(":")[0].replace("FRES", "RES")]
        auto, span = 1, ranges[-1]
        if p.has(0) and p.raw(0).upper() not in ("AUTO", "DEF", "DEFAULT"):
            wanted = p.number(0, Limits(ranges[0], ranges[-1], ranges[-1], "V"
                                        if function.startswith("VOLT") else ""))
            auto, span = 0, next(r for r in ranges if r >= wanted * 0.999999)
        if p.has(1) and p.raw(1).upper() not in ("MIN", "MINIMUM", "MAX", "MAXIMUM", "DEF",
                                                 "DEFAULT"):
            p.number(1, Limits(0.0, 1.0e9, 0.0))
        self.put("function", function)
        self.values[("range", None)] = span
        self.put("auto", auto)
        self.memory = []

    def register(self) -> None:
        names = (("VOLTage[:DC]", "VOLT"), ("VOLTage:AC", "VOLT:AC"),
                 ("CURRent[:DC]", "CURR"), ("CURRent:AC", "CURR:AC"),
                 ("RESistance", "RES"), ("FRESistance", "FRES"))
        for node, function in names:
            self.add(f"MEASure:{node}", query=self._meas(function))
            self.add(f"CONFigure:{node}", set=self._conf(function))
        self.add("CONFigure", query=self._conf_query)
        self.add("READ", query=self._read)
        self.add("INITiate[:IMMediate]", set=self._init)
        self.add("FETCh", query=self._fetch)
        self.add("ABORt", set=action())
        self.add("[SENSe]:FUNCtion[:ON]", set=self._function_set,
                 query=answer(lambda: self.reply("function")))
        for node in ("VOLTage[:DC]", "CURRent[:DC]", "RESistance"):
            self.add_prop(f"[SENSe]:{node}:NPLCycles", "nplc")
            self.add_prop(f"[SENSe]:{node}:RANGe", "range",
                          on_set=lambda _c: self.put("auto", 0))
            self.add(f"[SENSe]:{node}:RANGe:AUTO", set=self._auto_set,
                     query=answer(lambda: self.reply("auto")))

    def _meas(self, function: str) -> Handler:
        def getter(p: Params, _s: Sfx) -> str:
            self._configure(function, p)
            return self._format(self._take())

        return getter

    def _conf(self, function: str) -> Handler:
        def setter(p: Params, _s: Sfx) -> None:
            self._configure(function, p)

        return setter

    def _conf_query(self, p: Params, _s: Sfx) -> str:
        p.expect(0)
        return f'"{self.get("function")} {self.get("range"):+.8E},{3e-6:+.8E}"'

    def _read(self, p: Params, _s: Sfx) -> str:
        p.expect(0)
        return self._format(self._take())

    def _init(self, p: Params, _s: Sfx) -> None:
        p.expect(0)
        self._take()

    def _fetch(self, p: Params, _s: Sfx) -> str:
        p.expect(0)
        if not self.memory:
            raise ScpiError(-230, "no reading: send INIT first")
        return self._format(self.memory[-1])

    def _function_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        name = function_name(p.string(0))
        self.put("function", name.replace(":DC", ""))

    def _auto_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        if p.raw(0).upper() == "ONCE":  # pick the range for the input now, then hold it
            ranges = _RANGES[self._kind()]
            level = abs(self.bench.input_volts(self.name)) if self._kind() == "VOLT" else 0.0
            self.values[("range", None)] = next((r for r in ranges if r >= level), ranges[-1])
            self.put("auto", 0)
            return
        self.put("auto", int(p.boolean(0)))
