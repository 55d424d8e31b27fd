"""What pyvisa-sim cannot express: measured values that follow the set points.

Each rule answers one measurement query from the instrument's own state, read back through
its own SCPI getters, so the YAML stays the single description of what an instrument holds.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable

Ask = Callable[[str], str]
Rule = tuple[re.Pattern[str], Callable[[re.Match[str], Ask], str]]

SUPPLY_LOAD_OHMS = 10.0  # the simulated DUT a supply drives
BATTERY_LOAD_AMPS = 0.05


def _noise(scale: float) -> float:
    return random.uniform(-scale, scale)


def _supply_current(volts: float, limit: float) -> float:
    return min(limit, volts / SUPPLY_LOAD_OHMS)


def battery_voc(soc_pct: float) -> float:
    """A Li-ion open-circuit curve: 3.0 V empty to 4.2 V full."""
    return 3.0 + 1.2 * max(0.0, min(100.0, soc_pct)) / 100.0


def _k2281_volt(_m: re.Match[str], ask: Ask) -> str:
    on = ask(":OUTP?") == "1"
    return f"{(float(ask(':SOUR:VOLT?')) + _noise(0.0002)) if on else 0.0:.4f}"


def _k2281_curr(_m: re.Match[str], ask: Ask) -> str:
    if ask(":OUTP?") != "1":
        return "0.00000"
    return f"{_supply_current(float(ask(':SOUR:VOLT?')), float(ask(':SOUR:CURR?'))):.5f}"


def _k2281_tvol(_m: re.Match[str], ask: Ask) -> str:
    on = ask(":BATT:OUTP?") == "1"
    return f"{battery_voc(float(ask(':BATT:SIM:SOC?'))) if on else 0.0:.4f}"


def _k2281_bcurr(_m: re.Match[str], ask: Ask) -> str:
    return f"{BATTERY_LOAD_AMPS if ask(':BATT:OUTP?') == '1' else 0.0:.5f}"


def _dp821_volt(m: re.Match[str], ask: Ask) -> str:
    ch = m.group(1)
    on = ask(f":OUTP? CH{ch}") == "ON"
    return f"{(float(ask(f':SOUR{ch}:VOLT?')) + _noise(0.0005)) if on else 0.0:.3f}"


def _dp821_curr(m: re.Match[str], ask: Ask) -> str:
    ch = m.group(1)
    if ask(f":OUTP? CH{ch}") != "ON":
        return "0.0000"
    volts, limit = float(ask(f":SOUR{ch}:VOLT?")), float(ask(f":SOUR{ch}:CURR?"))
    return f"{_supply_current(volts, limit):.4f}"


def _near(m: re.Match[str], ask: Ask) -> str:
    """A DAQ/DMM input: the modelled level with the last digit of noise a real one shows."""
    return f"{float(ask(m.group(0))) + _noise(0.00006):+.6E}"


RULES: dict[str, list[Rule]] = {
    "keithley_2281s": [
        (re.compile(r"^:MEAS:VOLT\?$"), _k2281_volt),
        (re.compile(r"^:MEAS:CURR\?$"), _k2281_curr),
        (re.compile(r"^:BATT:SIM:VOC\?$"),
         lambda _m, ask: f"{battery_voc(float(ask(':BATT:SIM:SOC?'))):.4f}"),
        (re.compile(r"^:BATT:SIM:TVOL\?$"), _k2281_tvol),
        (re.compile(r"^:BATT:SIM:CURR\?$"), _k2281_bcurr),
    ],
    "rigol_dp821": [
        (re.compile(r"^:MEAS:VOLT\? CH([12])$"), _dp821_volt),
        (re.compile(r"^:MEAS:CURR\? CH([12])$"), _dp821_curr),
    ],
    "keithley_daq6510": [(re.compile(r"^MEAS:VOLT:DC\? \(@10[1-3]\)$"), _near)],
    "keysight_34461a": [(re.compile(r"^MEAS:VOLT:DC\?$"), _near)],
}
