"""Runs whose monitor died, and runs a client gave up on (issue 11's remaining gaps).

A box that reboots (or an agent SIGKILLed, then the monitor and its script killed) leaves a run
with no exit recorded: it is `lost`, its output on disk is still whole, and every command says
so in words. A client that gives up reconnecting names the run to reattach."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import (
    Agent,
    Client,
    StreamReader,
    descendants_of,
    make_client,
    numbered_output,
    pids_with_cmdline,
    runs_by_id,
    script_gated_on_a_file,
    start_agent,
    start_run,
    wait_for,
    write_script,
)
from holding_proxy import HoldingProxy
from test_fleet_rig import start_rig


class Leftovers:
    """What a test started, ended at teardown even when it fails half-way: agents (with the
    runs their state dirs hold) and client processes (one may be reconnecting for minutes)."""

    def __init__(self) -> None:
        self.agents: list[Agent] = []
        self.procs: list[subprocess.Popen[str]] = []

    def agent(self, state_dir: Path, *extra: str, listen: str = "127.0.0.1:0") -> Agent:
        started = start_agent(state_dir, *extra, listen=listen)
        self.agents.append(started)
        return started

    def end(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for agent in self.agents:
            agent.stop()


@pytest.fixture
def left() -> Iterator[Leftovers]:
    tracked = Leftovers()
    yield tracked
    tracked.end()


# Output on both streams, then it waits for ever: only a kill ends it.
WAITER = """
import sys, time
for i in range(300):
    print(f"out {i:04d} " + "y" * 30)
    if i % 50 == 0:
        print(f"err {i:04d}", file=sys.stderr)
sys.stdout.flush()
sys.stderr.flush()
print("all written", flush=True)
while True:
    time.sleep(1)
"""


def waiter_output() -> tuple[str, str]:
    return numbered_output(300, 4, "y" * 30, 50, "all written")


def kill_tree(pid: int) -> None:
    for each in [pid, *descendants_of(pid)]:
        try:
            os.kill(each, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_monitor_and_script(run_id: str, script_pid: int) -> None:
    """What a reboot does to a run: its monitor dies first, with no word to anyone, and the
    script goes too (killed before the monitor could see it end and record its status)."""
    monitors = pids_with_cmdline(f"{run_id}.monitor")
    assert monitors, "the run's monitor is not running"
    os.kill(script_pid, signal.SIGSTOP)  # it cannot exit (and be recorded) in between
    for pid in monitors:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pids_with_cmdline(f"{run_id}.monitor"), 20, what="the monitor gone")
    kill_tree(script_pid)


def started_waiter(laptop: Client, tmp_path: Path, left: Leftovers) -> tuple[str, int]:
    """A run of WAITER whose output is all on the box's disk: the client showed it."""
    run = start_run(laptop, write_script(tmp_path, "waiter.py", WAITER))
    left.procs.append(run.proc)
    run.out.wait_for("all written\n")
    row = next(r for r in runs_by_id(laptop).values() if r["script"].endswith("waiter.py"))
    run.proc.kill()  # the laptop goes too; the run goes on without it
    run.proc.wait()
    return row["id"], int(row["pid"])


@pytest.mark.parametrize("monitor", ["c", "python"])
def test_a_rebooted_box_lists_the_run_lost_and_reattach_gives_its_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor: str,
        left: Leftovers) -> None:
    if monitor == "python":  # the fallback monitor leaves the same files behind
        monkeypatch.setenv("LAGER_BOX_PYTHON_MONITOR", "1")
    box = left.agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    run_id, script_pid = started_waiter(laptop, tmp_path, left)
    python_monitors = pids_with_cmdline(f"{run_id}.monitor", "-m\x00box_agent.monitor")
    assert bool(python_monitors) == (monitor == "python")  # the monitor this case is about
    box.proc.send_signal(signal.SIGKILL)
    box.proc.wait()
    kill_monitor_and_script(run_id, script_pid)
    again = left.agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        row = runs_by_id(laptop)[run_id]
        assert row["state"] == "lost" and row["exit_code"] is None, row
        human = laptop.run("python", "--list")
        line = next(x for x in human.stdout.splitlines() if x.startswith(row["short_id"]))
        assert "lost (exit code unknown: its monitor died)" in line and "running" not in line

        attach = laptop.run("python", "--reattach", run_id)
        out, err = waiter_output()
        assert attach.stdout == out  # the whole log on disk, not an empty one
        notices = [x for x in attach.stderr.splitlines() if x.startswith("lager:")]
        assert len(notices) == 1 and "was lost" in notices[0] and "unknown" in notices[0], \
            attach.stderr
        assert attach.stderr.replace(notices[0] + "\n", "") == err
        assert attach.returncode != 0

        killed = laptop.run("python", "--kill", run_id)
        assert killed.returncode != 0
        assert killed.stderr.count("\n") == 1 and "is lost" in killed.stderr, killed.stderr
        assert "None" not in killed.stderr
        mine = laptop.run("python", "--kill-all", "--yes")  # nothing of ours is running
        assert mine.returncode == 0 and "no runs of yours to stop" in mine.stdout, mine
    finally:
        again.stop()


def test_a_monitor_killed_under_a_live_agent_is_lost_too(tmp_path: Path,
                                                        left: Leftovers) -> None:
    box = left.agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    try:
        run_id, script_pid = started_waiter(laptop, tmp_path, left)
        kill_monitor_and_script(run_id, script_pid)
        wait_for(lambda: runs_by_id(laptop)[run_id]["state"] == "lost", 30,
                 what="the run to be lost")
        attach = laptop.run("python", "--reattach", run_id)
        assert attach.returncode != 0 and attach.stdout == waiter_output()[0]
        assert attach.stderr.count("was lost: its monitor died") == 1, attach.stderr
    finally:
        box.stop()


def test_giving_up_prints_the_command_that_reattaches_the_run(tmp_path: Path,
                                                              left: Leftovers) -> None:
    """One box's copy of the fleet's lost row: the client that gives up reconnecting names
    the run, and the command it prints works once the box is back."""
    box = left.agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    laptop.env["LAGER_RECONNECT_FOR"] = "600"  # the flag wins over the env
    script, gate = script_gated_on_a_file(tmp_path)
    run = start_run(laptop, script, "--reconnect-for", "1")
    left.procs.append(run.proc)
    run.out.wait_for("ready\n")
    box.stop(keep_runs=True)  # the box goes away (an upgrade); the run stays with its monitor
    assert run.finish(60) == 255, run.err.text
    error = [x for x in run.err.text.splitlines() if x.startswith("Error:")]
    assert len(error) == 1 and "gave up reconnecting after 1s" in error[0], run.err.text
    command = re.search(r": (lager python --reattach ([0-9a-f]{16}) --box mybox)$", error[0])
    assert command, error[0]
    again = left.agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        gate.touch()
        words = command.group(1).split()
        assert words[0] == "lager"
        result = laptop.run(*words[1:], box=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "ready\nfinished\n"
        assert runs_by_id(laptop)[command.group(2)]["exit_code"] == 0
    finally:
        again.stop()


@pytest.mark.parametrize("path", ["", "  ", "/etc/passwd", "../x", "logs/../../x"])
def test_a_bad_download_path_is_refused_before_the_run(client: Client, tmp_path: Path,
                                                       path: str) -> None:
    ran = tmp_path / "ran"
    script = write_script(tmp_path, "w.py", f"open({str(ran)!r}, 'w').write('x')\n")
    result = client.run("python", str(script), "--download", "ok.txt", "--download", path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--download" in result.stderr, result.stderr
    assert not ran.exists()  # refused before anything started


def test_reattach_to_an_unknown_id_with_download_says_so_once(client: Client) -> None:
    result = client.run("python", "--reattach", "ffffffff", "--download", "x")
    assert result.returncode != 0
    assert result.stderr.count("no run with id") == 1, result.stderr


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_reconnect_for_takes_seconds(client: Client, tmp_path: Path, value: str) -> None:
    script = write_script(tmp_path, "n.py", "print('ran')\n")
    result = client.run("python", str(script), "--reconnect-for", value)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--reconnect-for" in result.stderr and result.stdout == ""


def test_reconnect_for_goes_with_a_followed_run(client: Client) -> None:
    result = client.run("python", "--list", "--reconnect-for", "5")
    assert result.returncode == 2 and "--reconnect-for goes with" in result.stderr


def test_an_auto_resume_due_while_the_agent_was_down_says_how_long_it_waited(
        tmp_path: Path, left: Leftovers) -> None:
    box = left.agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    script = write_script(tmp_path, "p.py", "from lager import pause\n"
                          "pause('soon', timeout=2)\nprint('after')\n")
    started = laptop.run("python", str(script), "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[2]
    row = wait_for(lambda: (r := runs_by_id(laptop)[run_id])["state"] == "paused" and r, 30,
                   what="the pause")
    box.proc.send_signal(signal.SIGKILL)
    box.proc.wait()
    due = row["pause"]["paused_at"] + 2
    wait_for(lambda: time.time() > due + 3, 30, what="the auto-resume to fall due, and more")
    again = left.agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        wait_for(lambda: runs_by_id(laptop)[run_id]["state"] == "exited", 30,
                 what="the overdue run to resume and end")
        attach = laptop.run("python", "--reattach", run_id)
        assert attach.returncode == 0 and attach.stdout == "after\n", attach.stderr
        line = re.search(r"^=== auto-resumed after ([\d.]+)s \(the 2s auto-resume fell due "
                         r"while the box's agent was down\)$", attach.stderr, re.M)
        assert line, attach.stderr
        assert float(line.group(1)) >= 5  # the real wait, not the 2s it was given
    finally:
        again.stop()


def test_a_cut_network_reconnects_and_goes_on_byte_exact_with_its_pause(
        tmp_path: Path, left: Leftovers) -> None:
    """The TCP link is cut (both ends see it go, as when Wi-Fi drops and the box notices)
    while the run streams and again while it is paused: the client reconnects each time, and
    what it shows is the run's output exactly; an Enter resumes the pause over the new link."""
    box = left.agent(tmp_path / "state")
    proxy = HoldingProxy((box.host, box.port))
    try:
        laptop = make_client(tmp_path / "laptop", replace(box, port=proxy.port))
        gate = tmp_path / "go"
        script = write_script(tmp_path, "cut.py", f"""
import os, sys, time
from lager import pause
for i in range(2000):
    print(f"out {{i:05d}} " + "c" * 50)
    if i % 200 == 0:
        print(f"err {{i:05d}}", file=sys.stderr)
    if i == 1000:
        sys.stdout.flush()
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
pause("cut again", timeout=0)
print("after")
""")
        run = start_run(laptop, script)
        left.procs.append(run.proc)
        run.out.wait_for("out 01000")
        proxy.cut_all()
        run.err.wait_for("reconnected to mybox")
        gate.touch()
        run.banner_id()
        proxy.cut_all()
        wait_for(lambda: run.err.text.count("reconnected to mybox") == 2, 60,
                 what="the second reconnect")
        assert run.proc.stdin is not None
        run.proc.stdin.write("\n")
        run.proc.stdin.flush()
        assert run.finish(60) == 0, run.err.text
        out = "".join(f"out {i:05d} " + "c" * 50 + "\n" for i in range(2000)) + "after\n"
        assert run.out.text == out
        err_lines = run.err.text.splitlines()
        assert [x for x in err_lines if x.startswith("err ")] == \
            [f"err {i:05d}" for i in range(0, 2000, 200)]
        assert sum("lost; reconnecting" in x for x in err_lines) == 2, run.err.text
        assert run.err.text.count("=== lager breakpoint") == 1  # the banner once, not again
        assert run.err.text.count("=== resumed") == 1
    finally:
        proxy.close()
        box.stop()


def test_a_fleet_takes_reconnect_for_too(tmp_path: Path) -> None:
    """--reconnect-for on a set: each box waits that long (not the env's 600 s), and the box
    that stays away is `lost` with its reattach command."""
    rig = start_rig(tmp_path / "rig", 2)
    try:
        gate = tmp_path / "go"
        script = write_script(tmp_path, "gated.py", "import os, time\nprint('ready', "
                              f"flush=True)\nwhile not os.path.exists({str(gate)!r}):\n"
                              "    time.sleep(0.05)\nprint('finished')\n")
        rig.laptop.env["LAGER_RECONNECT_FOR"] = "600"
        bad = rig.laptop.run("python", str(script), "--box", "bench[01-02]",
                             "--reconnect-for", "soon")
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        proc = rig.laptop.popen("python", str(script), "--box", "bench[01-02]",
                                "--reconnect-for", "1")
        out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
        try:
            wait_for(lambda: out.text.count("ready") == 2, 60, what="both runs ready")
            rig.agents["bench02"].stop(keep_runs=True)
            err.wait_for("bench02: lost: ", 60)
            gate.touch()
            assert proc.wait(60) == 255, err.text
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert re.search(r"^bench02 +lost .*lager python --reattach [0-9a-f]{16} --box bench02",
                         err.join(), re.M), err.text
    finally:
        rig.stop()


def _logged(box: Agent, run_id: str, needle: bytes) -> bool:
    """Whether the run's log on the box's disk holds needle yet (the monitor wrote it)."""
    return any(needle in seg.read_bytes()
               for seg in (box.state_dir / "runs").glob(f"{run_id}*/log.*"))


@pytest.mark.parametrize("monitor", ["c", "python"])
def test_output_logged_after_the_monitor_s_last_report_is_not_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor: str,
        left: Leftovers) -> None:
    """The monitor reports new output one report at a time (the next waits for the agent's
    answer). With the agent stopped, `second` is reported and `third` only logged; then the
    monitor dies. The agent, continued, must serve `third` from the disk too: the attached
    client shows it, and so does a --reattach."""
    if monitor == "python":
        monkeypatch.setenv("LAGER_BOX_PYTHON_MONITOR", "1")
    box = left.agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    gates = [tmp_path / "gate1", tmp_path / "gate2"]
    script = write_script(tmp_path, "three.py", (
        "import os, time\nprint('first', flush=True)\n"
        f"for word, gate in (('second', {str(gates[0])!r}), ('third', {str(gates[1])!r})):\n"
        "    while not os.path.exists(gate):\n        time.sleep(0.02)\n"
        "    print(word + '-logged', flush=True)\n"
        "while True:\n    time.sleep(1)\n"))
    run = start_run(laptop, script)
    left.procs.append(run.proc)
    run.out.wait_for("first\n")
    row = next(r for r in runs_by_id(laptop).values() if r["script"].endswith("three.py"))
    run_id, script_pid = row["id"], int(row["pid"])
    box.proc.send_signal(signal.SIGSTOP)
    try:
        for gate, word in zip(gates, (b"second-logged", b"third-logged"), strict=True):
            gate.touch()
            wait_for(lambda: _logged(box, run_id, word), 30,  # noqa: B023
                     what=f"{word!r} in the run's log")
        kill_monitor_and_script(run_id, script_pid)
    finally:
        box.proc.send_signal(signal.SIGCONT)
    assert run.finish(60) != 0
    assert run.out.text == "first\nsecond-logged\nthird-logged\n", run.out.text
    wait_for(lambda: runs_by_id(laptop)[run_id]["state"] == "lost", 30, what="lost")
    attach = laptop.run("python", "--reattach", run_id)
    assert attach.stdout == "first\nsecond-logged\nthird-logged\n", attach.stdout
