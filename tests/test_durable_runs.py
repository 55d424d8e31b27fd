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
    start_agent,
    start_run,
    wait_for,
    write_script,
)
from sshclients import paramiko_connect

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
    out = "".join(f"out {i:05d} " + "x" * 40 + "\n" for i in range(4000)) + "END\n"
    err = "".join(f"err {i:05d}\n" for i in range(0, 4000, 400))
    return out, err


def rows(client: Client) -> dict[str, dict]:
    listed = client.run("python", "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {r["id"]: r for r in json.loads(listed.stdout)}


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
    pauser = write_script(tmp_path, "pauser.py", "import sys\nfrom lager import pause\n"
                          "print('before', flush=True)\n"
                          "pause(sys.argv[1], timeout=0, interactive=True)\nprint('after')\n")
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
        before = rows(laptop)
        assert len(before) == 5

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
        after = rows(laptop)
        assert set(after) == set(before)
        states = {run_id: row["state"] for run_id, row in after.items()}
        by_script = {}
        for row in after.values():
            by_script.setdefault(row["script"].rsplit("/", 1)[-1], []).append(row)
        assert [r["state"] for r in by_script["pauser.py"]] == ["paused", "paused"], states
        assert by_script["finished.py"][0]["exit_code"] == 3
        # The paused runs resume, one after its console was lost with the old agent.
        for ident in paused_ids:
            assert laptop.run("python", "--continue", ident).returncode == 0
        out, err = expected_streamer()
        for row in by_script["streamer.py"]:
            wait_for(lambda row=row: rows(laptop)[row["id"]]["state"] == "exited", 30,
                     what="a streamer to finish")
            attach = laptop.run("python", "--reattach", row["id"])
            assert attach.returncode == 0
            assert attach.stdout == out and attach.stderr == err
        for row in by_script["pauser.py"]:
            wait_for(lambda row=row: rows(laptop)[row["id"]]["exit_code"] == 0, 30,
                     what="a resumed run to finish")
            attach = laptop.run("python", "--reattach", row["id"])
            assert attach.stdout == "before\nafter\n"
    finally:
        again.stop()


def test_a_reattach_after_a_killed_client_is_byte_identical(client: Client,
                                                            tmp_path: Path) -> None:
    go = tmp_path / "go"
    run = start_run(client, write_script(tmp_path, "s.py", STREAMER), str(go))
    run.out.wait_for("out 02000")
    rows_now = rows(client)
    run_id = next(r["id"] for r in rows_now.values() if r["state"] == "running"
                  and r["script"].endswith("s.py"))
    run.proc.kill()
    run.proc.wait()
    go.write_text("go")
    wait_for(lambda: rows(client)[run_id]["state"] == "exited", 30, what="the run to finish")
    attach = client.run("python", "--reattach", run_id)
    assert (attach.stdout, attach.stderr) == expected_streamer()
    assert attach.returncode == 0


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
    paused; continued, the client reconnects if it must, and an Enter resumes the run."""
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
        listed = {r["short_id"]: r["state"] for r in rows(laptop).values()}
        assert listed[ident] == "paused"
    finally:
        run.proc.send_signal(signal.SIGCONT)
    try:
        assert run.proc.stdin is not None
        run.proc.stdin.write("\n")
        run.proc.stdin.flush()
        assert run.finish(60) == 0
        assert run.out.text == "after\n"
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
    run_id = next(r["id"] for r in rows(client).values() if r["script"].endswith("writes.py"))
    later = tmp_path / "later"
    later.mkdir()
    again = subprocess.run([LAGER, "python", "--reattach", run_id, "--box", client.box,
                            "--download", "results.csv"], cwd=later, env=client.env,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert again.returncode == 4 and again.stdout == "wrote\n"
    assert (later / "results.csv").exists()


def test_replace_hands_over_under_a_full_speed_stream_with_no_byte_lost(tmp_path: Path) -> None:
    """`lager-box serve --replace` takes the listening socket and the runs from the running
    agent; the attached client reconnects and the stream it shows is byte-exact."""
    import hashlib
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    go = tmp_path / "go"
    script = write_script(tmp_path, "flood.py", f"""
import hashlib, pathlib, sys, time
h = hashlib.sha256()
for i in range(400):
    block = (f"{{i:08d}}" * 8192).encode()  # 64 KiB a block, 25 MiB in all
    sys.stdout.buffer.write(block)
    h.update(block)
    if i == 100:  # hold the stream mid-way until the new agent is up, so the switch is in it
        sys.stdout.flush()
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
sys.stdout.flush()
print(h.hexdigest(), file=sys.stderr)
""")
    # Unbuffered: communicate() below reads the fd itself, and bytes a buffered reader had
    # already taken past our first read would be missing from the comparison.
    proc = subprocess.Popen([LAGER, "python", str(script), "--box", laptop.box], env=laptop.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdout is not None
    first = b""
    while len(first) < 1024 * 1024:  # streaming at full speed now
        first += proc.stdout.read(1024 * 1024 - len(first))
    new = start_agent(tmp_path / "state", "--replace", listen="127.0.0.1:0")
    go.write_text("go")
    try:
        assert new.port == box.port  # the very same listening socket
        rest, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        out = first + rest
        assert len(out) == 400 * 64 * 1024
        assert hashlib.sha256(out).hexdigest() in err.decode()
        assert b"reconnected" in err  # it did move from the old agent to the new one
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
