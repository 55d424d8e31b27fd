"""Compatibility tier: scripts and commands written for the real lager run here unchanged.

The scripts are the real lager's documented examples (docs.lagerdata.com, reference/python:
supply, battery, adc, net, eload and the overview) call for call: the same methods, in the same
order, with the same arguments, the same use of what they return and the same print lines.
Only the net names are this bench's (and the comments are ours). The commands are the documented spellings of `lager python`, `lager supply`,
`lager battery` and `lager boxes`. Real parts only: a box of our own, its simulated bench.
"""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    LAGER,
    Client,
    laptop_on_a_new_box,
    make_client,
    start_agent,
    start_run,
    wait_for,
    write_script,
)

NUMBER = r"-?\d+\.\d+"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A box of our own: the examples change instrument state other tests would see."""
    with laptop_on_a_new_box(tmp_path_factory.mktemp("compat")) as laptop:
        yield laptop


def run_script(client: Client, tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    return client.run("python", str(write_script(tmp_path, "example.py", body)), *args)


# --------------------------------------------------------------------------- the docs' examples

EXAMPLES: dict[str, tuple[str, list[str]]] = {
    "supply: basic power control": ("""\
from lager import Net, NetType

psu = Net.get('supply2', type=NetType.PowerSupply)   # the docs' 'VDD'

psu.set_voltage(3.3)
psu.set_current(0.5)
psu.enable()

print(f"Voltage: {psu.voltage():.2f}V")
print(f"Current: {psu.current():.3f}A")
print(f"Power: {psu.power():.3f}W")

psu.disable()
""", [r"Voltage: 3\.30V", r"Current: 0\.3(30|29)A", r"Power: 1\.0\d\dW"]),
    "supply: protection thresholds": ("""\
from lager import Net, NetType
import time

psu = Net.get('supply2', type=NetType.PowerSupply)
psu.set_voltage(5.0)
psu.set_current(0.5)
psu.set_ovp(5.5)
psu.set_ocp(0.6)
psu.enable()
print("Power enabled")

time.sleep(1)
if psu.is_ocp():
    print("OCP fault! Clearing...")
    psu.clear_ocp()
if psu.is_ovp():
    print("OVP fault! Clearing...")
    psu.clear_ovp()

psu.disable()
""", [r"Power enabled"]),
    "supply: full state inspection": ("""\
from lager import Net, NetType

psu = Net.get('supply2', type=NetType.PowerSupply)
psu.set_voltage(3.3)
psu.set_ovp(3.6)
psu.set_ocp(0.5)
psu.enable()

psu.get_full_state()

psu.disable()
""", [r"Channel: CH1", r"Enabled: ON", r"Mode: CV", r"Voltage: 3\.(30|29)\d\d", rf"Current: {NUMBER}",
      rf"Power: {NUMBER}", r"Voltage_Set: 3\.3000", rf"Current_Set: {NUMBER}",
      r"OCP Limit: 0\.5000", r"    OCP Tripped: NO", r"OVP Limit: 3\.6000",
      r"    OVP Tripped: NO", r"Voltage_Max: 60\.0000", r"Current_Max: 1\.0000"]),
    "battery: basic simulation": ("""\
from lager import Net, NetType

batt = Net.get('battery1', type=NetType.Battery)   # the docs' 'BATT'
batt.set_mode_battery()
batt.mode('static')
batt.model('discharge')
batt.voc(3.7)
batt.capacity(2.5)

batt.enable()
batt.print_state()
print(f"Terminal voltage: {batt.terminal_voltage()}V")
batt.disable()
""", [r"Enabled: ON", r"Mode: static", r"Model: discharge", r"Terminal Voltage: 3\.69\d\d V",
      r"Current: 0\.0500 A", r"ESR: 0\.1000 ohm", r"SOC: 18\.5 %", r"VOC: 3\.7000 V",
      r"Voltage Range: 0\.0000 V - 20\.0000 V", r"Capacity: 2\.5000 Ah",
      rf"Current Limit: {NUMBER} A", rf"OCP Limit: {NUMBER} A", r"    OCP Tripped: NO",
      rf"OVP Limit: {NUMBER} V", r"    OVP Tripped: NO", r"Terminal voltage: 3\.69\d*V"]),
    "battery: discharge by steps": ("""\
from lager import Net, NetType
import time

batt = Net.get('battery1', type=NetType.Battery)
batt.set_mode_battery()
batt.mode('static')
batt.model('discharge')
batt.voc(4.2)
batt.voltage_full(4.2)
batt.voltage_empty(3.0)
batt.capacity(3.0)
batt.soc(100)
batt.enable()

for soc_level in [100, 75, 50, 25, 10]:
    batt.soc(soc_level)
    time.sleep(0.5)
    v = batt.terminal_voltage()
    print(f"SOC: {soc_level}%, Terminal: {v:.2f}V")

batt.disable()
""", [r"SOC: 100%, Terminal: 4\.(19|20)V", r"SOC: 75%, Terminal: 3\.(89|90)V",
      r"SOC: 50%, Terminal: 3\.(59|60)V", r"SOC: 25%, Terminal: 3\.(29|30)V",
      r"SOC: 10%, Terminal: 3\.1[12]V"]),  # discharge mode: Voc falls evenly from 4.2 V to 3 V
    "battery: protection monitoring": ("""\
from lager import Net, NetType

batt = Net.get('battery1', type=NetType.Battery)
batt.set_mode_battery()
batt.model('discharge')
batt.voc(3.7)
batt.capacity(2.0)
batt.ovp(4.3)
batt.ocp(2.0)
batt.enable()

print(f"Voltage: {batt.terminal_voltage():.2f}V")
print(f"Current: {batt.current():.3f}A")

batt.clear_ovp()
batt.clear_ocp()
batt.disable()
""", [r"Voltage: 3\.(69|70)V", r"Current: 0\.050A"]),
    "adc: single reading": ("""\
from lager import Net, NetType

sensor = Net.get('adc1', type=NetType.ADC)   # the docs' 'TEMP_SENSOR'
voltage = sensor.input()
print(f"Sensor voltage: {voltage:.3f}V")
""", [r"Sensor voltage: -10\.60\dV"]),
    "adc: several sensors": ("""\
from lager import Net, NetType

sensors = {
    'TEMP': Net.get('adc1', type=NetType.ADC),
    'CURRENT': Net.get('adc2', type=NetType.ADC),
    'BATTERY': Net.get('adc4', type=NetType.ADC),
}
for name, sensor in sensors.items():
    voltage = sensor.input()
    print(f"{name}: {voltage:.3f}V")
""", [r"TEMP: -10\.60\dV", r"CURRENT: -10\.60\dV", rf"BATTERY: {NUMBER}V"]),
    "net: list and use nets": ("""\
from lager import Net, NetType

nets = Net.list_saved()
print("Available nets:")
for net in nets:
    print(f"  {net['name']}: {net['role']}")

psu = Net.get('supply2', type=NetType.PowerSupply)
psu.set_voltage(3.3)
psu.enable()
""", ["Available nets:", r"  supply1: power-supply", r"  battery1: battery",
      r"  supply2: power-supply", r"  supply3: power-supply", r"  adc1: adc", r"  adc2: adc",
      r"  adc3: adc", r"  adc4: adc", r"  load1: eload"]),
    "overview: list available nets": ("""\
from lager import Net

nets = Net.list_saved()
for net in nets:
    print(f"{net['name']}: {net['role']}")
""", [r"supply1: power-supply", r"battery1: battery", r"supply2: power-supply",
      r"supply3: power-supply", r"adc1: adc", r"adc2: adc", r"adc3: adc", r"adc4: adc",
      r"load1: eload"]),
    "overview: control a power supply": ("""\
from lager import Net, NetType

psu = Net.get('supply2', type=NetType.PowerSupply)
psu.set_voltage(3.3)
psu.set_current(0.5)
psu.enable()
print(f"Voltage: {psu.voltage()}V")
print(f"Current: {psu.current()}A")
psu.disable()
""", [r"Voltage: 3\.(3|29)\d*V", r"Current: 0\.3(3|29)\d*A"]),
    "overview: read an adc": ("""\
from lager import Net, NetType

adc = Net.get('adc1', type=NetType.ADC)   # the docs' 'SENSOR'
voltage = adc.input()
print(f"Voltage: {voltage}V")
""", [rf"Voltage: {NUMBER}V"]),
    "overview: error handling": ("""\
from lager import Net, NetType, InvalidNetError

try:
    net = Net.get('INVALID_NET', NetType.Analog)
except InvalidNetError as e:
    print(f"Net not found: {e}")
except Exception as e:
    print(f"Error: {e}")
""", [r"Net not found: this box has no Analog nets, so no 'INVALID_NET' \(it has PowerSupply, "
      r"Battery, ADC, ELoad nets\)"]),
    "eload: constant current": ("""\
from lager import Net, NetType

eload = Net.get('load1', type=NetType.ELoad)   # the docs' 'LOAD', wired to supply1
eload.mode('CC')
eload.current(0.5)
eload.enable()

print(f"Voltage: {eload.measured_voltage():.2f}V")
print(f"Current: {eload.measured_current():.3f}A")
print(f"Power: {eload.measured_power():.3f}W")

eload.disable()
""", [r"Voltage: 5\.00V", r"Current: 0\.(500|499)A", r"Power: 2\.(50|49)\dW"]),
    "eload: battery discharge test": ("""\
from lager import Net, NetType
import time

eload = Net.get('load1', type=NetType.ELoad)
eload.mode('CR')
eload.resistance(10.0)
eload.enable()

for i in range(30):
    v = eload.measured_voltage()
    i_curr = eload.measured_current()
    print(f"V={v:.2f}V, I={i_curr:.3f}A")

    if v < 3.0:
        print("Discharge cutoff reached")
        break

    time.sleep(1)

eload.disable()
""", [r"V=0\.00V, I=0\.000A", r"Discharge cutoff reached"]),
    "eload: power efficiency": ("""\
from lager import Net, NetType

psu = Net.get('supply1', type=NetType.PowerSupply)   # the docs' 'INPUT'
psu.voltage(12.0)
psu.current(2.0)
psu.enable()

eload = Net.get('load1', type=NetType.ELoad)        # the docs' 'OUTPUT'
eload.mode('CC')
eload.current(0.5)
eload.enable()

p_in = 12.0 * psu.measured_current()
p_out = eload.measured_power()
efficiency = (p_out / p_in) * 100 if p_in > 0 else 0
print(f"Input: {p_in:.2f}W")
print(f"Output: {p_out:.2f}W")
print(f"Efficiency: {efficiency:.1f}%")

eload.disable()
psu.disable()
""", [r"Input: 20\.\d\dW", r"Output: 6\.00W", r"Efficiency: 29\.\d%"]),
}

# The long ones (they sleep through ten samples) run side by side, on separate instruments.
LONG_EXAMPLES: dict[str, tuple[str, list[str]]] = {
    "supply: monitor power": ("""\
from lager import Net, NetType
import time

psu = Net.get('supply2', type=NetType.PowerSupply)
psu.set_voltage(3.3)
psu.set_current(1.0)
psu.enable()

for sample in range(10):
    v = psu.voltage()
    i = psu.current()
    p = psu.power()
    print(f"V={v:.2f}V, I={i:.3f}A, P={p:.3f}W")
    time.sleep(1)

psu.disable()
""", [r"V=3\.30V, I=0\.3(30|29)A, P=1\.0\d\dW"] * 10),
    "adc: continuous monitoring": ("""\
from lager import Net, NetType
import time

battery = Net.get('adc4', type=NetType.ADC)   # the docs' 'BATTERY_SENSE'
for i in range(10):
    voltage = battery.input()
    print(f"Battery: {voltage:.2f}V")
    time.sleep(1)
""", [r"Battery: -?\d+\.\d\dV"] * 10),
    "adc: data logging": ("""\
from lager import Net, NetType
import time
import csv

sensor = Net.get('adc2', type=NetType.ADC)   # the docs' 'CURRENT_SENSE'
with open('readings.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['time', 'voltage'])
    start = time.time()
    for i in range(100):
        elapsed = time.time() - start
        voltage = sensor.input()
        writer.writerow([elapsed, voltage])
        time.sleep(0.1)
print(open('readings.csv').read().count('-10.60'))   # ours: what it wrote
""", [r"100"]),
}


def _check(name: str, result: subprocess.CompletedProcess[str], expected: list[str]) -> None:
    assert result.returncode == 0, f"{name}:\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected), f"{name}: {lines}"
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), f"{name}: {line!r} is not {pattern!r}"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_doc_example_runs_unchanged(box: Client, tmp_path: Path, name: str) -> None:
    script, expected = EXAMPLES[name]
    if name.startswith("eload: constant") or name.startswith("eload: power"):
        # The load reads supply1: give it something to sink from (the discharge test
        # wants supply1 off, so the voltage is at once below its cut-off).
        assert box.run("supply", "supply1", "voltage", "5", "--yes").returncode == 0
        assert box.run("supply", "supply1", "current", "2", "--yes").returncode == 0
        assert box.run("supply", "supply1", "enable", "--yes").returncode == 0
    try:
        _check(name, run_script(box, tmp_path, script), expected)
    finally:
        box.run("supply", "supply1", "disable", "--yes")


@pytest.mark.parametrize("left_behind", ["NIMH1_2", "LEAD-ACID12"])
def test_battery_examples_do_not_depend_on_the_model_left_behind(
        box: Client, tmp_path: Path, left_behind: str) -> None:
    """'discharge' is a model of its own: whatever a colleague left recalled, the docs'
    battery examples run the same."""
    assert box.run("battery", "battery1", "disable", "--yes").returncode == 0
    recalled = box.run("battery", "battery1", "model", left_behind, "--json")
    assert json.loads(recalled.stdout)["model"] == left_behind, recalled.stderr
    for name in [n for n in EXAMPLES if n.startswith("battery: ")]:
        script, expected = EXAMPLES[name]
        _check(name, run_script(box, tmp_path, script), expected)
    read = box.run("battery", "battery1", "model")
    assert read.stdout == "battery1: model discharge\n", read


def test_long_doc_examples_run_unchanged_side_by_side(box: Client, tmp_path: Path) -> None:
    runs = {name: start_run(box, write_script(tmp_path / str(i), "example.py", script))
            for i, (name, (script, _)) in enumerate(LONG_EXAMPLES.items())}
    for name, run in runs.items():
        code = run.finish(timeout=60)
        _check(name, subprocess.CompletedProcess([], code, run.out.text, run.err.text),
               LONG_EXAMPLES[name][1])


@pytest.mark.parametrize("script, net_type", [
    ("button = Net.get('BUTTON', type=NetType.GPIO)\nstate = button.input()\n", "GPIO"),
    ("scope = Net.get('PROBE', type=NetType.Analog)\nscope.enable()\n", "Analog"),
    ("debug = Net.get('jlink1', type=NetType.Debug)\ndebug.connect()\n", "Debug"),
    ("usb = Net.get('SENSOR_USB', type=NetType.Usb)\nusb.enable()\n", "Usb"),
    ("vref = Net.get('VREF', type=NetType.DAC)\nvref.output(2.5)\n", "DAC"),
])
def test_examples_for_kinds_this_bench_lacks_fail_in_one_line(box: Client, tmp_path: Path,
                                                              script: str, net_type: str) -> None:
    """The docs' GPIO, scope, debug, USB and DAC examples import fine and fail at Net.get."""
    result = run_script(box, tmp_path, "from lager import Net, NetType\nprint('imported')\n"
                        + script)
    assert result.returncode == 1 and result.stdout == "imported\n"
    name = script.split("'")[1]
    assert result.stderr == (f"lager: this box has no {net_type} nets, so no {name!r} (it has "
                             "PowerSupply, Battery, ADC, ELoad nets)\n")


def test_uncaught_lager_errors_are_one_line_and_others_keep_their_traceback(
        box: Client, tmp_path: Path) -> None:
    led = run_script(box, tmp_path, "from lager import Net, NetType\n"
                     "Net.get('LED', NetType.GPIO)\n")
    assert (led.returncode, led.stdout) == (1, "")
    assert led.stderr == ("lager: this box has no GPIO nets, so no 'LED' (it has PowerSupply, "
                          "Battery, ADC, ELoad nets)\n")
    refused = run_script(box, tmp_path, "from lager import Net, NetType\n"
                         "Net.get('supply2', NetType.PowerSupply).set_voltage(99)\n")
    assert refused.returncode == 1
    assert refused.stderr == ("lager: supply2: dp821 refused ':SOUR1:VOLT 99.000': -222,\"Data "
                              "out of range; 99 not in 0 to 60\"\n"
                              "lager: safe state: supply2 off\n")  # #15, as the run failed
    other = run_script(box, tmp_path, "import lager\nraise KeyError('not ours')\n")
    assert other.returncode == 1 and other.stderr.startswith("Traceback (most recent call last)")
    assert other.stderr.endswith("KeyError: 'not ours'\n")
    hooked = run_script(box, tmp_path, "import sys\nimport lager\n"
                        "sys.excepthook = lambda *a: print('their hook', file=sys.stderr)\n"
                        "lager.Net.get('nope')\n")
    assert (hooked.returncode, hooked.stderr) == (1, "their hook\n")  # a script's own hook wins
    debug = box.run("--debug", "python", str(write_script(
        tmp_path, "debug.py", "from lager import Net\nNet.get('nope')\n")))
    assert debug.returncode == 1 and debug.stderr.startswith("Traceback (most recent call")
    assert debug.stderr.splitlines()[-1].startswith("lager.errors.UnknownNet: no net 'nope'")


# --------------------------------------------------------------------------- every method

def test_every_documented_power_supply_method(box: Client, tmp_path: Path) -> None:
    result = run_script(box, tmp_path, """
import json
from lager import Net, NetType, LagerError

psu = Net.get('supply2', type=NetType.PowerSupply)
out = {}
psu.set_current(1.0)
psu.set_voltage(2.0)
psu.set_ovp(2.5)                 # at least the 2.0 V set point
psu.set_ocp(0.4)
psu.enable()
out["read"] = [round(psu.voltage(), 2), round(psu.current(), 2), round(psu.power(), 2)]
out["types"] = [type(x).__name__ for x in (psu.voltage(), psu.current(), psu.power(),
                                           psu.is_ovp(), psu.is_ocp())]
out["limits"] = [psu.get_ovp_limit(), psu.get_ocp_limit()]
try:
    psu.set_ovp(1.5)             # below the set point: refused, as the docs say
except LagerError as e:
    out["low_ovp"] = str(e)
psu.set_voltage(3.0)             # above its OVP: the output trips off
out["ovp_trip"] = [psu.is_ovp(), psu.is_ocp(), round(psu.voltage(), 2)]
psu.clear_ovp()
psu.set_ovp(6.0)
psu.set_voltage(5.0)
psu.enable()                     # 0.5 A into 10 ohm, over the 0.4 A OCP
out["ocp_trip"] = [psu.is_ocp(), psu.is_ovp()]
psu.clear_ocp()
out["cleared"] = [psu.is_ocp(), psu.is_ovp()]
psu.set_voltage(1.0)
psu.enable()
s = psu.state()
f = psu.get_full_state()
out["state"] = [type(s).__name__, s.enabled, round(s['voltage'], 1), s.set_voltage,
                f.voltage_max, f['current_max'], s.voltage_max]
psu.voltage(2.0, ovp=2.2)        # the get-or-set spelling (docs: python CLI example)
out["set_form"] = [psu.get_ovp_limit(), round(psu.voltage(), 1)]
psu.disable()
print(json.dumps(out))
""")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Channel: CH1" and lines[10] == "Channel: CH1"  # state(), then full
    assert lines[9] == "    OVP Tripped: NO" and lines[-2] == "Current_Max: 1.0000"
    out = json.loads(lines[-1])
    assert out["read"] == [2.0, 0.2, 0.4] and out["limits"] == [2.5, 0.4]
    assert out["types"] == ["float", "float", "float", "bool", "bool"]
    assert out["low_ovp"] == ("supply2: OVP 1.5 V is below the voltage set point 2 V; OVP must "
                              "be >= the voltage set point")
    assert out["ovp_trip"] == [True, False, 0.0] and out["ocp_trip"] == [True, False]
    assert out["cleared"] == [False, False]
    assert out["state"] == ["SupplyState", True, 1.0, 1.0, 60.0, 1.0, None]
    assert out["set_form"] == [2.2, 2.0]


def test_every_documented_battery_method(box: Client, tmp_path: Path) -> None:
    result = run_script(box, tmp_path, """
import json
from lager import Net, NetType, LagerError

b = Net.get('battery1', type=NetType.Battery)
b.disable()
b.set_mode_battery()
b.model('18650')                 # the real lager's name for slot 1
b.mode('dynamic')
b.mode('static')
b.voltage_full(4.2)
b.voltage_empty(3.0)
b.capacity(2.5)
b.current_limit(1.5)
b.ovp(4.4)
b.ocp(2.0)
b.soc(80.4)                      # rounded to 80, as the docs say
got = [b.mode(), b.model(), b.soc()]
b.voc(3.9)
got += [b.voc(), b.voltage_full(), b.voltage_empty(), b.capacity(), b.current_limit(),
        b.ovp(), b.ocp()]
models = b.models()
b.model('discharge')             # always there: Voc falls evenly from full to empty
b.voltage_full(4.2)              # (its window starts as the whole 0-20 V)
b.voltage_empty(3.0)
b.enable()
reads = [type(x).__name__ for x in (b.terminal_voltage(), b.current(), b.esr())]
b.print_state()
b.set_soc(50)
kept = b.state()
b.clear_ovp()
b.clear_ocp()
b.disable()
errors = []
for call in (lambda: b.mode('sideways'), lambda: b.model('lead-acid')):
    try:
        call()
    except LagerError as e:
        errors.append(str(e))
print(json.dumps({"got": got, "models": models, "reads": reads, "soc": kept.soc,
                  "enabled": kept.enabled, "errors": errors}))
""")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:10] == ["static", "1", "80%", "3.9 V", "4.2 V", "3 V", "2.5 Ah", "1.5 A",
                          "4.4 V", "2 A"]  # the get-or-set methods print what they read
    assert lines[10:18] == ["1", "2", "3", "LI-ION4_2", "NIMH1_2", "NICD1_2", "LEAD-ACID12",
                            "NIMH12"]
    assert lines[18] == "Enabled: ON" and lines[32] == "    OVP Tripped: NO"
    out = json.loads(lines[-1])
    assert out["got"] == ["static", "1", 80.0, 3.9, 4.2, 3.0, 2.5, 1.5, 4.4, 2.0]
    assert out["reads"] == ["float"] * 3 and out["soc"] == 50.0 and out["enabled"] is True
    assert out["errors"][0] == "battery1: mode 'sideways' is not 'static' or 'dynamic'"
    assert out["errors"][1] == (
        "battery1: no model 'lead-acid' (slot 4); the instrument holds 1, 2, 3, LI-ION4_2, "
        "NIMH1_2, NICD1_2, LEAD-ACID12, NIMH12; 'discharge' is always available")


def test_net_api(box: Client, tmp_path: Path) -> None:
    result = run_script(box, tmp_path, """
import json
from lager import Net, NetType, InvalidNetError, LagerError, SetupFunctionRequiredError

calls = []
def setup(net, device):
    calls.append(["setup", net.name, type(device).__name__])
def teardown(net):
    calls.append(["teardown", net.name])

adc = Net.get('adc1', type=NetType.ADC, setup_function=setup, teardown_function=teardown)
info = [adc.name, str(adc.type), adc.channel, adc.type is NetType.ADC, type(adc.input()).__name__]
adc.close()
Net.get('adc4', NetType.ADC, teardown_function=lambda net: print("teardown at exit", net.name))
errors = []
for name, kind in (("nope", NetType.ADC), ("adc1", NetType.PowerSupply), ("LED", NetType.GPIO)):
    try:
        Net.get(name, type=kind)
    except InvalidNetError as e:
        errors.append([type(e).__name__, str(e)])
saved = {n["name"]: n for n in Net.list_saved()}
print(json.dumps({"info": info, "calls": calls, "errors": errors,
                  "supply3": saved["supply3"], "kinds": sorted({n["role"] for n in saved.values()}),
                  "subclass": issubclass(InvalidNetError, LagerError),
                  "members": [m.name for m in NetType]}))
""")
    assert result.returncode == 0, result.stderr
    first, last = result.stdout.splitlines()
    out = json.loads(first)
    assert last == "teardown at exit adc4"
    assert out["info"] == ["adc1", "NetType.ADC", 101, True, "float"]
    assert out["calls"] == [["setup", "adc1", "KeithleyDAQ6510Input"], ["teardown", "adc1"]]
    assert out["errors"][0][0] == "UnknownNet" and out["errors"][1] == [
        "WrongNetType", "adc1 is an ADC net, not a PowerSupply"]
    assert out["errors"][2][0] == "NoSuchNetType" and "no GPIO nets" in out["errors"][2][1]
    supply3 = out["supply3"]
    assert (supply3["role"], supply3["instrument"], supply3["channel"]) == (
        "power-supply", "rigol_dp821", 2) and supply3["address"].startswith("TCPIP0::")
    assert out["kinds"] == ["adc", "battery", "eload", "power-supply"]
    assert out["subclass"] is True
    assert {"Analog", "Logic", "GPIO", "UART", "Debug", "DAC", "ELoad", "PowerSupply2Q",
            "WattMeter", "Usb", "SPI", "I2C"} <= set(out["members"])


# --------------------------------------------------------------------------- the CLI's spellings

def _json(client: Client, *args: str) -> dict:  # type: ignore[type-arg]
    result = client.run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_supply_cli_spellings(box: Client) -> None:
    net = ("supply", "supply3")
    s = _json(box, *net, "voltage", "2.5", "--ovp", "3", "--ocp", "2", "--yes")
    assert (s["set_voltage"], s["ovp_limit"], s["ocp_limit"]) == (2.5, 3.0, 2.0)
    assert box.run(*net, "voltage").stdout == "supply3: 0.0000 V (set 2.5000 V)\n"  # a read
    assert box.run(*net, "current").stdout == "supply3: 0.0000 A (limit 10.0000 A)\n"
    assert _json(box, *net, "current", "1.5", "--ocp", "2")["set_current"] == 1.5
    on = _json(box, *net, "enable", "--yes")
    assert on["enabled"] is True and abs(on["voltage"] - 2.5) < 0.01
    tripped = _json(box, *net, "voltage", "3.5")  # above the 3 V OVP: trips off
    assert tripped["ovp_tripped"] is True and tripped["enabled"] is False
    assert "(OVP tripped)" in box.run(*net, "state").stdout.splitlines()[0]
    assert _json(box, *net, "clear-ovp")["ovp_tripped"] is False
    assert _json(box, *net, "voltage", "3", "--ovp", "4", "--ocp", "0.2")["ocp_limit"] == 0.2
    assert _json(box, *net, "enable", "--yes")["ocp_tripped"] is True  # 0.3 A > 0.2 A
    assert _json(box, *net, "clear-ocp")["ocp_tripped"] is False
    assert _json(box, *net, "set")["enabled"] is False
    state = box.run(*net, "state")
    assert state.stdout.splitlines()[1:3] == ["Channel: CH2", "Enabled: OFF"]
    assert _json(box, *net, "disable", "--yes")["enabled"] is False
    for args, code, words in (
            (("voltage", "3", "--ovp", "2"), 1, "OVP 2 V is below the voltage set point 3 V"),
            (("current", "2", "--ocp", "1"), 1, "OCP 1 A is below the current set point 2 A"),
            (("state", "3"), 2, "state takes no value"),
            (("enable", "--ovp", "3"), 2, "--ovp goes with voltage or current, not enable"),
            (("voltage", "abc"), 2, "voltage value 'abc' is not a number")):
        result = box.run(*net, *args)
        assert result.returncode == code and words in result.stderr, result
        assert len(result.stderr.splitlines()) == 1
    listing = box.run("supply").stdout.splitlines()
    assert [line.split()[0] for line in listing] == ["supply1", "supply2", "supply3"]


def test_battery_cli_spellings(box: Client) -> None:
    net = ("battery", "battery1")
    assert _json(box, *net, "disable", "--yes")["enabled"] is False
    assert _json(box, *net, "set")["enabled"] is False
    for verb, value, key, shown in (
            ("model", "18650", "model", "1"), ("mode", "static", "mode", "static"),
            ("soc", "70", "soc", 70.0), ("capacity", "2", "capacity", 2.0),
            ("current-limit", "1", "current_limit", 1.0), ("batt-full", "4.2", "voltage_full", 4.2),
            ("batt-empty", "3.1", "voltage_empty", 3.1), ("ovp", "4.5", "ovp", 4.5),
            ("ocp", "1.5", "ocp", 1.5), ("voc", "3.9", "open_circuit_voltage", 3.9)):
        assert _json(box, *net, verb, value)[key] == shown, verb
        read = box.run(*net, verb)
        assert read.returncode == 0 and read.stdout.startswith(f"battery1: {verb} "), read
    assert box.run(*net, "models").stdout.splitlines()[:4] == ["1", "2", "3", "LI-ION4_2"]
    assert box.run(*net, "mode", "sideways").returncode == 2
    assert _json(box, *net, "enable", "--yes")["enabled"] is True
    for verb in ("clear-ovp", "clear-ocp", "clear", "state"):
        assert _json(box, *net, verb)["enabled"] is True
    assert _json(box, *net, "disable")["enabled"] is False


def _on_a_terminal(client: Client, args: list[str], answer: bytes | None) -> tuple[int, str]:
    """Run lager with a terminal for stdin and stdout; type `answer` at its question."""
    master, slave = os.openpty()
    proc = subprocess.Popen([LAGER, *args, "--box", client.box], env=client.env, stdin=slave,
                            stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out, answered = b"", answer is None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
        if not answered and b"[y/N]" in out:
            os.write(master, answer or b"")
            answered = True
    os.close(master)
    return proc.wait(30), out.decode(errors="replace")


@pytest.mark.parametrize(("kind", "net", "switched_on"), [("supply", "supply2", "supply2: on"),
                                                          ("battery", "battery1", "battery1: on ")])
def test_enabling_asks_on_a_terminal_unless_yes(box: Client, kind: str, net: str,
                                                switched_on: str) -> None:
    assert _json(box, kind, net, "disable")["enabled"] is False
    code, text = _on_a_terminal(box, [kind, net, "enable"], b"n\n")
    assert code == 1 and "Enable Net? [y/N]" in text and "not confirmed" in text
    assert _json(box, kind, net)["enabled"] is False
    code, text = _on_a_terminal(box, [kind, net, "enable"], b"y\n")
    assert code == 0 and switched_on in text
    assert _json(box, kind, net, "disable")["enabled"] is False
    code, text = _on_a_terminal(box, [kind, net, "enable", "--yes"], None)
    assert code == 0 and "[y/N]" not in text and switched_on in text
    box.run(kind, net, "disable")


ARGV_SCRIPT = """\
import os, sys
print(sys.argv[1:], os.environ.get("COMPAT_PASSED"), os.environ.get("A"))
"""


def test_python_command_line(box: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "argv.py", ARGV_SCRIPT)
    ran = box.run("python", str(script), "-x", "--verbose", "--env", "A=1")
    assert ran.stdout == "['-x', '--verbose'] None 1\n"  # lager's options anywhere
    ran = box.run("python", "--box", box.box, "--env", "A=2", str(script), "--", "--env", "A=3",
                  "-d", "--box", "x", box=False)
    assert ran.stdout == "['--env', 'A=3', '-d', '--box', 'x'] None 2\n"  # after `--`: all its
    for before in (["-x"], ["--verbose"], ["-dx"], ["--cont", "1"]):
        refused = box.run("python", *before, str(script))
        assert refused.returncode == 2 and "No such option" in refused.stderr
        assert refused.stdout == ""  # the script never ran: it would have printed
    port = box.run("python", "-p", "8080", str(script))
    assert port.returncode == 2 and port.stdout == ""
    assert port.stderr == ("Error: -p/--port 8080: this box offers no port forwarding (lager runs "
                           "over SSH; forward with `ssh -L` to the box instead)\n")
    box.env["COMPAT_PASSED"] = "from the laptop"
    try:
        passed = box.run("python", "--passenv", "COMPAT_PASSED", str(script))
        assert passed.stdout == "[] from the laptop None\n"
    finally:
        del box.env["COMPAT_PASSED"]
    unset = box.run("python", "--passenv", "COMPAT_PASSED", str(script))
    assert (unset.returncode, unset.stdout) == (2, "")
    assert unset.stderr == "Error: --passenv COMPAT_PASSED: COMPAT_PASSED is not set in this shell\n"
    both = box.run("python", "--stop-on-disconnect", "-d", str(script))
    assert both.returncode == 2 and "contradict" in both.stderr
    detached = box.run("python", "-d", str(script))
    assert detached.returncode == 0 and "(detached)" in detached.stdout
    run_id = detached.stdout.split()[2]
    wait_for(lambda: any(r["id"] == run_id and r["state"] == "exited"
                         for r in json.loads(box.run("python", "--list", "--json").stdout)),
             what="the detached run to end")
    assert box.run("python", "--reattach", run_id).stdout == "[] None None\n"


def test_stop_on_disconnect_reaches_the_run_header(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The flag, and CI=true's default for it, as the header the box receives says them."""
    from client.cli import cli
    from client.commands.python import _stop_on_disconnect
    from client.run_client import RunRequest
    from client.upload import build_upload

    script = write_script(tmp_path, "t.py", "pass\n")

    def header(argv: list[str]) -> dict:  # type: ignore[type-arg]
        with cli.make_context("lager", ["python", *argv]) as ctx:
            name, cmd, rest = cli.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
            assert cmd is not None
            with cmd.make_context(name, rest, parent=ctx) as sub:
                flag = _stop_on_disconnect(sub, sub.params["stop_on_disconnect"],
                                           sub.params["detach"])
        request = RunRequest(build_upload(str(script), ()), [], {}, 0, False, flag)
        return json.loads(request.header("b"))  # type: ignore[no-any-return]

    monkeypatch.delenv("CI", raising=False)
    assert header([str(script)])["stop_on_disconnect"] is False
    assert header(["--stop-on-disconnect", str(script)])["stop_on_disconnect"] is True
    monkeypatch.setenv("CI", "true")
    assert header([str(script)])["stop_on_disconnect"] is True
    assert header(["--no-stop-on-disconnect", str(script)])["stop_on_disconnect"] is False
    assert header(["-d", str(script)])["stop_on_disconnect"] is False  # a detached run: never


def test_kill_all_stops_only_your_runs(tmp_path: Path) -> None:
    # Two keys' runs at once need a box without reservations (#19): with them, the box
    # refuses the second key's run while the first one's lives.
    agent = start_agent(tmp_path / "state", "--reservations", "off")
    try:
        box = make_client(tmp_path / "laptop", agent)
        other = make_client(tmp_path / "other-laptop", box.agent)
        sleeper = write_script(tmp_path, "sleeper.py", "import time\ntime.sleep(120)\n")
        mine = box.run("python", "-d", str(sleeper)).stdout.split()[2]
        theirs = other.run("python", "-d", str(sleeper)).stdout.split()[2]

        def state(run_id: str) -> str:
            rows = json.loads(box.run("python", "--list", "--json").stdout)
            return next(r["state"] for r in rows if r["id"] == run_id)

        code, text = _on_a_terminal(box, ["python", "--kill-all"], b"n\n")
        assert code == 1 and "Stop these 1 run(s)" in text and state(mine) == "running"
        killed = box.run("python", "--kill-all", "--yes")
        assert killed.returncode == 0 and killed.stdout.startswith(f"stopping run {mine[:4]}")
        assert "1 run of other keys left alone; --any-owner stops them too" in killed.stderr
        wait_for(lambda: state(mine) == "exited", what="my run to stop")
        assert state(theirs) == "running"
        assert box.run("python", "--kill-all").stdout.startswith("no runs of yours to stop")
        everyone = json.loads(box.run("python", "--kill-all", "--any-owner", "--yes",
                                      "--json").stdout)
        assert [r["id"] for r in everyone] == [theirs] and everyone[0]["ok"] is True
        wait_for(lambda: state(theirs) == "exited", what="their run to stop")
        rows = {r["id"]: r for r in json.loads(box.run("python", "--list", "--json").stdout)}
        assert rows[mine]["exit_code"] == rows[theirs]["exit_code"] == 130  # SIGINT, as --kill

    finally:
        agent.stop()

def test_boxes_add_and_delete_real_spellings(box: Client) -> None:
    added = box.run("boxes", "add", "--name", "again", "--ip", box.agent.host, "--port",
                    str(box.agent.port), "--user", "lab", box=False)
    assert added.returncode == 0, added.stderr
    known = {b["name"]: b for b in json.loads(box.run("boxes", "list", "--json",
                                                      box=False).stdout)}
    assert (known["again"]["host"], known["again"]["user"]) == (box.agent.host, "lab")
    assert box.run("boxes", "add", "x", "--name", "y", "--ip", "h", box=False).returncode == 2
    deleted = box.run("boxes", "delete", "--name", "again", box=False)
    assert deleted.returncode == 0 and deleted.stdout == "removed again\n"
    assert "again" not in box.run("boxes", box=False).stdout


def test_pause_outside_lager_python_says_so() -> None:
    result = subprocess.run([sys.executable, "-c", "from lager import pause\npause('x')\n"
                             "print('ok')"], capture_output=True, text=True, timeout=30,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("LAGER")})
    assert (result.returncode, result.stdout) == (0, "ok\n")
    assert result.stderr == "not running under `lager python`; skipping breakpoint\n"
