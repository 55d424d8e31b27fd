"""Compatibility tier, the simulated 2281S's battery models as the real lager's scripts lean on
them: 'discharge' is a model of its own (slot 0 here), and in static mode a Voc beyond the
recalled model's curve is held rather than refused. Spoken in raw SCPI from the 2281S
reference manual through pyvisa-py (code we did not write), against the real simulator; and
a model the instrument does not hold, asked for by a script and by the CLI on a real box."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pyvisa
from conftest import Client, laptop_on_a_new_box, simulator, write_script


@pytest.fixture(scope="module")
def k2281s() -> Iterator[Any]:
    with simulator() as ports:
        manager = pyvisa.ResourceManager("@py")
        res = manager.open_resource(f"TCPIP0::127.0.0.1::{ports['keithley_2281s']}::SOCKET",
                                    read_termination="\n", write_termination="\n", timeout=5000)
        try:
            yield res
        finally:
            res.close()
            manager.close()


@pytest.fixture
def k(k2281s: Any) -> Any:
    k2281s.write("*RST;*CLS;:ENTR:FUNC SIM")
    return k2281s


def errors(res: Any) -> list[str]:
    found = []
    for _ in range(30):
        entry = res.query(":SYST:ERR?")
        if entry.startswith("0,"):
            return found
        found.append(entry)
    raise AssertionError(f"the error queue never emptied: {found}")


def test_static_mode_holds_a_voc_beyond_the_model(k: Any) -> None:
    k.write(":BATT:MOD:RCL NIMH1_2;:BATT:SIM:METH STAT")
    k.write(":BATT:SIM:VOC 3.7")  # a Li-ion voltage with a NiMH model recalled
    assert errors(k) == []
    assert k.query(":BATT:SIM:VOC?;:BATT:SIM:SOC?") == "3.7000;100.0"
    k.write(":BATT:OUTP ON")
    assert abs(float(k.query(":BATT:SIM:TVOL?")) - 3.7) < 0.01  # what the DUT sees
    k.write(":BATT:OUTP OFF;:BATT:SIM:SOC 50")  # a SOC set goes back to the curve
    assert k.query(":BATT:SIM:VOC?") == "1.2500"
    k.write(":BATT:SIM:VOC:FULL 13;:BATT:SIM:VOC:EMPT 10")  # thresholds beyond the curve
    assert errors(k) == []
    assert k.query(":BATT:SIM:VOC:FULL?;:BATT:SIM:VOC:EMPT?") == "13.0000;10.0000"
    k.write(":BATT:SIM:VOC:EMPT 14")  # still never above full (manual: error 703)
    assert errors(k) == ['703,"Full Voc can\'t be less than empty Voc"']


def test_dynamic_mode_keeps_to_the_curve(k: Any) -> None:
    """The model drives the Voc as the battery discharges: beyond the curve is refused."""
    k.write(":BATT:MOD:RCL NIMH1_2;:BATT:SIM:METH DYN;:BATT:SIM:VOC 3.7")
    assert errors(k) == ['-222,"Data out of range; 3.7 not in 1 to 1.45"']
    k.write(":BATT:SIM:VOC 1.3")
    assert errors(k) == [] and k.query(":BATT:SIM:SOC?") == "80.0"


def test_discharge_model_is_slot_zero_and_keeps_the_voc(k: Any) -> None:
    k.write(":BATT:MOD:RCL NIMH1_2;:BATT:SIM:METH STAT;:BATT:SIM:SOC 100")
    k.write(":BATT:MOD:RCL 0")  # discharge: always there, whatever was recalled before
    assert errors(k) == []
    assert k.query(":BATT:MOD:RCL?") == "0"
    assert k.query(":BATT:SIM:VOC:EMPT?;:BATT:SIM:VOC:FULL?") == "0.0000;20.0000"
    assert k.query(":BATT:SIM:VOC?") == "1.4500"  # the battery kept its Voc
    k.write(":BATT:SIM:VOC 4.2;:BATT:SIM:VOC:FULL 4.2;:BATT:SIM:VOC:EMPT 3.0")
    assert errors(k) == []
    assert k.query(":BATT:SIM:VOC?;:BATT:SIM:SOC?") == "4.2000;100.0"
    for soc, voc in ((75, "3.9000"), (50, "3.6000"), (0, "3.0000")):  # evenly full to empty
        k.write(f":BATT:SIM:SOC {soc}")
        assert k.query(":BATT:SIM:VOC?") == voc
    k.write(":BATT:MOD:RCL 7")  # an empty slot is still refused (manual: 706)
    assert errors(k) == ['706,"Battery model is empty"']


HELD = ("1, 2, 3, LI-ION4_2, NIMH1_2, NICD1_2, LEAD-ACID12, NIMH12; 'discharge' is always "
        "available")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with laptop_on_a_new_box(tmp_path_factory.mktemp("battery")) as laptop:
        yield laptop


def test_a_model_the_instrument_lacks_lists_what_it_holds(box: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "models.py", """
import json
from lager import Net, NetType, LagerError

batt = Net.get('battery1', type=NetType.Battery)
batt.set_mode_battery()
errors = []
for name in ('foo', 'sla', 7):
    try:
        batt.model(name)
    except LagerError as e:
        errors.append(str(e))
catalog = batt.model_catalog()
batt.model('nimh')
batt.enable()
try:
    batt.model('LI-ION4_2')    # held, but not while the simulation runs: the instrument's words
except LagerError as e:
    errors.append(str(e))
batt.disable()
print(json.dumps({"errors": errors, "catalog": catalog}))
""")
    ran = box.run("python", str(script))
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout.splitlines()[-1])
    assert out["errors"] == [
        f"battery1: no model 'foo'; the instrument holds {HELD}",
        f"battery1: no model 'sla' (slot 4); the instrument holds {HELD}",
        f"battery1: no model '7'; the instrument holds {HELD}",
        "battery1: k2281s refused ':BATT:MOD:RCL LI-ION4_2': 704,\"Not permitted while battery "
        "model is running\""]
    assert out["catalog"] == HELD.split("; ")[0].split(", ")
    cli = box.run("battery", "battery1", "model", "foo")
    assert cli.returncode == 1 and cli.stdout == ""
    assert cli.stderr == f"Error: battery1: no model 'foo'; the instrument holds {HELD}\n"
