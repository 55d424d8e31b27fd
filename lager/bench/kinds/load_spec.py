"""The load kind's declaration (`lager load|eload NET ...`): its modes, verbs, rendering and safe
settings. Import-light (see spec.py): the Net API and its drivers are in load.py, by name here."""
from __future__ import annotations

from .safe import ENABLED, SafeSetting, switch
from .spec import NUMBER, WORD, Kind, Verb

TYPE_CHECKING = False  # not typing's: see spec.py
if TYPE_CHECKING:
    from typing import Any

    from .load import ELoadNet

MODES = ("CC", "CV", "CR", "CP")
# The real lager calls constant power CW and accepts CP too; the instrument says CP.
SPELLINGS = {"CC": "CC", "CV": "CV", "CR": "CR", "CP": "CP", "CW": "CP"}
LEVELS = {"CC": ("current", "A"), "CV": ("voltage", "V"), "CR": ("resistance", "ohm"),
           "CP": ("power", "W")}


def block(s: dict[str, Any]) -> str:
    what, unit = LEVELS[s["mode"]]
    return "\n".join([
        "Electronic Load State:", f"  Mode: {s['mode']}",
        f"  Input: {'Enabled' if s['enabled'] else 'Disabled'}",
        f"  Measured Voltage: {s['voltage']:.3f} V", f"  Measured Current: {s['current']:.3f} A",
        f"  Measured Power: {s['power']:.3f} W",
        f"  {what.capitalize()} Setting: {s[what + '_set']:.3f} {unit}"])


def line(s: dict[str, Any]) -> str:
    what, unit = LEVELS[s["mode"]]
    return (f"{s['net']}: {'on ' if s['enabled'] else 'off'}  {s['mode']} "
            f"{s[what + '_set']:g} {unit}  measured {s['voltage']:.3f} V "
            f"{s['current']:.4f} A {s['power']:.3f} W")


def _setpoint(mode: str) -> Any:
    """`cc 0.5`: CC mode at 0.5 A, as the real `lager eload NET cc 0.5` does."""

    def run(net: ELoadNet, value: Any, _opts: dict[str, float]) -> None:
        if value is not None:
            # The level first: one the load refuses (`cr 0`) then leaves its mode as it was.
            # The DL3000 keeps a set point per mode, so setting another mode's is harmless.
            getattr(net, LEVELS[mode][0])(value)
            net.mode(mode)

    return run


def _mode(net: ELoadNet, value: Any, _opts: dict[str, float]) -> None:
    if value is not None:
        net.mode(value)


def _verb(spelling: str) -> Verb:
    """`cc`, `cv`, `cr`, `cp`, and `cw`: the real lager's name for CP."""
    mode = SPELLINGS[spelling]
    what, unit = LEVELS[mode]
    return Verb(spelling.lower(),
                f"read the {spelling} set point, or set {spelling} mode at VALUE ({unit})",
                _setpoint(mode), NUMBER, unit=unit,
                show=lambda s: f"{s['net']}: {spelling} {s[what + '_set']:g} {unit}")


KIND = Kind(
    name="load", aliases=("eload",), net_type="ELoad", summary="Electronic load net",
    net_api="lager.bench.kinds.load:ELoadNet", default_verb="state",
    verbs=(
        Verb("state", "show the load's mode, set points and measurements",
             show=lambda s: line(s) + "\n" + block(s)),
        *(_verb(spelling) for spelling in (*MODES, "CW")),
        Verb("mode", "read or set the mode: CC, CV, CR or CP (CW)", _mode, WORD,
             choices=("CC", "CV", "CR", "CP", "CW"),
             show=lambda s: f"{s['net']}: {s['mode']}"),
        Verb("enable", "turn the input on (start sinking)", lambda n, _v, _o: n.enable(),
             confirm="Enable Net?"),
        Verb("disable", "turn the input off", lambda n, _v, _o: n.disable()),
    ),
    drivers={"rigol_dl3021": "lager.bench.drivers.rigol_dl3021:RigolDL3021Load"},
    snapshot=lambda net: net.state().as_dict(),
    line=line,
    safe=(SafeSetting(ENABLED, switch("enable", "disable")),),  # the input stops sinking
)
