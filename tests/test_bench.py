"""The bench: the real simulator server, real pyvisa-py, claims, and the instrument commands."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LAGER, Client, make_client, start_agent, start_run, write_script
from scenarios import run_spec_example
from tcp_peer import TcpPeer


def test_spec_full_example(client: Client, tmp_path: Path) -> None:
    run_spec_example(client, tmp_path)


def test_state_is_shared_across_processes(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "set.py", """
from lager import Net, NetType
with Net.get("supply3", type=NetType.PowerSupply) as s:
    s.set_voltage(3.3)
    s.set_current(0.5)
    s.enable()
""")
    assert client.run("python", str(script)).returncode == 0
    state = json.loads(client.run("supply", "supply3", "state", "--json").stdout)
    assert state["enabled"] is True and state["set_voltage"] == 3.3
    assert abs(state["voltage"] - 3.3) < 0.01 and state["set_current"] == 0.5
    assert client.run("supply", "supply3", "voltage", "1.8").returncode == 0
    check = write_script(tmp_path, "get.py", """
from lager import Net, NetType
print(Net.get("supply3", type=NetType.PowerSupply).state().set_voltage)
""")
    shown = client.run("python", str(check)).stdout  # state() prints its block, then we print
    assert shown.startswith("Channel: CH2\n") and shown.endswith("\n1.8\n")
    client.run("supply", "supply3", "disable")


def test_measured_voltage_follows_set_point_only_when_on(client: Client) -> None:
    client.run("supply", "supply1", "voltage", "5")
    client.run("supply", "supply1", "disable")
    off = json.loads(client.run("supply", "supply1", "--json").stdout)
    assert off["voltage"] == 0.0 and off["set_voltage"] == 5.0
    on = json.loads(client.run("supply", "supply1", "enable", "--json").stdout)
    assert abs(on["voltage"] - 5.0) < 0.01 and on["current"] > 0
    client.run("supply", "supply1", "disable")
    client.run("battery", "battery1", "soc", "100")
    full = json.loads(client.run("battery", "battery1", "enable", "--json").stdout)
    assert full["soc"] == 100.0 and abs(full["voltage"] - 4.2) < 0.01
    client.run("battery", "battery1", "disable")


def test_two_nets_of_one_instrument_in_one_script(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "both.py", """
from lager import Net, NetType
a = Net.get("supply2", type=NetType.PowerSupply)
b = Net.get("supply3", type=NetType.PowerSupply)
a.set_voltage(1.25); b.set_voltage(2.5)
print(a.state().set_voltage, b.state().set_voltage)
k1 = Net.get("supply1", type=NetType.PowerSupply)
k2 = Net.get("battery1", type=NetType.Battery)
print(k2.state().soc >= 0)
""")
    result = client.run("python", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["1.25 2.5", "True"]  # after state()'s blocks


def test_claim_released_when_script_is_sigkilled(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "die.py", """
import os, signal, time
from lager import Net, NetType
adc = Net.get("adc4", type=NetType.ADC)
adc.input()
print("holding", flush=True)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
""")
    run = start_run(client, script)
    run.out.wait_for("holding")
    held = client.run("adc", "adc4")
    assert held.returncode == 1 and "busy" in held.stderr and "die.py" in held.stderr
    assert run.finish() == 137
    assert client.run("adc", "adc4").returncode == 0


def test_nets_lists_holders(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "hold.py", """
from lager import Net, NetType, pause
Net.get("supply2", type=NetType.PowerSupply).state()
pause("holding supply2", timeout=0)
""")
    run = start_run(client, script)
    ident = run.banner_id()
    rows = {r["name"]: r for r in json.loads(client.run("nets", "--json").stdout)}
    assert set(rows) == {"supply1", "battery1", "supply2", "supply3", "adc1", "adc2", "adc3",
                         "adc4", "load1"}
    assert rows["supply2"]["held_by"]["paused"] == "holding supply2"
    assert rows["supply3"]["held_by"]["run_id"] == rows["supply2"]["held_by"]["run_id"]
    assert rows["adc4"]["held_by"] is None
    human = client.run("nets").stdout
    assert f"held by run {ident}" in human and "free" in human
    client.run("python", "--continue", ident)
    assert run.finish() == 0


@pytest.mark.parametrize("args, code, needle", [
    (["adc", "nope"], 1, "no net 'nope' on this bench; nets: adc1"),
    (["adc", "supply2"], 1, "supply2 is a PowerSupply net, not an ADC"),
    (["supply", "adc1"], 1, "adc1 is an ADC net, not a PowerSupply"),
    (["supply", "supply2", "voltage", "abc"], 2, "is not a number"),
    (["supply", "supply2", "state", "3"], 2, "state takes no value"),
    (["supply", "supply2", "explode"], 2, "Invalid value"),
    (["battery", "battery1", "soc", "150"], 1, "battery1"),
])
def test_instrument_command_bad_input(client: Client, args: list[str], code: int,
                                      needle: str) -> None:
    result = client.run(*args)
    assert result.returncode == code, result.stderr
    assert needle in result.stderr


def test_script_net_errors_are_clear(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "wrong.py", """
from lager import Net, NetType
from lager.errors import LagerError
for name, kind in (("adc1", NetType.PowerSupply), ("zzz", NetType.ADC)):
    try:
        Net.get(name, type=kind)
    except LagerError as e:
        print(e)
""")
    result = client.run("python", str(script))
    assert result.stdout.splitlines() == [
        "adc1 is an ADC net, not a PowerSupply",
        "no net 'zzz' on this bench; nets: adc1, adc2, adc3, adc4, battery1, load1, supply1, "
        "supply2, supply3"]


class FaultyInstrument(TcpPeer):
    """A TCP peer that accepts and then never answers, or answers junk."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        super().__init__()

    def connected(self, conn: socket.socket) -> None:
        threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                if self.reply is not None and b"?" in data:
                    conn.sendall(self.reply)


@pytest.fixture
def faulty_bench(tmp_path: Path) -> Iterator[Client]:
    sim = subprocess.Popen([sys.executable, "-m", "box_agent.simbench"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    ports = json.loads(sim.stdout.readline())  # type: ignore[union-attr]
    silent, garbled = FaultyInstrument(None), FaultyInstrument(b"#$%garbage\n")
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    bench = tmp_path / "bench.yaml"
    bench.write_text(f"""
instruments:
  good: {{driver: keysight_34461a, resource: "TCPIP0::127.0.0.1::{ports['keysight_34461a']}::SOCKET"}}
  silent: {{driver: keysight_34461a, resource: "TCPIP0::127.0.0.1::{silent.port}::SOCKET", timeout_ms: 500}}
  garbled: {{driver: keysight_34461a, resource: "TCPIP0::127.0.0.1::{garbled.port}::SOCKET"}}
  unplugged: {{driver: keysight_34461a, resource: "TCPIP0::127.0.0.1::{dead_port}::SOCKET"}}
nets:
  good: {{kind: ADC, instrument: good}}
  silent: {{kind: ADC, instrument: silent}}
  garbled: {{kind: ADC, instrument: garbled}}
  unplugged: {{kind: ADC, instrument: unplugged}}
""")
    box = start_agent(tmp_path / "state", "--bench", str(bench))
    try:
        yield make_client(tmp_path / "laptop", box)
    finally:
        box.stop()
        sim.stdin.close()  # type: ignore[union-attr]
        sim.wait(10)


def test_instrument_faults_name_net_and_resource(faulty_bench: Client) -> None:
    for net, needle in (("silent", "timed out"), ("garbled", "garbled reply"),
                        ("unplugged", "cannot reach the instrument")):
        result = faulty_bench.run("adc", net)
        assert result.returncode == 1, result
        assert result.stderr.startswith(f"Error: {net}: ") and "TCPIP0::127.0.0.1::" in \
            result.stderr and needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        good = faulty_bench.run("adc", "good", "--json")  # the others keep working
        assert good.returncode == 0 and json.loads(good.stdout)["net"] == "good"


def test_bad_bench_config_refuses_to_start(tmp_path: Path) -> None:
    bench = write_script(tmp_path, "bench.yaml", "nets: {a: {kind: Toaster, instrument: x}}\n"
                         "instruments: {}\n")
    proc = subprocess.run([str(Path(sys.executable).parent / "lager-box"), "serve", "--listen",
                           "127.0.0.1:0", "--state-dir", str(tmp_path / "s"), "--bench",
                           str(bench)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "needs a kind" in proc.stderr


def test_pyvisa_sim_models_load_directly() -> None:
    """The models are plain pyvisa-sim definitions: pyvisa's sim backend opens them too."""
    import pyvisa

    models = Path(__file__).parent.parent / "box_agent" / "simbench" / "models" / "bench.yaml"
    rm = pyvisa.ResourceManager(f"{models}@sim")
    dp821 = rm.open_resource("TCPIP0::localhost::821::SOCKET", read_termination="\n",
                             write_termination="\n")
    assert dp821.query("*IDN?").startswith("RIGOL TECHNOLOGIES,DP821")
    dp821.write(":SOUR2:VOLT 3.300")
    assert dp821.query(":SOUR2:VOLT?") == "3.300" and dp821.query(":SOUR1:VOLT?") == "0.000"


def test_closed_sessions_leave_nothing_behind(client: Client, tmp_path: Path) -> None:
    """pyvisa keeps a closed session's records unless lager drops them (issue 10's soak)."""
    script = write_script(tmp_path, "cycle.py", """
from lager import Net, NetType
from lager.bench import session
for _ in range(50):
    with Net.get("adc2", type=NetType.ADC) as adc:
        adc.input()
lib = session._resource_manager().visalib
print(len(lib.sessions), len(lib._last_status_in_session), len(lib._ignore_warning_in_session))
""")
    done = client.run("python", str(script))
    assert done.returncode == 0, done.stderr
    sessions, statuses, ignored = map(int, done.stdout.split()[-3:])
    assert max(sessions, statuses, ignored) <= 1, done.stdout  # the resource manager's own


def test_the_fast_path_and_the_click_cli_print_the_same(client: Client) -> None:
    """Both print through client/instrument_views.py; LAGER_DEBUG sends a call to click."""
    for args in (["nets"], ["nets", "--json"], ["supply"], ["battery"], ["adc"],
                 ["supply", "supply1", "state"], ["supply", "nope", "state"]):
        fast = client.run(*args)
        cmd = [LAGER, *args, "--box", client.box]
        slow = subprocess.run(cmd, env={**client.env, "LAGER_DEBUG": "1"}, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert (fast.returncode, fast.stdout) == (slow.returncode, slow.stdout), args
        assert fast.stdout or fast.returncode != 0, args
