"""Compatibility tier, the Net API's "Manage Net Configuration" (issue 16): the real lager's
local nets file, written and read by scripts as the real docs write them.

A saved net is one more name for terminals the bench file has; it persists on the box (in the
agent's state dir, `saved-nets/saved_nets.json`, the real lager's file name and format) for
every later run, the agent's own commands and its safe state. Real parts only: a box of our
own, its simulated bench, scripts run by `lager python`; the privilege-separated box runs each
script under a uid of its own.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    Agent,
    Client,
    cannot_run,
    laptop_on_a_new_box,
    make_client,
    start_agent,
    start_run,
    write_script,
)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with laptop_on_a_new_box(tmp_path_factory.mktemp("nets")) as laptop:
        yield laptop


def saved_file(agent: Agent) -> Path:
    return agent.state_dir / "saved-nets" / "saved_nets.json"


def run(client: Client, tmp_path: Path, body: str, name: str = "nets.py"
        ) -> subprocess.CompletedProcess[str]:
    return client.run("python", str(write_script(tmp_path, name, body)))


def script_json(client: Client, tmp_path: Path, body: str) -> dict:  # type: ignore[type-arg]
    result = run(client, tmp_path, "import json\nfrom lager import Net, NetType, LagerError\n"
                 + body)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def no_saved_nets(box: Client) -> Iterator[None]:
    saved_file(box.agent).unlink(missing_ok=True)
    yield
    saved_file(box.agent).unlink(missing_ok=True)


# The docs' "Manage Net Configuration" example (reference/python/net), call for call. Changed:
# the address, the bench's own ('192.168.1.100' in the docs). Ours: the print at the end (had
# the rename not happened, NEW_PSU would still be listed; had the delete not, MAIN_POWER).
MANAGE_EXAMPLE = """\
from lager import Net

# Save a new net
Net.save_local_net({
    'name': 'NEW_PSU',
    'role': 'power-supply',
    'channel': 2,
    'instrument': 'rigol_dp800',
    'address': '127.0.0.1'
})

# Rename a net
Net.rename_local_net('NEW_PSU', 'MAIN_POWER')

# Delete a net
Net.delete_local_net('MAIN_POWER')
print([n['name'] for n in Net.list_saved() if n['source'] == 'saved'])   # ours
"""


def test_manage_net_configuration_example_runs_unchanged(box: Client, tmp_path: Path) -> None:
    result = run(box, tmp_path, MANAGE_EXAMPLE)
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr
    assert json.loads(saved_file(box.agent).read_text()) == []
    # Stopped before the delete, the renamed net is there, on the bench's dp821 CH2.
    kept = run(box, tmp_path / "kept", MANAGE_EXAMPLE.split("# Delete")[0] + """
from lager import NetType
print(Net.get('MAIN_POWER', type=NetType.PowerSupply).channel)
""")
    assert (kept.returncode, kept.stdout) == (0, "2\n"), kept.stderr
    assert [e["name"] for e in json.loads(saved_file(box.agent).read_text())] == ["MAIN_POWER"]


def test_a_saved_net_persists_for_later_runs_and_the_agent(box: Client, tmp_path: Path) -> None:
    saving = run(box, tmp_path / "a", """
from lager import Net, NetType
Net.save_local_net({'name': 'VDD', 'role': 'power-supply', 'channel': 2,
                    'instrument': 'rigol_dp800', 'address': '127.0.0.1'})
psu = Net.get('VDD', type=NetType.PowerSupply)      # this run sees it at once
psu.set_voltage(1.5)
print(psu.channel, psu.type)
""")
    assert (saving.returncode, saving.stdout) == (0, "2 NetType.PowerSupply\n"), saving.stderr
    on_disk = json.loads(saved_file(box.agent).read_text())  # the real lager's format
    assert on_disk == [{"name": "VDD", "role": "power-supply", "channel": 2,
                        "instrument": "rigol_dp800", "address": "127.0.0.1"}]
    later = script_json(box, tmp_path / "b", """
vdd = Net.get('VDD', type=NetType.PowerSupply)
row = next(n for n in Net.list_saved() if n['name'] == 'VDD')
print(json.dumps({"set": vdd.state().set_voltage, "row": row}))
""")
    assert later["set"] == 1.5
    assert {k: later["row"][k] for k in ("role", "type", "instrument", "channel", "source")} == {
        "role": "power-supply", "type": "PowerSupply", "instrument": "rigol_dp821",
        "channel": 2, "source": "saved"}
    # The agent's own commands serve it too: same terminals as the bench file's supply3.
    listing = box.run("supply").stdout.splitlines()
    assert [line.split()[0] for line in listing] == ["supply1", "supply2", "supply3", "VDD"]
    read = json.loads(box.run("supply", "VDD", "--json").stdout)
    assert read["set_voltage"] == 1.5 and read["channel"] == "CH2"
    assert json.loads(box.run("supply", "supply3", "--json").stdout)["set_voltage"] == 1.5


def test_a_saved_net_gets_its_terminals_safe_state(box: Client, tmp_path: Path) -> None:
    """The agent puts a saved net of a run that failed in the bench file's safe state for
    those terminals (supply3's: off, 0 V)."""
    result = run(box, tmp_path, """
from lager import Net, NetType
Net.save_local_net({'name': 'RAIL', 'role': 'power-supply', 'channel': 2,
                    'instrument': 'dp821'})
rail = Net.get('RAIL', type=NetType.PowerSupply)
rail.set_voltage(2.0)
rail.enable()
raise SystemExit(3)
""")
    assert result.returncode == 3
    assert "RAIL off (0 V)" in result.stderr, result.stderr
    state = json.loads(box.run("supply", "supply3", "--json").stdout)
    assert (state["enabled"], state["set_voltage"]) == (False, 0.0)


def test_every_net_management_method(box: Client, tmp_path: Path) -> None:
    out = script_json(box, tmp_path, """
Net.save_local_nets([
    {'name': 'VDD', 'role': 'power-supply', 'channel': 1, 'instrument': 'rigol_dp800',
     'address': '127.0.0.1'},
    {'name': 'GND', 'role': 'power-supply', 'channel': 2, 'instrument': 'rigol_dp800',
     'address': '127.0.0.1'},
])
out = {}
all_nets = Net.get_local_nets()
out["names"] = [n['name'] for n in all_nets]
out["vdd"] = [n['channel'] for n in Net.filter_nets(all_nets, 'VDD')]
out["vdd_psu"] = len(Net.filter_nets(all_nets, 'VDD', role='power-supply'))
out["vdd_adc"] = len(Net.filter_nets(all_nets, 'VDD', role='adc'))
# The real API's read-modify-write: the bench file's nets come back unchanged.
all_nets.append({'name': 'SENSE', 'role': 'adc', 'channel': 104, 'instrument': 'keithley_daq6510'})
Net.save_local_nets(all_nets)
out["sense"] = round(Net.get('SENSE', type=NetType.ADC).input(), 1)
out["renamed"] = [Net.rename_local_net('GND', 'AUX'), Net.rename_local_net('nope', 'x')]
out["deleted"] = [Net.delete_local_net('VDD', role='adc'), Net.delete_local_net('VDD'),
                  Net.delete_local_net('VDD')]
out["left"] = [n['name'] for n in Net.list_saved() if n['source'] == 'saved']
out["all"] = Net.delete_all_local_nets()
out["after"] = [n['name'] for n in Net.list_saved()]
out["env"] = Net.list_all_from_env()
print(json.dumps(out))
""")
    bench = ["supply1", "battery1", "supply2", "supply3", "adc1", "adc2", "adc3", "adc4", "load1"]
    assert out["names"] == [*bench, "VDD", "GND"]
    assert (out["vdd"], out["vdd_psu"], out["vdd_adc"]) == ([1], 1, 0)
    assert out["sense"] == 0.0  # channel 104 is wired to supply2, which is off
    assert out["renamed"] == [True, False]
    assert out["deleted"] == [False, True, False]
    assert out["left"] == ["AUX", "SENSE"]
    assert out["all"] is True and out["after"] == bench and out["env"] == []


BAD_SAVES = [
    ("{'name': 'X', 'role': 'power-supply', 'channel': 1, 'instrument': 'keysight_e36000'}",
     "X: this bench has no instrument 'keysight_e36000' that can serve a PowerSupply net "
     "(it has: k2281s (keithley_2281s at TCPIP0::127.0.0.1::"),
    ("{'name': 'X', 'role': 'power-supply', 'channel': 3, 'instrument': 'rigol_dp800'}",
     "X: dp821 (rigol_dp821) has no channel 3 (it has 1-2)"),
    ("{'name': 'X', 'role': 'battery', 'channel': 2, 'instrument': 'keithley'}",
     "X: k2281s (keithley_2281s) has one set of terminals, no channel 2"),
    ("{'name': 'X', 'role': 'adc', 'channel': 111, 'instrument': 'daq6510'}",
     "X: daq6510 (keithley_daq6510) has no channel 111 (it has 101-110)"),
    ("{'name': 'X', 'role': 'power-supply', 'channel': 1, 'instrument': 'rigol_dp800', "
     "'address': '192.168.1.100'}", "X: this bench has no rigol_dp800 at 192.168.1.100 "),
    ("{'name': 'X', 'role': 'gpio', 'channel': 1, 'instrument': 'labjack_t7'}",
     "X: this box has no gpio nets (it has power-supply, battery, adc, eload)"),
    ("{'name': 'X', 'role': 'adc', 'instrument': 'rigol_dp821'}",
     "X: this bench has no instrument 'rigol_dp821' that can serve a ADC net"),
    ("{'name': 'supply2', 'role': 'power-supply', 'channel': 2, 'instrument': 'dp821'}",
     "supply2 is a net of the bench file; scripts cannot change it"),
    ("{'name': 'a\\nb', 'role': 'adc', 'instrument': 'daq6510'}",
     "a saved net's name must be a short line of text, not 'a\\nb'"),
    ("{'name': 'X', 'role': 'adc', 'channel': 'two', 'instrument': 'daq6510'}",
     "X: channel 'two' is not a whole number"),
    ("['X', 'adc']", "a net to save is a dict with name, role, instrument and channel, not list"),
]


@pytest.mark.parametrize("entry, message", BAD_SAVES, ids=[m[:30] for _, m in BAD_SAVES])
def test_a_net_the_bench_lacks_is_a_one_line_error(box: Client, tmp_path: Path, entry: str,
                                                    message: str) -> None:
    result = run(box, tmp_path, f"from lager import Net\nNet.save_local_net({entry})\n")
    assert result.returncode == 1 and result.stdout == ""
    # uncaught, a lager error ends the script in one line (lager/uncaught.py)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("lager: " + message), result.stderr
    assert not saved_file(box.agent).exists()  # nothing written


def test_the_bench_files_nets_are_the_operators(box: Client, tmp_path: Path) -> None:
    out = script_json(box, tmp_path, """
errors = []
for call in (lambda: Net.delete_local_net('supply2'),
             lambda: Net.rename_local_net('adc1', 'TEMP'),
             lambda: Net.rename_local_net('nope', 'adc1'),
             lambda: Net.save_local_nets('VDD'),
             lambda: Net.save_local_nets([{'name': 'A', 'role': 'adc', 'channel': 104,
                                           'instrument': 'daq6510'}] * 2)):
    try:
        call()
    except LagerError as e:
        errors.append(str(e))
Net.save_local_net({'name': 'A', 'role': 'adc', 'channel': 105, 'instrument': 'daq6510'})
try:
    Net.save_local_net({'name': 'A', 'role': 'battery', 'instrument': 'keithley'})
except LagerError as e:
    errors.append(str(e))
errors.append(Net.delete_local_net('supply2', role='adc'))  # no adc net supply2: nothing
print(json.dumps(errors))
""")
    assert out == [
        "supply2 is a net of the bench file; scripts cannot delete it (only nets saved with "
        "Net.save_local_net)",
        "adc1 is a net of the bench file; scripts cannot rename it (only nets saved with "
        "Net.save_local_net)",
        "adc1 is a net of the bench file; choose another name",
        "save_local_nets takes a list of nets, not str",
        "A is in the list twice",
        "A is already saved as a adc net; delete it first, or choose another name",
        False]


def test_a_broken_or_hostile_saved_nets_file_leaves_the_bench_working(box: Client,
                                                                       tmp_path: Path) -> None:
    """What another run may leave in the shared file: each entry is checked again as it is
    read; a bad one is no net (and says why), the bench file's nets work whatever it holds."""
    path = saved_file(box.agent)
    path.write_text(json.dumps([
        {"name": "GOOD", "role": "adc", "channel": 104, "instrument": "daq6510"},
        {"name": "FAR", "role": "power-supply", "channel": 9, "instrument": "dp821"},
        {"name": "supply2", "role": "adc", "channel": 101, "instrument": "daq6510"},
        "not a net", {"role": "adc"}]))
    out = script_json(box, tmp_path / "a", """
out = {"good": type(Net.get('GOOD', type=NetType.ADC).input()).__name__,
       "supply2": str(Net.get('supply2').type)}
try:
    Net.get('FAR', type=NetType.PowerSupply)
except LagerError as e:
    out["far"] = [type(e).__name__, str(e)]
out["listed"] = {n.get('name'): n.get('problem') for n in Net.list_saved()
                 if n['source'] == 'saved'}
print(json.dumps(out))
""")
    assert out["good"] == "float" and out["supply2"] == "NetType.PowerSupply"
    assert out["far"] == ["UnknownNet", "saved net 'FAR' is not usable on this bench: FAR: "
                          "dp821 (rigol_dp821) has no channel 9 (it has 1-2)"]
    assert out["listed"]["GOOD"] is None and "no channel 9" in out["listed"]["FAR"]
    assert out["listed"]["supply2"].startswith("supply2 is a net of the bench file")
    probe = """
from lager import Net, NetType
print(Net.get('supply2', type=NetType.PowerSupply).get_ovp_limit() > 0)
print(len(Net.list_saved()))
"""
    for hostile in ("not json {", "x" * (1 << 21), "[" * 200_000):
        path.write_text(hostile)
        result = run(box, tmp_path / str(len(hostile)), probe)
        assert (result.returncode, result.stdout) == (0, "True\n9\n"), result.stderr
        assert len(result.stderr.splitlines()) == 1 and "listing the bench file's nets only" \
            in result.stderr
    path.unlink()
    os.mkfifo(path)  # a reader that opened it blocking would hang here
    try:
        result = run(box, tmp_path / "fifo", probe)
        assert (result.returncode, result.stdout) == (0, "True\n9\n"), result.stderr
        assert "is not a regular file" in result.stderr
    finally:
        path.unlink()
    path.symlink_to("/etc/passwd")  # never followed: not even its size or its text shows
    try:
        result = run(box, tmp_path / "link", probe)
        assert (result.returncode, result.stdout) == (0, "True\n9\n"), result.stderr
        assert "root:" not in result.stderr and "cannot be read" in result.stderr
    finally:
        path.unlink()
    fresh = run(box, tmp_path / "fresh", "from lager import Net\n"
                "path_broken = open(__import__('os').environ['LAGER_SAVED_NETS'], 'w')\n"
                "path_broken.write('[oops'); path_broken.close()\n"
                "print(Net.delete_all_local_nets())\n")
    assert fresh.stdout == "True\n" and json.loads(path.read_text()) == []


SAVER = """
import sys
from lager import Net
for i in range(8):
    Net.save_local_net({'name': f'{sys.argv[1]}{i}', 'role': 'adc', 'channel': 101 + i % 10,
                        'instrument': 'keithley_daq6510'})
print("saved")
"""


def test_runs_saving_at_once_lose_nothing(box: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "saver.py", SAVER)
    runs = [start_run(box, script, prefix) for prefix in ("A", "B", "C", "D")]
    for live in runs:
        assert live.finish(timeout=120) == 0, live.err.text
    names = {e["name"] for e in json.loads(saved_file(box.agent).read_text())}
    assert names == {f"{p}{i}" for p in "ABCD" for i in range(8)}
    assert not [p.name for p in saved_file(box.agent).parent.iterdir()
                if p.name.endswith(".tmp")]  # no temp file left behind


# The real lager's own API test for listing nets (lagerdata/lager test/api/utility/
# test_list_nets.py) checks that list_saved() is a non-empty list of dicts that all have name
# and role, and prints each. Our adaptation of its checks, in our words, run as a script:
LIST_NETS_CHECKS = """
import json
from lager import Net
nets = Net.list_saved()
checks = {"returns_list": isinstance(nets, list), "non_empty": len(nets) > 0,
          "nets_have_name_and_role": all(isinstance(n, dict) and 'name' in n and 'role' in n
                                         for n in nets)}
for n in nets:
    print(f"    {n.get('name', 'Unknown')} ({n.get('role', 'Unknown')})")
print(json.dumps(checks))
"""


def test_list_nets_as_the_real_projects_test_checks_it(box: Client, tmp_path: Path) -> None:
    result = run(box, tmp_path, LIST_NETS_CHECKS)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[-1]) == {"returns_list": True, "non_empty": True,
                                     "nets_have_name_and_role": True}
    assert lines[:3] == ["    supply1 (power-supply)", "    battery1 (battery)",
                         "    supply2 (power-supply)"]


# --------------------------------------------------------------------------- separate uids

def _let_runs_reach(path: Path) -> None:
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if parent.is_dir() and not mode & 0o001:
            os.chmod(parent, mode | 0o001)


@pytest.fixture(scope="module")
def separated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    if os.geteuid() != 0:
        cannot_run("privilege separation needs root to switch users")
    import lager

    _let_runs_reach(Path(os.path.realpath(sys.executable)).parent)
    _let_runs_reach(Path(lager.__file__).resolve().parent)
    root = Path(tempfile.mkdtemp(prefix="lager-nets-privsep-"))
    os.chmod(root, 0o711)
    agent = start_agent(root / "state", "--run-as", "nobody")
    try:
        yield make_client(root / "laptop", agent)
    finally:
        agent.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_runs_of_separate_uids_share_saved_nets(separated: Client, tmp_path: Path) -> None:
    """Each run is a uid of its own: one saves, the next (another uid) replaces the file."""
    first = run(separated, tmp_path / "a", """
import os
from lager import Net
Net.save_local_net({'name': 'VDD', 'role': 'power-supply', 'channel': 1, 'instrument': 'dp821'})
print(os.getuid())
""")
    assert first.returncode == 0, first.stderr
    second = run(separated, tmp_path / "b", """
import os
from lager import Net, NetType
Net.rename_local_net('VDD', 'MAIN')
Net.get('MAIN', type=NetType.PowerSupply).set_voltage(1.25)
print(os.getuid())
""")
    assert second.returncode == 0, second.stderr
    assert first.stdout != second.stdout  # two uids
    path = saved_file(separated.agent)
    assert [e["name"] for e in json.loads(path.read_text())] == ["MAIN"]
    assert path.stat().st_uid == int(second.stdout)  # the second run's file replaced the first
    assert json.loads(separated.run("supply", "MAIN", "--json").stdout)["set_voltage"] == 1.25
    assert path.parent.stat().st_mode & 0o7777 == 0o2770
    # Nothing else of the state dir became writable to runs.
    assert separated.agent.state_dir.stat().st_mode & 0o022 == 0
