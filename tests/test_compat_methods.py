"""Compatibility tier (issue 16), beyond the docs' pages: what the real lager project's own API
test suites call (lagerdata/lager, test/api/power/test_supply_Rigol_DP821.py,
test_supply_Keithley_2281S.py, test_battery_Keithley_2281S.py: device methods the docs do not
list, and states that are dicts), plus two command-line habits (a box by its address; the
banner naming the script as it was typed).

The scripts are our adaptation of those suites' checks, in our words: the same calls with the
same arguments, checked for what those suites check. Real parts only: a box of our own, its
simulated bench. Its supplies drive a 10 ohm DUT by default; those suites want "no load
attached", which a box started with LAGER_SIM_SUPPLY_LOAD=none gives (the `bare` box here).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Client, laptop_on_a_new_box, make_client, start_agent, start_run, write_script


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with laptop_on_a_new_box(tmp_path_factory.mktemp("methods")) as laptop:
        yield laptop


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A box whose supplies drive nothing, as the real suites' "no load attached" wants."""
    os.environ["LAGER_SIM_SUPPLY_LOAD"] = "none"  # the agent, and the bench it starts, inherit it
    try:
        agent = start_agent(tmp_path_factory.mktemp("bare-box") / "state")
    finally:
        del os.environ["LAGER_SIM_SUPPLY_LOAD"]
    try:
        yield make_client(tmp_path_factory.mktemp("bare-laptop"), agent)
    finally:
        agent.stop()


def script_json(client: Client, tmp_path: Path, body: str) -> dict:  # type: ignore[type-arg]
    script = write_script(tmp_path, "suite.py", "import json\nfrom lager import Net, NetType\n"
                          + body)
    result = client.run("python", str(script))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


SUPPLY_MONITOR_KEYS = ["voltage", "current", "power", "enabled", "mode", "voltage_set",
                       "current_set", "voltage_max", "current_max", "ocp_limit", "ocp_tripped",
                       "ovp_limit", "ovp_tripped"]
BATTERY_MONITOR_KEYS = ["terminal_voltage", "current", "esr", "soc", "voc", "enabled", "mode",
                        "model", "capacity", "current_limit", "ocp_limit", "ovp_limit",
                        "volt_full", "volt_empty", "ocp_tripped", "ovp_tripped"]


def test_the_real_suites_supply_methods(box: Client, tmp_path: Path) -> None:
    out = script_json(box, tmp_path, """
psu = Net.get('supply2', type=NetType.PowerSupply)
psu.set_voltage(5.0)
psu.set_current(1.0)
psu.enable()
from lager import LagerError
out = {"on": psu.output_is_enabled(), "mode": psu.get_output_mode(),
       "limits": psu.get_channel_limits(), "monitor": psu.get_monitor_state()}
full = psu.get_full_state()
out["full"] = [isinstance(full, dict), len(full) > 0, json.loads(json.dumps(full)) == dict(full),
               full["voltage_max"] == full.voltage_max]
try:
    psu.get_monitor_state(channel=2)  # supply2 is DP821 CH1: another channel is refused
except LagerError as e:
    out["other_channel"] = str(e)
out["own_channel"] = psu.get_monitor_state(channel=1)["voltage_set"]
psu.disable(teardown=False)          # the real signature
out["off"] = psu.output_is_enabled()
print(json.dumps(out))
""")
    assert (out["on"], out["mode"], out["off"]) == (True, "CV", False)
    assert out["limits"] == {"voltage_max": 60.0, "current_max": 1.0}  # DP821 CH1
    monitor = out["monitor"]
    assert list(monitor) == SUPPLY_MONITOR_KEYS
    assert (monitor["voltage_set"], monitor["current_set"], monitor["enabled"]) == (5.0, 1.0, True)
    assert abs(monitor["voltage"] - 5.0) < 0.01 and abs(monitor["current"] - 0.5) < 0.01
    assert out["full"] == [True, True, True, True]
    assert out["other_channel"] == "supply2: channel 2 is not this net's (it is channel 1)"
    assert out["own_channel"] == 5.0


def test_the_real_suites_battery_methods(box: Client, tmp_path: Path) -> None:
    out = script_json(box, tmp_path, """
batt = Net.get('battery1', type=NetType.Battery)
batt.set_to_battery_mode()
batt.set_mode('dynamic')
batt.set_mode('static')
batt.set_model('discharge')
batt.set_model(0)
batt.set_voc(3.7)
batt.set_volt_full(4.2)
batt.set_volt_empty(3.0)
batt.set_capacity(2.0)
batt.set_current_limit(1.0)
batt.set_ovp(5.0)
batt.set_ocp(2.0)
batt.enable_battery()
on = batt.get_monitor_state(channel=1)
reads = [type(batt.terminal_voltage()).__name__, type(batt.current()).__name__]
batt.disable_battery()
state = batt.state()
print(json.dumps({"on": on, "off": batt.get_monitor_state()["enabled"], "reads": reads,
                  "state_is_dict": isinstance(state, dict), "soc": state["soc"]}))
""")
    on = out["on"]
    assert list(on) == BATTERY_MONITOR_KEYS
    assert {k: on[k] for k in ("voc", "volt_full", "volt_empty", "capacity", "current_limit",
                               "ovp_limit", "ocp_limit", "mode", "enabled")} == {
        "voc": 3.7, "volt_full": 4.2, "volt_empty": 3.0, "capacity": 2.0,
        "current_limit": 1.0, "ovp_limit": 5.0, "ocp_limit": 2.0, "mode": "static",
        "enabled": True}
    assert on["ovp_tripped"] is False and on["ocp_tripped"] is False
    assert out["off"] is False and out["reads"] == ["float", "float"]
    assert out["state_is_dict"] is True and out["soc"] == on["soc"]


def test_simple_nets_take_enable_and_disable(box: Client, tmp_path: Path) -> None:
    """The docs' Net instance methods on a net with nothing to switch: accepted, no effect."""
    out = script_json(box, tmp_path, """
adc = Net.get('adc1', type=NetType.ADC)
adc.enable()
value = adc.input()
adc.disable()
adc.disable(teardown=False)
print(json.dumps({"value": round(value, 1)}))
""")
    assert out == {"value": -10.6}


def test_box_takes_an_address(box: Client) -> None:
    for target in (f"{box.agent.host}:{box.agent.port}", f"lab@{box.agent.host}:{box.agent.port}"):
        listed = box.run("supply", "--json", "--box", target, box=False)
        assert listed.returncode == 0, listed.stderr
        assert [n["name"] for n in json.loads(listed.stdout)] == ["supply1", "supply2", "supply3"]


def test_banner_names_the_script_as_typed(box: Client, tmp_path: Path) -> None:
    write_script(tmp_path / "bench", "check.py", "from lager import pause\npause('look')\n")
    run = start_run(box, Path("bench/check.py"), cwd=tmp_path)
    ident = run.banner_id()
    assert '=== lager breakpoint "look" at bench/check.py:2' in run.err.text
    assert box.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0


def test_the_real_suites_unloaded_checks_on_a_bare_bench(bare: Client, tmp_path: Path) -> None:
    """test_supply_Rigol_DP821 / test_supply_Keithley_2281S / test_battery_Keithley_2281S:
    near-zero current unloaded, 12 V reads 12 V on DP821 CH1, the 2281S rated 20 V / 6 A, and a
    battery current limit within the docs' 0.001-6 A."""
    out = script_json(bare, tmp_path, """
from lager import LagerError
out = {"unloaded": {}, "limits": {}, "refused": []}
for name in ("supply1", "supply2", "supply3"):
    psu = Net.get(name, type=NetType.PowerSupply)
    psu.set_voltage(5.0)
    for limit in (0.5, 1.0):
        psu.set_current(limit)
        psu.enable()
        out["unloaded"][f"{name} {limit}"] = psu.current()
    if name == "supply2":
        psu.set_voltage(12.0)
        out["twelve"] = round(psu.voltage(), 2)
    out["limits"][name] = psu.get_channel_limits()
    psu.disable()
batt = Net.get('battery1', type=NetType.Battery)
batt.set_mode_battery()
for amps in (0, 0.0005, 6.1):
    try:
        batt.set_current_limit(amps)
    except LagerError as e:
        out["refused"].append(str(e))
batt.set_current_limit(0.001)
batt.set_current_limit(6.0)
out["kept"] = batt.get_monitor_state()["current_limit"]
print(json.dumps(out))
""")
    assert all(abs(amps) < 0.1 for amps in out["unloaded"].values()), out["unloaded"]
    assert len(out["unloaded"]) == 6 and out["twelve"] == 12.0
    assert out["limits"] == {"supply1": {"voltage_max": 20.0, "current_max": 6.0},
                             "supply2": {"voltage_max": 60.0, "current_max": 1.0},
                             "supply3": {"voltage_max": 8.0, "current_max": 10.0}}
    assert out["refused"] == [
        f"battery1: current limit {v} A is out of range (0.001 to 6 A)"
        for v in ("0", "0.0005", "6.1")]
    assert out["kept"] == 6.0


def test_the_default_bench_still_drives_its_dut(box: Client) -> None:
    """Without the option the supplies keep their 10 ohm DUT: 5 V draws 0.5 A."""
    on = json.loads(box.run("supply", "supply3", "voltage", "5", "--yes", "--json").stdout)
    assert on["set_voltage"] == 5.0
    drawn = json.loads(box.run("supply", "supply3", "enable", "--yes", "--json").stdout)
    box.run("supply", "supply3", "disable", "--yes")
    assert abs(drawn["current"] - 0.5) < 0.01
