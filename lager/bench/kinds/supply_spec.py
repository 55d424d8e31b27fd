"""The supply kind's declaration (`lager supply NET ...`): its verbs, options, rendering and safe
settings. Import-light (see spec.py): the Net API and its drivers are in supply.py, by name here."""
from __future__ import annotations

from .safe import ENABLED, SafeSetting, switch
from .spec import NUMBER, Kind, Verb, call

TYPE_CHECKING = False  # not typing's: see spec.py
if TYPE_CHECKING:
    from typing import Any

    from .supply import PowerSupplyNet


def block(s: dict[str, Any], full: bool) -> str:
    """The real lager's state block (docs: reference/python/supply, state())."""
    lines = [f"Channel: {s['channel']}", f"Enabled: {'ON' if s['enabled'] else 'OFF'}",
             f"Mode: {s['mode']}", f"Voltage: {s['voltage']:.4f}",
             f"Current: {s['current']:.4f}", f"Power: {s['power']:.4f}"]
    if full:
        lines += [f"Voltage_Set: {s['set_voltage']:.4f}", f"Current_Set: {s['set_current']:.4f}"]
    lines += [f"OCP Limit: {s['ocp_limit']:.4f}",
              f"    OCP Tripped: {'YES' if s['ocp_tripped'] else 'NO'}",
              f"OVP Limit: {s['ovp_limit']:.4f}",
              f"    OVP Tripped: {'YES' if s['ovp_tripped'] else 'NO'}"]
    if full and s.get("voltage_max") is not None:
        lines += [f"Voltage_Max: {s['voltage_max']:.4f}", f"Current_Max: {s['current_max']:.4f}"]
    return "\n".join(lines)


def line(s: dict[str, Any]) -> str:
    trips = [w for w in ("OVP", "OCP") if s.get(f"{w.lower()}_tripped")]
    return (f"{s['net']}: {'on ' if s['enabled'] else 'off'}  set {s['set_voltage']:.3f} V "
            f"/ {s['set_current']:.3f} A  measured {s['voltage']:.3f} V {s['current']:.4f} A"
            + (f"  ({' and '.join(trips)} tripped)" if trips else ""))


def _voltage(net: PowerSupplyNet, value: Any, opts: dict[str, float]) -> None:
    if value is not None or opts:
        net.apply(voltage=value, ovp=opts.get("ovp"), ocp=opts.get("ocp"))


def _current(net: PowerSupplyNet, value: Any, opts: dict[str, float]) -> None:
    if value is not None or opts:
        net.apply(current=value, ovp=opts.get("ovp"), ocp=opts.get("ocp"))



KIND = Kind(
    name="supply", net_type="PowerSupply", summary="Power supply net",
    net_api="lager.bench.kinds.supply:PowerSupplyNet", default_verb="state",
    options={"ovp": "over-voltage protection, volts (must be >= the voltage)",
             "ocp": "over-current protection, amps"},
    verbs=(
        Verb("state", "show the state: measurements, set points, protection",
             show=lambda s: line(s) + "\n" + block(s, full=False)),
        Verb("voltage", "read the output voltage, or set it (V)", _voltage, NUMBER, unit="V",
             options=("ovp", "ocp"),
             show=lambda s: f"{s['net']}: {s['voltage']:.4f} V (set {s['set_voltage']:.4f} V)"),
        Verb("current", "read the output current, or set its limit (A)", _current, NUMBER,
             unit="A", options=("ovp", "ocp"),
             show=lambda s: f"{s['net']}: {s['current']:.4f} A (limit {s['set_current']:.4f} A)"),
        Verb("enable", "turn the output on", call("enable"), confirm="Enable Net?"),
        Verb("disable", "turn the output off", call("disable")),
        Verb("clear-ovp", "clear an over-voltage trip", call("clear_ovp")),
        Verb("clear-ocp", "clear an over-current trip", call("clear_ocp")),
        Verb("set", "put the instrument in its power supply role", call("set_mode")),
    ),
    drivers={"rigol_dp821": "lager.bench.drivers.rigol_dp821:RigolDP821Supply",
             "keithley_2281s": "lager.bench.drivers.keithley_2281s:Keithley2281SSupply"},
    snapshot=lambda net: net.read_state().as_dict(),
    line=line,
    safe=(SafeSetting(ENABLED, switch("enable", "disable")),
          SafeSetting("voltage", lambda net, volts: net.set_voltage(volts), "V"),
          SafeSetting("current", lambda net, amps: net.set_current(amps), "A")),
)
