"""Rigol DP821 (DP800 programming guide): CH1 60 V / 1 A and CH2 8 V / 10 A."""
from __future__ import annotations

import re

from .instrument import Instrument, Sfx, Where, action
from .physics import OFF, Output, drive, noisy
from .scpi import Handler, Params, ScpiError

_CH = re.compile(r"CH(\d+)", re.IGNORECASE)
CHANNELS = (1, 2)


class RigolDP821(Instrument):
    suffix_max = len(CHANNELS)

    def on_reset(self) -> None:
        self.tripped: dict[int, set[str]] = {ch: set() for ch in CHANNELS}
        self.out: dict[int, Output] = {ch: OFF for ch in CHANNELS}

    # ------------------------------------------------------------ channels

    def _check(self, ch: int) -> int:
        if ch not in CHANNELS:
            raise ScpiError(-224, f"no channel CH{ch} on the DP821")
        return ch

    def _ch_param(self, p: Params, i: int = 0) -> int | None:
        """A leading `CH<n>` parameter, if there is one."""
        if p.has(i):
            match = _CH.fullmatch(p.raw(i))
            if match:
                return self._check(int(match.group(1)))
        return None

    def _source(self, p: Params, sfx: Sfx) -> tuple[int | None, int]:
        """[:SOURce<n>] picks the channel; without it, the selected one (:INST)."""
        if sfx and sfx[0] is not None:
            if sfx[0] not in CHANNELS:
                raise ScpiError(-114)
            return sfx[0], 0
        return int(self.get("selected")), 0

    def _leading(self, p: Params, sfx: Sfx) -> tuple[int | None, int]:
        """[CH<n>,] first; without it, the selected channel."""
        ch = self._ch_param(p)
        return (ch, 1) if ch is not None else (int(self.get("selected")), 0)

    # ------------------------------------------------------------ physics

    def settle(self) -> None:
        for ch in CHANNELS:
            on = self.get("output", ch) == "ON"
            terminal = f"{self.name}:{ch}"
            out = drive(on, self.get("volt", ch), self.get("curr", ch),
                        self.bench.load(terminal), self.bench.sinks(terminal))
            trips = set()
            if on and self.get("ovp_state", ch) == "ON" and out.volts > self.get("ovp", ch):
                trips.add("OVP")
            if on and self.get("ocp_state", ch) == "ON" and out.amps > self.get("ocp", ch):
                trips.add("OCP")
            if trips:  # the output turns off and the trip latches until cleared
                self.tripped[ch] |= trips
                self.values[("output", ch)] = "OFF"
                out = OFF
            self.out[ch] = out

    def terminal_volts(self, sub: str | None) -> float:
        return self.out[int(sub or 1)].volts

    def status_condition(self, register: str, index: int | None = None) -> int:
        if register != "QUES:INST:ISUM":
            return 0
        # DP800 ISUMmary<n>: bit 0 CC, bit 1 CV, bit 2 OVP, bit 3 OCP of channel n (without n,
        # the selected channel)
        ch = index if index in CHANNELS else int(self.get("selected"))
        mode = self.out[ch].mode
        return (1 if mode == "CC" else 0) | (2 if mode == "CV" else 0) | \
            (4 if "OVP" in self.tripped[ch] else 0) | (8 if "OCP" in self.tripped[ch] else 0)

    def _mode(self, ch: int) -> str:
        mode = self.out[ch].mode
        return "CV" if mode == "OFF" else mode

    def _measured(self, ch: int) -> tuple[float, float]:
        out = self.out[ch]
        if out.mode == "OFF":
            return 0.0, 0.0
        return max(0.0, noisy(out.volts, 0.0005)), max(0.0, noisy(out.amps, 0.00005))

    # ------------------------------------------------------------ commands

    def register(self) -> None:
        src = "[SOURce#]"
        self.add_prop(f"{src}:VOLTage[:LEVel][:IMMediate][:AMPLitude]", "volt", "V", self._source)
        self.add_prop(f"{src}:CURRent[:LEVel][:IMMediate][:AMPLitude]", "curr", "A", self._source)
        for kind, unit, word in (("ovp", "V", "VOLTage"), ("ocp", "A", "CURRent")):
            upper = kind.upper()
            self.add_prop(f"{src}:{word}:PROTection[:LEVel]", kind, unit, self._source)
            self.add_bool(f"{src}:{word}:PROTection:STATe", f"{kind}_state", self._source)
            self.add(f"{src}:{word}:PROTection:TRIPped",
                     query=self._trip_query(upper, self._source))
            self.add(f"{src}:{word}:PROTection:CLEar", set=self._trip_clear(upper, self._source))
            self.add_prop(f"OUTPut:{upper}:VALue", kind, unit, self._leading)
            self.add_bool(f"OUTPut:{upper}[:STATe]", f"{kind}_state", self._leading)
            self.add(f"OUTPut:{upper}:QUEStion", query=self._trip_query(upper, self._leading))
            self.add(f"OUTPut:{upper}:CLEar", set=self._trip_clear(upper, self._leading))
        setter, getter = self._output()
        self.add("OUTPut[:STATe]", setter, getter)
        self.add("OUTPut:MODE", query=self._out_mode)
        self.add("APPLy", set=self._apply_set, query=self._apply_query)
        self.add("INSTrument[:SELect]", set=self._inst_set, query=self._inst_query)
        self.add("INSTrument:SELEct", set=self._inst_set, query=self._inst_query)
        self.add("INSTrument:NSELect", set=self._nsel_set, query=self._nsel_query)
        self.add("MEASure[:VOLTage][:DC]", query=self._meas("volt"))
        self.add("MEASure:CURRent[:DC]", query=self._meas("curr"))
        self.add("MEASure:POWEr[:DC]", query=self._meas("power"))
        self.add("MEASure:ALL[:DC]", query=self._meas("all"))
        for word in ("REMote", "LOCal", "RWLock"):
            self.add(f"SYSTem:{word}", set=action())

    def _or_selected(self, ch: int | None) -> int:
        return ch if ch is not None else int(self.get("selected"))

    def _channel_of(self, p: Params) -> int:
        ch = self._ch_param(p)
        if p.has(0) and ch is None:
            raise ScpiError(-224, f"{p.raw(0)} is not CH1 or CH2")
        return ch if ch is not None else int(self.get("selected"))

    def _trip_query(self, kind: str, where: Where) -> Handler:
        def getter(p: Params, sfx: Sfx) -> str:
            ch, i = where(p, sfx)
            p.expect(i)
            return "YES" if kind in self.tripped[self._or_selected(ch)] else "NO"

        return getter

    def _trip_clear(self, kind: str, where: Where) -> Handler:
        def setter(p: Params, sfx: Sfx) -> None:
            ch, i = where(p, sfx)
            p.expect(i)
            self.tripped[self._or_selected(ch)].discard(kind)

        return setter

    def _output(self) -> tuple[Handler, Handler]:
        def setter(p: Params, _s: Sfx) -> None:
            ch, i = self._leading(p, _s)
            p.expect(i + 1)
            on = p.boolean(i)
            assert ch is not None
            if on and self.tripped[ch]:
                trip = "/".join(sorted(self.tripped[ch]))
                raise ScpiError(-221, f"{trip} tripped on CH{ch}; clear it first")
            self.put("output", "ON" if on else "OFF", ch)

        def getter(p: Params, _s: Sfx) -> str:
            p.expect(0, 1)
            return str(self.get("output", self._channel_of(p)))

        return setter, getter

    def _out_mode(self, p: Params, _s: Sfx) -> str:
        p.expect(0, 1)
        return self._mode(self._channel_of(p))

    def _apply_set(self, p: Params, _s: Sfx) -> None:
        ch = self._ch_param(p)
        i = 1 if ch is not None else 0
        if ch is None:
            ch = int(self.get("selected"))
        p.expect(i, i + 2)
        volts = p.number(i, self.spec.prop("volt", ch).limits("V")) if p.has(i) else None
        amps = p.number(i + 1, self.spec.prop("curr", ch).limits("A")) if p.has(i + 1) else None
        self.put("selected", ch)
        if volts is not None:
            self.put("volt", volts, ch)
        if amps is not None:
            self.put("curr", amps, ch)

    def _apply_query(self, p: Params, _s: Sfx) -> str:
        p.expect(0, 2)
        ch = self._channel_of(p)
        if p.has(1):
            what = p.choice(1, ("CURRent", "VOLTage"))
            return self.reply("volt" if what == "VOLTAGE" else "curr", ch)
        rating = self.spec.extra.get("ratings", {}).get(ch, "")
        return f"CH{ch}:{rating},{self.reply('volt', ch)},{self.reply('curr', ch)}"

    def _inst_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        ch = self._ch_param(p)
        if ch is None:
            raise ScpiError(-224, f"{p.raw(0)} is not CH1 or CH2")
        self.put("selected", ch)

    def _inst_query(self, p: Params, _s: Sfx) -> str:
        p.expect(0)
        return f"CH{self.get('selected')}"

    def _nsel_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        self.put("selected", self._check(p.integer(0)))

    def _nsel_query(self, p: Params, _s: Sfx) -> str:
        p.expect(0)
        return self.reply("selected")

    def _meas(self, what: str) -> Handler:
        def getter(p: Params, _s: Sfx) -> str:
            p.expect(0, 1)
            ch = self._channel_of(p)
            volts, amps = self._measured(ch)
            parts = {"volt": [self.reply("meas_volt", ch, volts)],
                     "curr": [self.reply("meas_curr", ch, amps)],
                     "power": [self.reply("meas_power", ch, volts * amps)]}
            if what == "all":
                return ",".join(parts["volt"] + parts["curr"] + parts["power"])
            return parts[what][0]

        return getter
