"""Process tracking (issue 10): nothing a run starts outlives it, `setsid` or not.

Each run's monitor is a child subreaper: whatever the script starts stays below it, is
signalled with it, and is swept (SIGTERM, then SIGKILL) once the script exits.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import Client, make_client, start_agent, wait_for, write_script

HELPER = """
import os, subprocess, sys, time
# A helper in a session of its own, which ignores SIGTERM so only SIGKILL can end it.
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
helper = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
print("helper", helper.pid, flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_setsid_helper_ends_with_its_script(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "leaves.py", HELPER + "print('bye')\n")
    started = time.monotonic()
    result = client.run("python", str(script))
    assert result.returncode == 0, result.stderr
    helper = int(result.stdout.split()[1])
    assert "bye" in result.stdout
    # The run counted as ended only once its leftovers were swept.
    assert not _alive(helper)
    assert time.monotonic() - started < 60  # not held open by the helper's 300 s


def test_kill_reaches_a_setsid_helper(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "stays.py", HELPER + "time.sleep(300)\n")
    started = client.run("python", str(script), "--detach")
    run_id = started.stdout.split()[2]
    rows = wait_for(lambda: [r for r in json.loads(client.run("python", "--list", "--json").stdout)
                             if r["id"] == run_id and r["pid"]], what="the run")
    script_pid = rows[0]["pid"]
    helper = wait_for(lambda: [p for p in _children_of(script_pid)], what="the helper")[0]
    assert client.run("python", "--kill", run_id).returncode == 0
    wait_for(lambda: not _alive(helper) and not _alive(script_pid), 20, what="the run's processes")
    def row():
        return next(r for r in json.loads(client.run("python", "--list", "--json").stdout)
                           if r["id"] == run_id)
    wait_for(lambda: row()["state"] == "exited", 20, what="the run to end")
    assert row()["exit_code"] == 130


def test_a_killed_agent_leaves_no_helper_holding_a_claim(tmp_path: Path) -> None:
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    script = write_script(tmp_path, "claims.py", """
import subprocess, sys, time
code = '''
import signal, time
from lager import Net, NetType
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
Net.get("supply2", type=NetType.PowerSupply)
print("claimed", flush=True)
time.sleep(300)
'''
helper = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                          stdout=subprocess.PIPE, text=True)
assert helper.stdout.readline().strip() == "claimed"
print("helper", helper.pid, flush=True)
time.sleep(300)
""")
    run_id = laptop.run("python", str(script), "--detach").stdout.split()[2]
    def nets():
        return {n["name"]: n for n in json.loads(laptop.run("nets", "--json").stdout)}
    wait_for(lambda: nets()["supply2"]["held_by"], 20, what="the helper's claim")
    helper = nets()["supply2"]["held_by"]["pid"]
    box.proc.kill()
    box.proc.wait()
    # The run outlives the agent (its monitor keeps it), so its claim is live, not stale.
    again = start_agent(tmp_path / "state")
    try:
        laptop2 = make_client(tmp_path / "laptop2", again)
        def held() -> dict:
            return {n["name"]: n["held_by"]
                    for n in json.loads(laptop2.run("nets", "--json").stdout)}
        assert held()["supply2"]["pid"] == helper
        # Ending the run sweeps the helper that ignores SIGINT and SIGTERM, and its claim.
        assert laptop2.run("python", "--kill", run_id).returncode == 0
        wait_for(lambda: not _alive(helper), 30, what="the helper to be swept")
        # The run's end comes after its sweep and its safe state (which claims supply2 for a
        # moment): once the run is listed as exited, nothing holds the claim.
        def ended() -> bool:
            rows = json.loads(laptop2.run("python", "--list", "--json").stdout)
            return next(r for r in rows if r["id"] == run_id)["state"] == "exited"
        wait_for(ended, 30, what="the run to end")
        assert held()["supply2"] is None
    finally:
        again.stop()


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found
