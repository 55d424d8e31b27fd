"""Keithley 2281S-20-6: a 20 V / 6 A supply and a battery simulator on one pair of terminals.

`:ENTR:FUNC` picks the role (POWer, TEST or SIMulator); switching turns the output off. The
supply (POWER) is CV/CC into its wired load with OVP/OCP; the simulator follows a battery
model (Voc and resistance against SOC) and, in DYNamic mode, discharges with the current its
load draws. Protection trips turn the output off and latch until `:OUTP:PROT:CLE`.
"""
from __future__ import annotations

from typing import Any

from .instrument import Sfx, action, answer
from .k2281s_readings import Readings
from .physics import DISCHARGE, OFF, BatteryModel, Clock, Output, battery_model, drive, noisy
from .scpi import Limits, Params, ScpiError

FUNCTIONS = ("POWer", "TEST", "SIMulator")
BUILTIN = ("LI-ION4_2", "NIMH1_2", "NICD1_2", "LEAD-ACID12", "NIMH12")
# The front panel's discharge mode, which this simulated 2281S also recalls as slot 0 (real
# firmware has no SCPI form for it; physics.battery_model has its curve). Recalling it opens
# its Voc window to the whole output range.
DISCHARGE_WINDOW = (0.0, 20.0)
# QUES:INST:ISUM bits (2281S reference manual, appendix D)
CC, CV, OCP, OVP, OUTP = 1, 2, 4, 8, 64
# MEAS:INST:ISUM bit: a reading is available
READING_AVAILABLE = 64


class Keithley2281S(Readings):
    def on_reset(self) -> None:
        self.clock = Clock()
        self.trip = ""  # NONE, or what tripped (OVP/OCP) until cleared
        self.out: Output = OFF
        self.batt_amps = 0.0
        self.buffer: list[tuple[float, ...]] = []
        self.t0 = self.clock.last
        # A Voc set in static mode beyond the model's curve: the battery holds it (SOC pinned
        # at 100 or 0 %) until the next SOC, Voc, method or model change.
        self.held_voc: float | None = None
        self.voc_before = 0.0  # the Voc as a threshold change starts (see _window_moved)

    # ------------------------------------------------------------ battery model

    def model(self) -> BatteryModel:
        return battery_model(self.spec.extra.get("battery_models", {}), self.get("batt_model"),
                             (float(self.get("batt_voc_empty")), float(self.get("batt_voc_full"))))

    def _voc_now(self, model: BatteryModel) -> float:
        if self.held_voc is not None:
            return self.held_voc
        return model.voc_at(self.get("batt_soc"))

    def _release_voc(self, _ch: int | None = None) -> None:
        self.held_voc = None

    def _simulating(self) -> bool:
        return self.get("function") == "SIMULATOR" and self.get("batt_output") == 1

    def _battery_current(self, model: BatteryModel, soc: float) -> float:
        if not self._simulating():
            return 0.0
        if soc <= model.soc_at(self.get("batt_voc_empty")) + 1e-9:
            return 0.0  # discharging stops at the empty Voc
        load = self.bench.load(f"{self.name}:battery")
        limit = float(self.get("batt_curr_lim"))
        if "ohms" in load and load["ohms"] > 0:
            res = model.res_at(soc) + self.get("batt_res_offs")
            demand = self._voc_now(model) / (load["ohms"] + max(0.0, res))
        else:
            demand = load.get("amps", 0.0)
        return min(demand, limit)

    def _resistance(self, model: BatteryModel) -> float:
        return max(0.0, model.res_at(self.get("batt_soc")) + self.get("batt_res_offs"))

    def tick(self) -> None:
        elapsed = self.clock.step()
        if not self._simulating() or self.get("batt_method") != "DYN" or elapsed <= 0:
            return
        model = self.model()
        soc = float(self.get("batt_soc"))
        amps = self._battery_current(model, soc)
        drawn_pct = amps * elapsed / 3600.0 / float(self.get("batt_cap_lim")) * 100.0
        floor = model.soc_at(self.get("batt_voc_empty"))
        if soc > floor:
            self.values[("batt_soc", None)] = max(floor, soc - drawn_pct)

    def settle(self) -> None:
        if self.get("function") == "POWER":
            on = self.get("output") == 1
            out = drive(on, self.get("volt"), self.get("curr"), self.bench.load(self.name),
                        self.bench.sinks(self.name))
            if on and out.volts > self.get("ovp"):
                self._trip("OVP")
                out = OFF
            elif on and out.amps > self.get("ocp"):
                self._trip("OCP")
                out = OFF
            self.out, self.batt_amps = out, 0.0
            return
        model = self.model()
        amps = self._battery_current(model, self.get("batt_soc"))
        tvol = self._voc_now(model) - amps * self._resistance(model)
        if self._simulating() and tvol > self.get("batt_tvol_prot"):
            self._trip("OVP")
        elif self._simulating() and amps > self.get("batt_curr_prot"):
            self._trip("OCP")
        on = self._simulating()
        self.batt_amps = amps if on else 0.0
        self.out = Output(tvol, amps, "CV") if on else OFF

    def _trip(self, what: str) -> None:
        self.trip = what
        self.values[("output", None)] = 0
        self.values[("batt_output", None)] = 0

    def terminal_volts(self, sub: str | None) -> float:
        return self.out.volts

    def status_condition(self, register: str, index: int | None = None) -> int:
        if register == "QUES:INST:ISUM":
            mode = self.out.mode
            return (CC if mode == "CC" else 0) | (CV if mode == "CV" else 0) | \
                (OCP if self.trip == "OCP" else 0) | (OVP if self.trip == "OVP" else 0) | \
                (OUTP if mode != "OFF" else 0)
        if register == "MEAS:INST:ISUM":
            return READING_AVAILABLE if self.buffer else 0
        if register == "OPER:INST:ISUM":
            return 1024  # idle: every measurement here completes at once
        return 0

    # ------------------------------------------------------------ commands

    def register(self) -> None:
        src = "[SOURce#]"
        self.add_prop(f"{src}:VOLTage[:LEVel][:IMMediate][:AMPLitude]", "volt", "V",
                      guard=self._below_limit)
        self.add_prop(f"{src}:CURRent[:LEVel][:IMMediate][:AMPLitude]", "curr", "A")
        self.add_prop(f"{src}:VOLTage:LIMit[:LEVel]", "volt_lim", "V", on_set=self._clamp)
        self.add_prop(f"{src}:VOLTage:PROTection[:LEVel]", "ovp", "V")
        self.add_prop(f"{src}:CURRent:PROTection[:LEVel]", "ocp", "A")
        self.add("OUTPut#[:STATe]", set=self._output_set, query=self._flag("output"))
        self.add("OUTPut#:PROTection:TRIPped", query=self._trip_query)
        self.add("OUTPut#:PROTection:CLEar", set=self._trip_clear)
        self.add("ENTRance:FUNCtion", set=self._function_set, query=self._function_query)
        self.add("MEASure#[:SCALar]:VOLTage[:DC]", query=self._measure("volt"))
        self.add("MEASure#[:SCALar]:CURRent[:DC]", query=self._measure("curr"))
        self.add("MEASure#[:SCALar]:CONCurrent[:DC]", query=self._measure("conc"))
        self.add("READ#", query=self._measure("conc"))
        self.add("FETCh#", query=self._fetch)
        self.add_prop("SENSe#:CONCurrent:NPLCycles", "nplc")
        self.add("ABORt", set=action())
        self.add("INITiate[:IMMediate]", set=self._initiate)
        self.add_bool("INITiate:CONTinuous", "init_cont")
        self.add_prop("TRACe:POINts", "trace_points")
        self.add("TRACe:CLEar", set=self._clear_buffer)
        self.add("TRACe:ACTual", query=answer(lambda: str(len(self.buffer))))
        self.add("DATA:DATA", query=self._data("READ", "SOUR", "REL"))
        self.add("DISPlay:USER:TEXT[:DATA]", set=self._display)
        self.add("DISPlay:CLEar", set=action())
        self._register_battery()

    def _register_battery(self) -> None:
        b = "BATTery#:SIMulator"
        self.add("BATTery#:OUTPut[:STATe]", set=self._batt_output_set,
                 query=self._flag("batt_output"))
        self.add("BATTery#:OUTPut:PROTection:TRIPped", query=self._trip_query)
        self.add("BATTery#:OUTPut:PROTection:CLEar", set=self._trip_clear)
        self.add_prop(f"{b}:SOC", "batt_soc", on_set=self._release_voc)
        self.add(f"{b}:VOC", set=self._voc_set, query=self._voc_query)
        self.add_prop(f"{b}:VOC:FULL", "batt_voc_full", "V", guard=self._voc_full,
                      on_set=self._window_moved)
        self.add_prop(f"{b}:VOC:EMPTy", "batt_voc_empty", "V", guard=self._voc_empty,
                      on_set=self._window_moved)
        for node, name, unit in (("CAPacity:LIMit", "batt_cap_lim", ""),
                                 ("CURRent:LIMit", "batt_curr_lim", "A"),
                                 ("RESistance:OFFSet", "batt_res_offs", "OHM"),
                                 ("TVOLtage:PROTection[:LEVel]", "batt_tvol_prot", "V"),
                                 ("CURRent:PROTection[:LEVel]", "batt_curr_prot", "A")):
            self.add_prop(f"{b}:{node}", name, unit, guard=self._not_running)
        self.add(f"{b}:METHod", set=self._method_set, query=self._flag("batt_method"))
        self.add(f"{b}:TVOLtage", query=self._battery("tvol"))
        self.add(f"{b}:CURRent", query=self._battery("curr"))
        self.add(f"{b}:RESistance", query=self._battery("res"))
        self.add(f"{b}:CAPacity", query=self._battery("cap"))
        self.add("BATTery#:MODel:RCL", set=self._recall, query=self._flag("batt_model"))
        for element in ("VOC", "RESistance"):
            self.add(f"BATTery#:MODel#:{element}:STEPs", query=self._model_steps)
        self.add("BATTery#:DATA:DATA", query=self._data("VOLT", "CURR", "SOC", "RES", "REL"))
        self.add("BATTery#:TRACe:CLEar", set=self._clear_buffer)
        t = "BATTery#:TEST"
        self.add_prop(f"{t}[:SOURce]:VOLTage[:LEVel]", "test_volt", "V")
        self.add_prop(f"{t}:SENSe:AH:VFULl", "test_vfull", "V")
        self.add_prop(f"{t}:SENSe:AH:ILIMit", "test_ilim", "A")
        self.add_prop(f"{t}:CURRent:END", "test_iend", "A")

    # ------------------------------------------------------------ handlers

    def _display(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        if len(p.string(0)) > 32:
            raise ScpiError(-223, text="Too much data")

    def _flag(self, name: str) -> Any:
        def getter(p: Params, _s: Sfx) -> str:
            p.expect(0)
            return self.reply(name)

        return getter

    def _below_limit(self, _ch: int | None, volts: float) -> None:
        if volts > self.get("volt_lim"):
            raise ScpiError(-222, f"{volts:g} V is above :VOLT:LIM {self.get('volt_lim'):g} V")

    def _clamp(self, _ch: int | None) -> None:
        if self.get("volt") > self.get("volt_lim"):
            self.values[("volt", None)] = self.get("volt_lim")

    # The thresholds may lie beyond the model's curve (the manual bounds them only by the
    # command's range and by each other): charging or discharging then stops at the curve's end.
    def _voc_full(self, _ch: int | None, volts: float) -> None:
        self._not_running(None)
        self.voc_before = self._voc_now(self.model())
        if volts < self.get("batt_voc_empty"):
            raise ScpiError(703, text="Full Voc can't be less than empty Voc")

    def _voc_empty(self, _ch: int | None, volts: float) -> None:
        self._not_running(None)
        self.voc_before = self._voc_now(self.model())
        if volts > self.get("batt_voc_full"):
            raise ScpiError(703, text="Full Voc can't be less than empty Voc")

    def _window_moved(self, _ch: int | None) -> None:
        """In discharge mode the thresholds are the curve's ends: the battery keeps its Voc
        and its SOC moves to match (held, as a Voc set is, when it falls outside)."""
        if str(self.get("batt_model")) == DISCHARGE:
            self._hold(self.model(), self.voc_before)

    def _hold(self, model: BatteryModel, volts: float) -> None:
        low, high = model.voc[0], model.voc[-1]
        static = self.get("batt_method") == "STAT"
        self.held_voc = None if low <= volts <= high or not static else volts
        self.put("batt_soc", model.soc_at(volts))

    def _not_running(self, _ch: int | None, _value: float = 0.0) -> None:
        if self._simulating():
            raise ScpiError(704, text="Not permitted while battery model is running")

    def _output_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        on = p.boolean(0)
        if on and self.get("function") != "POWER":
            raise ScpiError(-221, "the power supply function is not selected (:ENTR:FUNC)")
        if on and self.trip:
            raise ScpiError(-221, f"{self.trip} tripped; clear it with :OUTP:PROT:CLE")
        if on and self.get("volt") > self.get("volt_lim"):
            raise ScpiError(-221, "voltage is above :VOLT:LIM")
        self.put("output", int(on))

    def _batt_output_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        on = p.boolean(0)
        if on and self.get("function") == "POWER":
            raise ScpiError(-221, "a battery function is not selected (:ENTR:FUNC)")
        if on and self.trip:
            raise ScpiError(-221, f"{self.trip} tripped; clear it with :BATT:OUTP:PROT:CLE")
        self.clock.step()  # discharge counts from now
        self.put("batt_output", int(on))

    def _only_channel_1(self, p: Params) -> None:
        """[CH1]: the 2281S has one channel, which a command may still name."""
        p.expect(0, 1)
        if p.has(0) and p.raw(0).upper() != "CH1":
            raise ScpiError(-224, f"{p.raw(0)} is not CH1")

    def _trip_query(self, p: Params, _s: Sfx) -> str:
        self._only_channel_1(p)
        return self.trip or "NONE"

    def _trip_clear(self, p: Params, _s: Sfx) -> None:
        self._only_channel_1(p)
        self.trip = ""

    def _function_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        function = p.choice(0, FUNCTIONS)
        if function != self.get("function"):
            # One pair of terminals: changing the role turns the output off, and the reading
            # buffer starts over with the new function's elements.
            self.values[("output", None)] = 0
            self.values[("batt_output", None)] = 0
            self.buffer.clear()
        self.put("function", function)

    def _function_query(self, p: Params, _s: Sfx) -> str:
        p.expect(0)
        return self.reply("function")

    def _method_set(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        self.clock.step()
        method = {"DYNAMIC": "DYN", "STATIC": "STAT"}[p.choice(0, ("DYNamic", "STATic"))]
        if method != self.get("batt_method"):
            self.held_voc = None
        self.put("batt_method", method)

    def _voc_set(self, p: Params, _s: Sfx) -> None:
        """Within the model's curve the SOC follows (manual 7-48). In static mode a Voc beyond
        the curve, up to the output's 20 V, is held as set; dynamic mode keeps to the curve,
        since the model drives the Voc as the battery discharges."""
        p.expect(1)
        model = self.model()
        low, high = model.voc[0], model.voc[-1]
        static = self.get("batt_method") == "STAT"
        self._hold(model, p.number(0, Limits(0.0 if static else low, DISCHARGE_WINDOW[1]
                                             if static else high, high, "V")))

    def _voc_query(self, p: Params, _s: Sfx) -> str:
        p.expect(0, 1)
        model = self.model()
        bound = {"MIN": model.voc[0], "MAX": model.voc[-1], "DEF": model.voc[-1]}
        if p.has(0):
            word = p.raw(0).upper()[:3]
            if word not in bound:
                raise ScpiError(-224)
            return self.reply("batt_voc", value=bound[word])
        return self.reply("batt_voc", value=self._voc_now(model))

    def _recall(self, p: Params, _s: Sfx) -> None:
        p.expect(1)
        token = p.raw(0).strip("\"'").upper()
        if token == DISCHARGE:  # the battery keeps its Voc; its SOC is read on the new curve
            self._not_running(None)
            volts = self._voc_now(self.model())
            self.put("batt_model", DISCHARGE)
            self.put("batt_voc_empty", DISCHARGE_WINDOW[0])
            self.put("batt_voc_full", DISCHARGE_WINDOW[1])
            self._hold(self.model(), volts)
            return
        if token.isdigit():
            if not 1 <= int(token) <= 9:
                raise ScpiError(-222, "model slots are 1 to 9")
            if int(token) not in self.spec.extra.get("battery_models", {}):
                raise ScpiError(706, text="Battery model is empty")
        elif token not in BUILTIN:
            raise ScpiError(-224, f"{token} is not a model slot or built-in model")
        self._not_running(None)
        self.held_voc = None
        self.put("batt_model", token)
        model = self.model()
        self.put("batt_voc_full", model.voc[-1])
        self.put("batt_voc_empty", model.voc[0])

    def suffixes_ok(self, pattern: str, suffixes: Sfx) -> bool:
        if "MODel#" in pattern:  # :BATT[1]:MOD<n>: n is a model memory, 1 to 9
            channel, slot = suffixes
            return channel in (None, 1) and slot is not None and 1 <= slot <= 9
        return super().suffixes_ok(pattern, suffixes)

    def _model_steps(self, p: Params, sfx: Sfx) -> str:
        """How many points the memory holds: a stored model is 101 (the instrument
        interpolates an 11-point curve to 101), an empty memory 0."""
        p.expect(0)
        return "101" if sfx[1] in self.spec.extra.get("battery_models", {}) else "0"

    def _battery(self, what: str) -> Any:
        def getter(p: Params, _s: Sfx) -> str:
            p.expect(0)
            model = self.model()
            soc = float(self.get("batt_soc"))
            if what == "tvol":
                volts = noisy(self.out.volts, 0.0002) if self._simulating() else 0.0
                return self.reply("batt_tvol", value=max(0.0, volts))
            if what == "curr":
                return self.reply("batt_curr", value=self.batt_amps)
            if what == "res":
                return self.reply("batt_res", value=self._resistance(model))
            return self.reply("batt_cap", value=soc / 100.0 * self.get("batt_cap_lim"))

        return getter
