"""Runs outlive their connections and the agent (issue 11): the box's restart, SIGKILL
included, loses no run, no pause and no byte of output."""
from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import (
    LAGER,
    Client,
    LiveRun,
    make_client,
    numbered_output,
    pids_with_cmdline,
    pids_with_env,
    runs_by_id,
    start_agent,
    start_run,
    wait_for,
    write_script,
)
from sshclients import paramiko_connect

from lager import protocol

# Deterministic output on both streams, with a pause in the middle of the stream so the agent
# can be killed while it is flowing.
STREAMER = """
import sys, time, pathlib
for i in range(4000):
    print(f"out {i:05d} " + "x" * 40)
    if i % 400 == 0:
        print(f"err {i:05d}", file=sys.stderr)
    if i == 2000:
        sys.stdout.flush()
        while not pathlib.Path(sys.argv[1]).exists():
            time.sleep(0.05)
print("END")
"""


def expected_streamer() -> tuple[str, str]:
    return numbered_output(4000, 5, "x" * 40, 400, "END")


def holders(client: Client) -> dict[str, str]:
    """net -> the id of the run holding its instrument, for every held net."""
    listed = client.run("nets", "--json")
    assert listed.returncode == 0, listed.stderr
    return {r["name"]: r["held_by"]["run_id"] for r in json.loads(listed.stdout)
            if r["held_by"]}


def console_open(client: Client, short_id: str):
    ssh = paramiko_connect(client)
    chan = ssh.get_transport().open_session()  # type: ignore[union-attr]
    chan.invoke_subsystem("console")
    chan.sendall((short_id + "\n").encode())
    return ssh, chan


def test_sigkilled_agent_keeps_five_runs(tmp_path: Path) -> None:
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    go = tmp_path / "go"
    pauser = write_script(tmp_path, "pauser.py", """
import sys
from lager import Net, NetType, pause
if sys.argv[1] == "p0":  # each paused run holds a claim on an instrument across the crash
    Net.get("supply2", type=NetType.PowerSupply).state()
else:
    Net.get("adc4", type=NetType.ADC).input()
print('before', flush=True)
pause(sys.argv[1], timeout=0, interactive=True)
print('after')
""")
    streamer = write_script(tmp_path, "streamer.py", STREAMER)
    finished = write_script(tmp_path, "finished.py", "import sys\nprint('done')\nsys.exit(3)\n")

    paused: list[LiveRun] = [start_run(laptop, pauser, f"p{i}") for i in range(2)]
    paused_ids = [run.banner_id() for run in paused]
    streaming = [start_run(laptop, streamer, str(go)) for _ in range(2)]
    for run in streaming:
        run.out.wait_for("out 02000")
    assert laptop.run("python", str(finished)).returncode == 3
    ssh, chan = console_open(laptop, paused_ids[0])  # a console open across the crash
    try:
        wait_for(lambda: chan.recv_ready(), 10, what="the console prompt")
        before = runs_by_id(laptop)
        assert len(before) == 5
        claims_before = holders(laptop)
        assert set(claims_before) == {"supply2", "supply3", "adc4"}  # supply3: supply2's box

        box.proc.send_signal(signal.SIGKILL)
        box.proc.wait()
        for run in paused + streaming:
            run.proc.kill()  # their connections died with the agent; nobody reattaches them
            run.proc.wait()
        go.write_text("go")  # the streamers write the rest of their output with no agent
        again = start_agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    finally:
        ssh.close()
    try:
        after = runs_by_id(laptop)
        assert set(after) == set(before)
        states = {run_id: row["state"] for run_id, row in after.items()}
        by_script = {}
        for row in after.values():
            by_script.setdefault(row["script"].rsplit("/", 1)[-1], []).append(row)
        assert [r["state"] for r in by_script["pauser.py"]] == ["paused", "paused"], states
        assert by_script["finished.py"][0]["exit_code"] == 3
        assert holders(laptop) == claims_before  # the claims stayed with the paused runs
        # The paused runs resume, one after its console was lost with the old agent.
        for ident in paused_ids:
            assert laptop.run("python", "--continue", ident).returncode == 0
        out, err = expected_streamer()
        for row in by_script["streamer.py"]:
            wait_for(lambda row=row: runs_by_id(laptop)[row["id"]]["state"] == "exited", 30,
                     what="a streamer to finish")
            attach = laptop.run("python", "--reattach", row["id"])
            assert attach.returncode == 0
            assert attach.stdout == out and attach.stderr == err
        for row in by_script["pauser.py"]:
            wait_for(lambda row=row: runs_by_id(laptop)[row["id"]]["exit_code"] == 0, 30,
                     what="a resumed run to finish")
            attach = laptop.run("python", "--reattach", row["id"])
            assert attach.stdout.endswith("before\nafter\n")  # after what state() printed
        # Nothing is left behind: no claim, no script, no monitor of any of the five.
        assert holders(laptop) == {}
        for run_id in after:
            wait_for(lambda run_id=run_id: not pids_with_env(f"{protocol.ENV_RUN_ID}={run_id}")
                     and not pids_with_cmdline(f"{run_id}.monitor"), 30,
                     what=f"run {run_id}'s processes to be gone")
    finally:
        again.stop()


# Both streams, 20 MiB of stdout, and a gate half-way so the client is surely killed while
# the run is still streaming (it cannot get past the gate before the test opens it).
FLOOD = """
import pathlib, sys, time
body = bytes(range(256)) * 256  # 64 KiB; each block starts with its number
for i in range(320):
    sys.stdout.buffer.write(f"{i:08d}".encode() + body[8:])
    if i % 32 == 0:
        sys.stderr.write(f"err {i}\\n")
    if i == 160:
        sys.stdout.flush()
        while not pathlib.Path(sys.argv[1]).exists():
            time.sleep(0.01)
print("END")
"""


def test_a_reattach_after_a_killed_client_is_byte_identical(client: Client,
                                                            tmp_path: Path) -> None:
    """The client is SIGKILLed while the run streams: the run completes, and `--reattach`
    gives output byte-identical to the same run that nobody disturbed."""
    script = write_script(tmp_path, "flood.py", FLOOD)
    opened = tmp_path / "open"
    opened.write_text("")
    undisturbed = subprocess.run([LAGER, "python", str(script), str(opened), "--box",
                                  client.box], env=client.env, capture_output=True,
                                 timeout=120, stdin=subprocess.DEVNULL)
    assert undisturbed.returncode == 0 and len(undisturbed.stdout) > 20 * 1024 * 1024

    go = tmp_path / "go"
    proc = subprocess.Popen([LAGER, "python", str(script), str(go), "--box", client.box],
                            env=client.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0)
    assert proc.stdout is not None
    seen = b""
    while len(seen) < 1024 * 1024:  # mid-stream: bytes are flowing to this client now
        seen += proc.stdout.read(1024 * 1024 - len(seen))
    run_id = next(r["id"] for r in runs_by_id(client).values() if r["state"] == "running"
                  and r["script"].endswith("flood.py"))
    proc.kill()
    proc.wait()
    go.write_text("go")
    wait_for(lambda: runs_by_id(client)[run_id]["state"] == "exited", 60, what="the run to finish")
    assert runs_by_id(client)[run_id]["exit_code"] == 0
    attach = subprocess.run([LAGER, "python", "--reattach", run_id, "--box", client.box],
                            env=client.env, capture_output=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert attach.returncode == 0
    assert attach.stdout == undisturbed.stdout
    assert attach.stderr == undisturbed.stderr
    assert undisturbed.stdout.startswith(seen)


def test_the_client_reconnects_across_an_agent_restart_byte_exact(tmp_path: Path) -> None:
    """The agent dies mid-stream; the attached `lager python` says so in one line, waits,
    reconnects to the restarted agent and goes on at the exact byte: no gap, no duplicate."""
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    go = tmp_path / "go"
    run = start_run(laptop, write_script(tmp_path, "s.py", STREAMER), str(go))
    run.out.wait_for("out 02000")
    box.proc.send_signal(signal.SIGKILL)
    box.proc.wait()
    run.err.wait_for("lost; reconnecting")
    go.write_text("go")
    again = start_agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        assert run.finish(60) == 0
        out, err = expected_streamer()
        assert run.out.text == out
        notices = [line for line in run.err.text.splitlines() if line.startswith("lager:")]
        assert run.err.text.replace("".join(n + "\n" for n in notices), "") == err
        assert len(notices) == 2 and "reconnected" in notices[1], notices
    finally:
        again.stop()


def test_enter_typed_while_the_link_is_down_resumes_once_it_is_back(tmp_path: Path) -> None:
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    script = write_script(tmp_path, "p.py", "from lager import pause\nprint('before', flush=True)"
                          "\npause('wait', timeout=0)\nprint('after')\n")
    run = start_run(laptop, script)
    run.banner_id()
    box.proc.send_signal(signal.SIGKILL)
    box.proc.wait()
    run.err.wait_for("lost; reconnecting")
    assert run.proc.stdin is not None
    run.proc.stdin.write("\n")
    run.proc.stdin.flush()
    again = start_agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        assert run.finish(60) == 0
        assert run.out.text == "before\nafter\n"
    finally:
        again.stop()


@pytest.mark.timeout(300)
def test_a_stopped_laptop_finds_its_pause_still_waiting(tmp_path: Path) -> None:
    """The client is SIGSTOPped for 120 s (a closed lid) while its run is paused: the run stays
    paused; continued, the client reconnects, and an Enter resumes the run."""
    import time
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    script = write_script(tmp_path, "lid.py", "from lager import pause\n"
                          "pause('lid', timeout=0)\nprint('after')\n")
    run = start_run(laptop, script)
    ident = run.banner_id()
    run.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(120)  # the figure: longer than the box's keepalive gives a client
        listed = {r["short_id"]: r["state"] for r in runs_by_id(laptop).values()}
        assert listed[ident] == "paused"
    finally:
        run.proc.send_signal(signal.SIGCONT)
    try:
        # Enter the instant the lid opens, before the client has noticed that the box dropped
        # its link: the write into the dead socket fails (paramiko raises EOFError there), and
        # the Enter must still reach the run once the client has reconnected.
        assert run.proc.stdin is not None
        run.proc.stdin.write("\n")
        run.proc.stdin.flush()
        try:
            code = run.finish(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the continued client did not finish: {run.err.text!r}") \
                from None
        assert code == 0, run.err.text
        assert "reconnected" in run.err.text and "Traceback" not in run.err.text, run.err.text
        assert run.out.text == "after\n"
        # The box gave up on the silent client long before 120 s (keepalive: 4 x 15 s), so
        # the continued client found its connection gone and reconnected (asserted above).
    finally:
        box.stop()


def test_download_fetches_what_the_run_wrote_and_follows_no_link(client: Client,
                                                                 tmp_path: Path) -> None:
    script = write_script(tmp_path, "writes.py", f"""
import os, pathlib, sys
pathlib.Path("results.csv").write_text("v,i\\n3.3,0.33\\n")
os.makedirs("logs/deep", exist_ok=True)
pathlib.Path("logs/a.txt").write_text("a")
pathlib.Path("logs/deep/b.bin").write_bytes(bytes(range(256)) * 1000)
os.symlink({str(client.agent.state_dir / "ssh_host_ed25519_key")!r}, "key")
os.symlink("/etc", "logs/etc")
print("wrote")
sys.exit(4)
""")
    here = tmp_path / "laptop-cwd"
    here.mkdir()
    result = subprocess.run(
        [LAGER, "python", str(script), "--box", client.box, "--download", "results.csv",
         "--download", "logs/", "--download", "key", "--download", "nope.txt"],
        cwd=here, env=client.env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert result.returncode == 4, result.stderr  # the run's own code stands
    assert (here / "results.csv").read_text() == "v,i\n3.3,0.33\n"
    assert (here / "logs" / "a.txt").read_text() == "a"
    assert (here / "logs" / "deep" / "b.bin").read_bytes() == bytes(range(256)) * 1000
    assert not (here / "key").exists() and not (here / "logs" / "etc").exists()
    problems = [line for line in result.stderr.splitlines() if "download" in line]
    assert len(problems) == 2 and "Traceback" not in result.stderr, result.stderr
    assert any("key" in p and "link" in p for p in problems)
    assert any("nope.txt" in p and "no such file" in p for p in problems)
    # A finished run, later, through --reattach.
    run_id = next(r["id"] for r in runs_by_id(client).values() if r["script"].endswith("writes.py"))
    later = tmp_path / "later"
    later.mkdir()
    again = subprocess.run([LAGER, "python", "--reattach", run_id, "--box", client.box,
                            "--download", "results.csv"], cwd=later, env=client.env,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert again.returncode == 4 and again.stdout == "wrote\n"
    assert (later / "results.csv").exists()


def test_replace_hands_over_under_a_full_speed_stream_with_no_byte_lost(tmp_path: Path) -> None:
    """`lager-box serve --replace` takes the listening socket and the runs from the running
    agent while a script writes as fast as it can, through the whole hand-over (it stops only
    once the new agent is up); the attached client reconnects and the stream it shows is
    byte-exact, however far the script got while the client was away."""
    import hashlib
    import threading
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    stop = tmp_path / "stop"
    script = write_script(tmp_path, "flood.py", f"""
import hashlib, pathlib, sys
h, total, stop = hashlib.sha256(), 0, pathlib.Path({str(stop)!r})
body = bytes(range(256)) * 4096  # 1 MiB; each block starts with its number
i = 0
while i % 4 or not stop.exists():  # no pause, no gate: full speed until told
    block = f"{{i:08d}}".encode() + body[8:]
    sys.stdout.buffer.write(block)
    h.update(block)
    total += len(block)
    i += 1
sys.stdout.flush()
print(h.hexdigest(), total, file=sys.stderr)
""")
    proc = subprocess.Popen([LAGER, "python", str(script), "--box", laptop.box], env=laptop.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdout is not None and proc.stderr is not None
    got = hashlib.sha256()
    received = [0]
    flowing = threading.Event()

    def read_all() -> None:  # the client's output, taken as fast as it comes
        assert proc.stdout is not None
        while data := proc.stdout.read(1 << 20):
            got.update(data)
            received[0] += len(data)
            if received[0] >= 1 << 20:
                flowing.set()
    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        assert flowing.wait(60), "the stream never got going"
        new = start_agent(tmp_path / "state", "--replace", listen="127.0.0.1:0")
    finally:
        stop.write_text("stop")  # after the hand-over: the script streamed all through it
    try:
        assert new.port == box.port  # the very same listening socket
        reader.join(120)
        err = proc.stderr.read().decode()  # a few lines: they wait in the pipe
        assert proc.wait(30) == 0, err
        digest, total = err.splitlines()[-1].split()
        assert received[0] == int(total)
        assert got.hexdigest() == digest
        assert "reconnected" in err  # it did move from the old agent to the new one
        box.proc.wait(30)  # the old agent went once it had handed over
        assert "handed the listening socket" in box.log()
    finally:
        new.stop()


def test_the_simulated_bench_outlives_the_agent_and_a_watchdog_restarts_it(
        tmp_path: Path) -> None:
    """ISSUE-NOTES 4 and issue 10: a restarted agent adopts the running simulator (its state
    intact); a simulator that really dies is restarted, on the same ports, and the log says so."""
    import os
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    assert laptop.run("supply", "supply2", "voltage", "3.3").returncode == 0
    record = json.loads((tmp_path / "state" / "simbench.json").read_text())
    box.proc.kill()
    box.proc.wait()
    again = start_agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        adopted = json.loads((tmp_path / "state" / "simbench.json").read_text())
        assert adopted == record  # the same process, the same ports
        state = json.loads(laptop.run("supply", "supply2", "state", "--json").stdout)
        assert state["set_voltage"] == 3.3
        os.kill(int(record["pid"]), signal.SIGKILL)
        wait_for(lambda: "simulated bench" in again.log() and "died" in again.log(), 20,
                 what="the watchdog's line")
        def answers() -> bool:
            result = laptop.run("supply", "supply2", "state", "--json")
            return result.returncode == 0
        wait_for(answers, 20, what="the restarted simulator")
        fresh = json.loads((tmp_path / "state" / "simbench.json").read_text())
        assert fresh["pid"] != record["pid"] and fresh["ports"] == record["ports"]
    finally:
        again.stop()
