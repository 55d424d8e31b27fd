"""The battery kind's declaration (`lager battery NET ...`): its verbs, rendering and safe
settings. Import-light (see spec.py): the Net API and its drivers are in battery.py, by name
here."""
from __future__ import annotations

from .safe import ENABLED, SafeSetting, switch
from .spec import NUMBER, WORD, Kind, Verb, call

TYPE_CHECKING = False  # not typing's: see spec.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .battery import BatteryNet


def block(s: dict[str, Any]) -> str:
    return "\n".join([
        f"Enabled: {'ON' if s['enabled'] else 'OFF'}", f"Mode: {s['mode']}",
        f"Model: {s['model']}", f"Terminal Voltage: {s['voltage']:.4f} V",
        f"Current: {s['current']:.4f} A", f"ESR: {s['esr']:.4f} ohm",
        f"SOC: {s['soc']:.1f} %", f"VOC: {s['open_circuit_voltage']:.4f} V",
        f"Voltage Range: {s['voltage_empty']:.4f} V - {s['voltage_full']:.4f} V",
        f"Capacity: {s['capacity']:.4f} Ah", f"Current Limit: {s['current_limit']:.4f} A",
        f"OCP Limit: {s['ocp']:.4f} A", f"    OCP Tripped: {'YES' if s['ocp_tripped'] else 'NO'}",
        f"OVP Limit: {s['ovp']:.4f} V", f"    OVP Tripped: {'YES' if s['ovp_tripped'] else 'NO'}"])


def line(s: dict[str, Any]) -> str:
    trips = [w for w in ("OVP", "OCP") if s.get(f"{w.lower()}_tripped")]
    return (f"{s['net']}: {'on ' if s['enabled'] else 'off'}  SOC {s['soc']:.1f} %  "
            f"{s['voltage']:.3f} V {s['current']:.4f} A  (open circuit "
            f"{s['open_circuit_voltage']:.3f} V)"
            + (f"  ({' and '.join(trips)} tripped)" if trips else ""))


def _get_or_set(method: str) -> Callable[[Any, Any, dict[str, float]], None]:
    def run(net: BatteryNet, value: Any, _opts: dict[str, float]) -> None:
        if value is not None:
            getattr(net, method)(value)

    return run


def _value(verb: str, method: str, key: str, fmt: str, unit: str = "",
           takes: str = NUMBER, help: str = "", choices: tuple[str, ...] = ()) -> Verb:
    return Verb(verb, help or f"read or set the {key.replace('_', ' ')} ({unit})",
                _get_or_set(method), takes, unit=unit, choices=choices,
                show=lambda s: f"{s['net']}: {verb} {fmt.format(s[key])}")



KIND = Kind(
    name="battery", net_type="Battery", summary="Battery simulator net",
    net_api="lager.bench.kinds.battery:BatteryNet", default_verb="state",
    verbs=(
        Verb("state", "show the simulator's state",
             show=lambda s: line(s) + "\n" + block(s)),
        _value("soc", "soc", "soc", "{:.1f} %", "%", help="read or set the state of charge (%)"),
        _value("voc", "voc", "open_circuit_voltage", "{:.4f} V", "V",
               help="read or set the open-circuit voltage (V)"),
        _value("mode", "mode", "mode", "{}", takes=WORD, choices=("static", "dynamic"),
               help="read or set the simulation mode: static or dynamic"),
        _value("model", "model", "model", "{}", takes=WORD,
               help="read or recall the battery model (slot 1-9, built-in, or 18650/nimh...)"),
        Verb("models", "list the models the instrument holds",
             lambda net, _v, _o: {"models": net._driver.models()},
             show=lambda s: "\n".join(s["models"])),
        _value("capacity", "capacity", "capacity", "{:.4f} Ah", "Ah"),
        _value("current-limit", "current_limit", "current_limit", "{:.4f} A", "A"),
        _value("batt-full", "voltage_full", "voltage_full", "{:.4f} V", "V",
               help="read or set the fully charged voltage (V)"),
        _value("batt-empty", "voltage_empty", "voltage_empty", "{:.4f} V", "V",
               help="read or set the fully discharged voltage (V)"),
        _value("ovp", "ovp", "ovp", "{:.4f} V", "V", help="read or set over-voltage protection"),
        _value("ocp", "ocp", "ocp", "{:.4f} A", "A", help="read or set over-current protection"),
        Verb("enable", "turn the simulator's output on", call("enable"),
             confirm="Enable Net?"),
        Verb("disable", "turn the simulator's output off", call("disable")),
        Verb("clear", "clear both protection trips", call("clear")),
        Verb("clear-ovp", "clear an over-voltage trip", call("clear_ovp")),
        Verb("clear-ocp", "clear an over-current trip", call("clear_ocp")),
        Verb("set", "put the instrument in its battery simulator role",
             call("set_mode_battery")),
    ),
    drivers={"keithley_2281s": "lager.bench.drivers.keithley_2281s:Keithley2281SBattery"},
    snapshot=lambda net: net.state().as_dict(),
    line=line,
    safe=(SafeSetting(ENABLED, switch("enable", "disable")),),
)
