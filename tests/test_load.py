"""load1: the simulated Rigol DL3021 electronic load, wired to supply1 (the 2281S's supply
terminals). Raw SCPI through pyvisa against the simulator, then the Net API in a script and
the `lager load` (`lager eload`) commands against a box of our own."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Client, laptop_on_a_new_box, write_script


@pytest.fixture(scope="module")
def sim() -> Iterator[dict[str, Any]]:
    import pyvisa

    proc = subprocess.Popen([sys.executable, "-m", "box_agent.simbench"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    ports = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
    rm = pyvisa.ResourceManager("@py")

    def open_(device: str) -> Any:
        return rm.open_resource(f"TCPIP0::127.0.0.1::{ports[device]}::SOCKET", timeout=2000,
                                read_termination="\n", write_termination="\n")

    load, supply = open_("rigol_dl3021"), open_("keithley_2281s")
    try:
        yield {"load": load, "supply": supply}
    finally:
        load.close()
        supply.close()
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)


def errors(res: Any) -> list[str]:
    found = []
    while (entry := res.query(":SYST:ERR?")) != '0,"No error"':
        found.append(entry)
    return found


def test_identity_defaults_and_forms(sim: dict[str, Any]) -> None:
    load = sim["load"]
    load.write("*RST;*CLS")
    assert load.query("*IDN?").startswith("RIGOL TECHNOLOGIES,DL3021,")
    assert load.query(":SOUR:FUNC?;:SOUR:INP:STAT?;:SOUR:CURR:LEV:IMM?") == "CC;0;0.0000"
    for command, mode in ((":SOURce:FUNCtion VOLTage", "CV"), ("sour:func res", "CR"),
                          (":FUNC POW", "CP"), ("FUNCTION CURRENT", "CC")):
        load.write(command)
        assert load.query(":SOUR:FUNC?") == mode, command
    assert load.query(":SOUR:CURR:LEV:IMM? MAX;:SOUR:POW? MAX;:SOUR:RES? MIN;:VOLT? MAX") == \
        "40.0000;200.0000;0.0300;150.0000"
    assert load.query(":SOUR:CURR 1.5;CURR?;:SOUR:FUNC?") == "1.5000;CC"  # relative header
    load.write(":INP ON")
    assert load.query(":INPut:STATe?") == "1"
    load.write(":SOURce:INPut:STATe OFF")
    assert load.query(":INP?") == "0" and errors(load) == []


def test_error_queue(sim: dict[str, Any]) -> None:
    load = sim["load"]
    load.write("*CLS")
    load.write(":SOUR:CURR 41")
    load.write(":SOUR:FUNC SIDEWAYS")
    load.write(":BOGus 1")
    load.write(":SOUR:RES 0.01")
    assert errors(load) == ['-222,"Data out of range; 41 not in 0 to 40"',
                            '-224,"Illegal parameter value; SIDEWAYS is not one of CURRent, '
                            'RESistance, VOLTage, POWer"',
                            '-113,"Undefined header"',
                            '-222,"Data out of range; 0.01 not in 0.03 to 15000"']
    load.write(":MEAS:BOGUS?")  # a refused query answers nothing, as the instrument does
    assert load.query("*OPC?") == "1" and load.query(":SYST:ERR:COUN?") == "1"
    assert load.query(":SYST:ERR?") == '-113,"Undefined header"'


def _done(inst: Any, command: str) -> None:
    """Send and wait until it has been carried out (`*OPC?`): the load and the supply are two
    connections, and a query on one may otherwise overtake a setting on the other."""
    assert inst.query(f"{command};*OPC?").strip().endswith("1")


def _measure(sim: dict[str, Any]) -> tuple[float, float, float]:
    """(load volts, load amps, supply amps)."""
    load, supply = sim["load"], sim["supply"]
    volts, amps = (float(x) for x in load.query(":MEAS:VOLT?;:MEAS:CURR?").split(";"))
    return volts, amps, float(supply.query(":MEAS:CURR?"))


@pytest.mark.parametrize("setup, volts, load_amps", [
    (":SOUR:FUNC CURR;:SOUR:CURR 0.2", 5.0, 0.2),
    (":SOUR:FUNC RES;:SOUR:RES 10", 5.0, 0.5),
    (":SOUR:FUNC POW;:SOUR:POW 2", 5.0, 0.4),
    (":SOUR:FUNC VOLT;:SOUR:VOLT 3", 3.0, 2.0 - 0.3),  # the supply goes CC at its 2 A
])
def test_modes_sink_from_the_wired_supply(sim: dict[str, Any], setup: str, volts: float,
                                          load_amps: float) -> None:
    load, supply = sim["load"], sim["supply"]
    _done(supply, "*RST;:ENTR:FUNC POW;:SOUR:VOLT 5;:SOUR:CURR 2;:OUTP ON")
    _done(load, f"*RST;{setup}")
    off = _measure(sim)
    assert off[1] == 0.0 and abs(off[0] - 5.0) < 0.01 and abs(off[2] - 0.5) < 0.01
    _done(load, ":INP ON")
    v, a, supplied = _measure(sim)
    assert abs(v - volts) < 0.01 and abs(a - load_amps) < 0.01
    assert abs(supplied - (a + v / 10)) < 0.01  # the 10 ohm load beside it
    assert abs(float(load.query(":MEAS:POW?")) - v * a) < 0.02
    _done(load, ":INP OFF")
    _done(supply, ":OUTP OFF")
    assert _measure(sim) == (0.0, 0.0, 0.0) and errors(load) == errors(supply) == []


def test_the_load_can_trip_the_supply(sim: dict[str, Any]) -> None:
    load, supply = sim["load"], sim["supply"]
    _done(supply, "*RST;:ENTR:FUNC POW;:SOUR:VOLT 5;:SOUR:CURR 2;:SOUR:CURR:PROT 1;:OUTP ON")
    _done(load, "*RST;:SOUR:FUNC CURR;:SOUR:CURR 1")
    assert supply.query(":OUTP:PROT:TRIP?") == "NONE"
    _done(load, ":INP ON")  # 0.5 A into the resistor and 1 A into the load: over 1 A
    assert supply.query(":OUTP:PROT:TRIP?;:OUTP?") == "OCP;0"
    assert _measure(sim) == (0.0, 0.0, 0.0)
    _done(load, ":INP OFF")
    _done(supply, ":OUTP:PROT:CLE")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with laptop_on_a_new_box(tmp_path_factory.mktemp("load")) as laptop:
        yield laptop


def test_net_api(box: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "load.py", """
import json
from lager import Net, NetType, LagerError

psu = Net.get('supply1', type=NetType.PowerSupply)
psu.set_voltage(5.0)
psu.set_current(2.0)
psu.enable()
eload = Net.get('load1', type=NetType.ELoad)
out = {"type": str(eload.type)}
eload.mode('CC')
eload.current(0.5)
eload.voltage(3.0)
eload.resistance(20.0)
eload.power(1.0)
out["set"] = [eload.mode(), eload.current(), eload.voltage(), eload.resistance(), eload.power()]
eload.enable()
out["cc"] = [round(eload.measured_voltage(), 2), round(eload.measured_current(), 3),
             round(eload.measured_power(), 2), round(psu.current(), 2)]
eload.mode('CW')                  # constant power, the real lager's word
out["cw"] = [eload.mode(), round(eload.measured_current(), 3)]
eload.mode('cr')
out["cr"] = [eload.mode(), round(eload.measured_current(), 3)]
state = eload.print_state()
out["state"] = [state.enabled, state.mode, state["resistance_set"]]
eload.disable()
psu.disable()
for bad in (lambda: eload.mode('XX'), lambda: eload.current(-1)):
    try:
        bad()
    except LagerError as e:
        out.setdefault("errors", []).append(str(e))
print(json.dumps(out))
""")
    result = box.run("python", str(script))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["Electronic Load State:", "  Mode: CR", "  Input: Enabled"]
    assert lines[6] == "  Resistance Setting: 20.000 ohm"
    out = json.loads(lines[-1])
    assert out["type"] == "NetType.ELoad"
    assert out["set"] == ["CC", 0.5, 3.0, 20.0, 1.0]
    assert out["cc"] == [5.0, 0.5, 2.5, 1.0]
    assert out["cw"] == ["CW", 0.2] and out["cr"] == ["CR", 0.25]
    assert out["state"] == [True, "CR", 20.0]
    assert out["errors"] == ["load1: mode 'XX' is not CC, CV, CR or CW/CP",
                             "load1: current -1 A is out of range (at least 0 A)"]


def test_cli(box: Client) -> None:
    def js(*args: str) -> dict[str, Any]:
        result = box.run(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    assert box.run("supply", "supply1", "voltage", "5", "--yes").returncode == 0
    assert box.run("supply", "supply1", "current", "2", "--yes").returncode == 0
    assert js("supply", "supply1", "enable", "--yes")["enabled"] is True
    state = js("load", "load1", "cc", "0.3")
    assert (state["mode"], state["current_set"], state["enabled"]) == ("CC", 0.3, False)
    assert box.run("load", "load1", "cc").stdout == "load1: CC 0.3 A\n"
    on = js("eload", "load1", "enable", "--yes")  # the real lager's command name
    assert on["enabled"] is True and abs(on["current"] - 0.3) < 0.001
    assert abs(js("supply", "supply1")["current"] - 0.8) < 0.01
    for verb, value, key, mode, unit in (("cv", "4", "voltage_set", "CV", "V"),
                                         ("cr", "25", "resistance_set", "CR", "ohm"),
                                         ("cp", "2.5", "power_set", "CP", "W")):
        got = js("load", "load1", verb, value)
        assert (got[key], got["mode"]) == (float(value), mode)
        assert box.run("load", "load1", verb).stdout == f"load1: {mode} {value} {unit}\n"
    assert abs(js("load", "load1")["current"] - 0.5) < 0.01  # 2.5 W at 5 V
    assert js("load", "load1", "mode", "cc")["mode"] == "CC"
    human = box.run("load", "load1", "state").stdout.splitlines()
    assert human[0].startswith("load1: on   CC 0.3 A  measured 5.0") and \
        human[1] == "Electronic Load State:"
    assert js("load", "load1", "disable")["enabled"] is False
    box.run("supply", "supply1", "disable", "--yes")
    for args, code, words in ((("load", "load1", "cc", "41"), 1,
                               "refused ':SOUR:CURR:LEV:IMM 41.0000': -222,\"Data out of range"),
                              (("load", "supply1"), 1, "supply1 is a PowerSupply net, not an ELoad"),
                              (("load", "load1", "mode", "XX"), 2, "mode 'XX' is not one of"),
                              (("load", "load1", "enable", "3"), 2, "enable takes no value")):
        result = box.run(*args)
        assert result.returncode == code and words in result.stderr, result
        assert len(result.stderr.splitlines()) == 1
    assert box.run("load").stdout.split()[:3] == ["load1", "ELoad", "dl3021"]
    assert "load1" in {r["name"] for r in json.loads(box.run("nets", "--json").stdout)}
