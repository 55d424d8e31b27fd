"""Safe state (issue 15): a run that ends in any way but a clean exit leaves every net it had
claimed in the safe state the bench file declares, applied by the agent at once; so does the
next agent for a run that ended while no agent ran. And pause(on_timeout=...)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    Client,
    make_client,
    pids_with_env,
    start_agent,
    start_run,
    wait_for,
    write_script,
)

ENABLE_AND_HOLD = """import sys, time
from lager import Net, NetType

psu = Net.get("{net}", type=NetType.PowerSupply)
psu.set_voltage(5)
psu.enable()
print("holding", psu.read_state().enabled, flush=True)
{then}
"""


def supply(client: Client, net: str) -> dict:
    result = client.run("supply", net, "state", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def turn_on(client: Client, net: str) -> None:
    """From another terminal, so a test starts from an enabled supply it did not claim."""
    assert client.run("supply", net, "voltage", "2").returncode == 0
    assert client.run("supply", net, "enable", "--yes").returncode == 0
    assert supply(client, net)["enabled"] is True


def run_id_of(client: Client, script: Path) -> str:
    rows = json.loads(client.run("python", "--list", "--json").stdout)
    return [r["id"] for r in rows if r["script"] == str(script) and r["state"] != "exited"][-1]


def test_kill_applies_the_safe_state_within_the_end(client: Client, tmp_path: Path) -> None:
    """The failure pause's script, killed instead of continued: supply2 reads off from
    another terminal, and the end message and the audit say so."""
    script = write_script(tmp_path, "killed.py", ENABLE_AND_HOLD.format(
        net="supply2", then="raise ValueError('bad reading')"))
    run = start_run(client, script, "--pause-on-failure")
    ident = run.banner_id()
    run.out.wait_for("holding True")
    monitor_dir = client.agent.state_dir / "runs" / f"{run_id_of(client, script)}.monitor"
    busy = client.run("supply", "supply2", "state")
    assert busy.returncode != 0 and "busy" in busy.stderr
    started = time.monotonic()
    assert client.run("python", "--kill", ident).returncode == 0
    polls = 0
    while True:  # another terminal, polling: measured, not asserted (timings are not tests)
        polls += 1
        answer = client.run("supply", "supply2", "state", "--json")
        if answer.returncode == 0 and not json.loads(answer.stdout)["enabled"]:
            break
        assert time.monotonic() - started < 30, answer.stderr
    # On the box: from the script's exit (its monitor's record) to the safe state's record.
    ended = json.loads((monitor_dir / "status.json").read_text())["ended_at"]
    applied = (monitor_dir / "safe.json").stat().st_mtime
    print(f"\nsupply2 read off {time.monotonic() - started:.3f}s after --kill ({polls} polls "
          f"from another terminal); on the box, applied {applied - ended:.3f}s after the "
          "script's exit")
    assert run.finish() == 130
    assert run.err.text.endswith("lager: safe state: supply2 off\n")
    assert supply(client, "supply2")["enabled"] is False  # after the end is reported
    audit = [line for line in client.agent.log().splitlines() if run_id_of_log(line, ident)]
    assert any("exited with 130 (stopped: killed by" in line and
               line.endswith("; safe state: supply2 off") for line in audit), audit


def run_id_of_log(line: str, short: str) -> bool:
    head, _, tail = short.partition("\u2026")
    return f"run {head}" in line and "exited with" in line and tail in line


def test_clean_exit_leaves_the_bench_and_always_overrides(client: Client,
                                                          tmp_path: Path) -> None:
    script = write_script(tmp_path, "clean.py", ENABLE_AND_HOLD.format(
        net="supply3", then="psu.close()"))
    result = client.run("python", str(script))
    assert result.returncode == 0 and "safe state" not in result.stderr
    state = supply(client, "supply3")
    assert state["enabled"] is True and state["set_voltage"] == 5

    always = client.run("python", str(script), "--safe-state", "always")
    assert always.returncode == 0
    assert always.stderr.endswith("lager: safe state: supply3 off (0 V)\n")
    state = supply(client, "supply3")  # its declared state: {enabled: false, voltage: 0}
    assert state["enabled"] is False and state["set_voltage"] == 0
    refused = client.run("python", str(script), "--safe-state", "sometimes")
    assert refused.returncode == 2


@pytest.mark.parametrize("how", ["timeout", "signal", "ctrl-c", "disconnect", "exception"])
def test_every_bad_end_applies_it(client: Client, tmp_path: Path, how: str) -> None:
    # The net is closed again before the end: closing keeps the output on, and the run's
    # ledger still names it.
    go = tmp_path / "go"
    then = ("psu.close()\nprint('closed', flush=True)\n"
            "while not __import__('os').path.exists(sys.argv[1]):\n    time.sleep(0.02)\n"
            "raise ValueError('late')")
    script = write_script(tmp_path, f"end_{how}.py", ENABLE_AND_HOLD.format(net="supply2",
                                                                        then=then))
    extra = {"timeout": ["--timeout", "1"], "disconnect": ["--stop-on-disconnect"]}
    run = start_run(client, script, str(go), *extra.get(how, []))
    wait_for(lambda: "closed" in run.out.text or run.proc.poll() is not None, 20,
             what="the script to enable and close supply2")
    assert "closed" in run.out.text, run.err.text
    assert supply(client, "supply2")["enabled"] is True  # on, and nobody's any more
    if how == "exception":
        go.write_text("go")
    elif how == "signal":
        assert client.run("python", "--kill", run_id_of(client, script), "--signal",
                          "KILL").returncode == 0
    elif how == "ctrl-c":
        run.proc.send_signal(signal.SIGINT)
    elif how == "disconnect":
        run_id = run_id_of(client, script)
        run.proc.kill()
        wait_for(lambda: client.run("python", "--list", "--json").stdout.count(run_id) and
                 next(r for r in json.loads(client.run("python", "--list", "--json").stdout)
                      if r["id"] == run_id)["state"] == "exited", 30, what="the run to stop")
    code = run.finish()
    if how != "disconnect":
        assert code == {"timeout": 124, "signal": 137, "ctrl-c": 130, "exception": 1}[how]
        assert run.err.text.endswith("lager: safe state: supply2 off\n")
    assert supply(client, "supply2")["enabled"] is False


@pytest.mark.parametrize("mode", ["resume", "safe", "fail"])
def test_on_timeout(client: Client, tmp_path: Path, mode: str) -> None:
    script = write_script(tmp_path, f"ot_{mode}.py", ENABLE_AND_HOLD.format(
        net="supply2", then=f"""from lager import PauseTimeout, pause
try:
    pause("hold", timeout=0.5, on_timeout="{mode}")
except PauseTimeout as exc:
    print("raised", type(exc).__name__, flush=True)
print("after", psu.read_state().enabled, flush=True)
psu.close()
"""))
    result = client.run("python", str(script))
    assert result.returncode == 0, result.stderr
    expected = {"resume": ("=== auto-resumed after 0.5s\n", "holding True\nafter True\n"),
                "safe": ("=== auto-resumed after 0.5s; safe state: supply2 off\n",
                         "holding True\nafter False\n"),
                "fail": ("=== timed out after 0.5s; raising lager.PauseTimeout\n",
                         "holding True\nraised PauseTimeout\nafter True\n")}[mode]
    assert expected[0] in result.stderr and result.stdout == expected[1]
    banner = {"resume": "    auto-resume in 0.5s\n",
              "safe": "    auto-resume in 0.5s, after putting the run's nets in their safe state\n",
              "fail": "    auto-resume in 0.5s, then pause() raises lager.PauseTimeout\n"}[mode]
    assert banner + expected[0] in result.stderr
    assert "safe state: supply2" not in result.stderr.replace(expected[0], "")  # clean exit
    assert supply(client, "supply2")["enabled"] is (mode != "safe")


def read_directly(state_dir: Path, net: str) -> bool:
    """supply `net`'s output, read with no agent at all: the simulated bench outlives the
    agent, and lager.bench reaches it with the agent's bench file and claims."""
    env = {**os.environ, "LAGER_BENCH_CONFIG": str(state_dir / "bench-simulated.yaml"),
           "LAGER_CLAIMS_DIR": str(state_dir / "claims")}
    env.pop("LAGER_RUN_ID", None)
    code = ("from lager import Net, NetType\n"
            f"with Net.get({net!r}, type=NetType.PowerSupply) as n:\n"
            "    print(n.read_state().enabled)\n")
    out = subprocess.run([str(Path(os.sys.executable)), "-c", code], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "True"


def test_safe_state_after_an_agent_crash(tmp_path: Path) -> None:
    """SIGKILL the agent while the script holds an enabled supply; the run then ends badly
    while no agent runs; the next agent start puts the supply in its safe state."""
    box = start_agent(tmp_path / "state")
    again = None
    try:
        laptop = make_client(tmp_path / "laptop", box)
        script = write_script(tmp_path, "crash.py", ENABLE_AND_HOLD.format(
            net="supply2", then="time.sleep(120)"))
        run = start_run(laptop, script)
        run.out.wait_for("holding True")
        run_id = run_id_of(laptop, script)
        script_pid = next(r for r in json.loads(laptop.run("python", "--list", "--json").stdout)
                          if r["id"] == run_id)["pid"]
        assert script_pid in pids_with_env(run_id)
        box.proc.send_signal(signal.SIGKILL)
        box.proc.wait()
        run.proc.kill()  # its connection died with the agent
        run.proc.wait()
        os.kill(script_pid, signal.SIGTERM)  # it ends badly, and no agent is there to see it
        monitor_dir = tmp_path / "state" / "runs" / f"{run_id}.monitor"
        wait_for(lambda: (monitor_dir / "status.json").exists(), 30, what="the run's end")
        assert json.loads((monitor_dir / "status.json").read_text())["status"] == 143
        assert read_directly(tmp_path / "state", "supply2") is True  # still on: nobody acted

        again = start_agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
        assert supply(laptop, "supply2")["enabled"] is False
        row = next(r for r in json.loads(laptop.run("python", "--list", "--json").stdout)
                   if r["id"] == run_id)
        assert row["exit_code"] == 143
        attach = laptop.run("python", "--reattach", run_id)
        assert attach.returncode == 143
        assert attach.stderr.endswith("lager: safe state: supply2 off\n")
        assert f"run {run_id} exited with 143; safe state: supply2 off" in again.log()
        # Applied once: a later start finds it done and leaves the bench alone.
        turn_on(laptop, "supply2")
        again.stop(keep_runs=True)
        again = start_agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
        assert supply(laptop, "supply2")["enabled"] is True
    finally:
        if again is not None:
            again.stop()
        box.stop()
