"""`lager python` runs: streams, exit codes, timeouts, stopping, detaching, bad input."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LAGER, Client, pids_with_env, start_agent, start_run, wait_for, write_script


def test_streams_args_env_and_exit_code(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "t.py", """
import os, sys
print("out", sys.argv[1:], os.environ["GREETING"], os.environ["LAGER_RUN_ID"] != "")
print("err", file=sys.stderr)
print("stdin is", repr(sys.stdin.read()))
sys.exit(7)
""")
    result = client.run("python", str(script), "a", "--b", "--env", "GREETING=hi there")
    assert result.returncode == 7
    assert result.stdout == "out ['a', '--b'] hi there True\nstdin is ''\n"
    assert result.stderr == "err\n"


def test_output_is_live(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "live.py", """
import time
print("first")
time.sleep(30)
""")
    run = start_run(client, script)
    run.out.wait_for("first\n", timeout=10)  # long before the script ends
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130


def test_signal_death_is_128_plus_n(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "k.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert client.run("python", str(script)).returncode == 128 + 9


def test_syntax_error_shows_python_traceback(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "bad.py", "print('x'\n")
    result = client.run("python", str(script))
    assert result.returncode == 1
    assert "SyntaxError" in result.stderr and "bad.py" in result.stderr


def test_binary_output_is_byte_exact(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "bin.py", """
import sys
sys.stdout.buffer.write(bytes(range(256)) * 4096)
sys.stderr.buffer.write(b"\\xff\\xfe junk \\x00\\n")
""")
    result = subprocess.run([LAGER, "python", str(script), "--box", "mybox"], env=client.env,
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0
    assert result.stdout == bytes(range(256)) * 4096
    assert result.stderr == b"\xff\xfe junk \x00\n"


def test_directory_runnable_and_add_file(client: Client, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    write_script(proj, "main.py", "import helper, pathlib\nprint(helper.X, pathlib.Path('data.txt').read_text())\n")
    write_script(proj, "helper.py", "X = 41 + 1\n")
    extra = write_script(tmp_path, "data.txt", "payload")
    result = client.run("python", str(proj), "--add-file", str(extra))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42 payload\n"


@pytest.mark.parametrize("args, needle", [
    (["nope.py"], "script not found: nope.py"),
    (["{script}", "--env", "NOEQUALS"], "must be NAME=VALUE"),
    (["{script}", "--env", "=x"], "not a valid variable name"),
    (["{script}", "--timeout", "-1"], "must be 0 (unlimited) or more"),
    (["{script}", "--timeout", "soon"], "is not a number"),
    (["--continue", "x", "--kill", "y"], "one of --continue"),
])
def test_usage_errors_exit_2_with_one_line(client: Client, tmp_path: Path, args: list[str],
                                           needle: str) -> None:
    script = write_script(tmp_path, "ok.py", "print('never')\n")
    result = client.run("python", *[a.format(script=script) for a in args])
    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_usage_paths_do_not_import_paramiko(client: Client) -> None:
    probe = ("import sys\nfrom client.cli import main\nsys.argv = ['lager'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print('PARAMIKO' if 'paramiko' in sys.modules else 'CLEAN', code)\n")
    for args in (["--help"], ["python", "--help"], ["python", "missing.py", "--box", "mybox"]):
        result = subprocess.run([sys.executable, "-c", probe, *args], env=client.env,
                                capture_output=True, text=True, timeout=30)
        assert result.stdout.strip().splitlines()[-1].startswith("CLEAN"), (args, result)


def test_timeout_interrupts_then_exits_124(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "slow.py", """
import time
try:
    print("working", flush=True)
    time.sleep(60)
finally:
    print("cleanup ran", flush=True)
""")
    result = client.run("python", str(script), "--timeout", "1.5")
    assert result.returncode == 124
    assert "cleanup ran" in result.stdout  # SIGINT first, so finally blocks run
    assert "timed out after 1.5s" in result.stderr


def test_timeout_above_cap_warns_in_one_line(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "quick.py", "print('done')\n")
    result = client.run("python", str(script), "--timeout", "900")
    assert result.returncode == 0
    warnings = [l for l in result.stderr.splitlines() if "capped at 300s" in l]
    assert len(warnings) == 1, result.stderr


def test_ctrl_c_interrupts_script_and_finally_runs(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "cc.py", """
import time
try:
    print("ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    print("got ctrl-c", flush=True)
    raise SystemExit(5)
""")
    run = start_run(client, script)
    run.out.wait_for("ready")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 5
    assert "got ctrl-c" in run.out.text


def test_killed_client_leaves_the_run_going(client: Client, tmp_path: Path) -> None:
    """Issue 11: only an explicit stop ends a run; a killed client is not one."""
    marker = tmp_path / "finished"
    script = write_script(tmp_path, "gone.py", f"""
import time, pathlib
print("ready", flush=True)
time.sleep(2)
pathlib.Path({str(marker)!r}).write_text("yes")
""")
    run = start_run(client, script)
    run.out.wait_for("ready")
    run.proc.kill()
    run.proc.wait()
    wait_for(marker.exists, 30, what="the run to finish on its own")

def test_forked_children_end_with_the_run(client: Client, tmp_path: Path) -> None:
    tag = f"LAGER_TEST_CHILD={os.getpid()}{time.time_ns()}"
    script = write_script(tmp_path, "forks.py", f"""
import os, subprocess
env = dict(os.environ); env["{tag.split('=')[0]}"] = "{tag.split('=')[1]}"
subprocess.Popen(["sleep", "300"], env=env)
subprocess.Popen(["sh", "-c", "sleep 300"], env=env)
print("spawned", flush=True)
""")
    result = client.run("python", str(script))
    assert result.returncode == 0 and "spawned" in result.stdout
    wait_for(lambda: not pids_with_env(tag), 10, what="children to be stopped")


def test_detach_list_reattach_and_kill(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "bg.py", """
import time
for i in range(1000):
    print("tick", i, flush=True)
    time.sleep(0.05)
""")
    started = client.run("python", str(script), "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[2]
    assert "lager python --reattach" in started.stdout and "--kill" in started.stdout
    rows = json.loads(client.run("python", "--list", "--json").stdout)
    row = next(r for r in rows if r["id"] == run_id)
    assert row["state"] == "running" and row["script"] == str(script)
    assert row["started_by"]["fingerprint"].startswith("SHA256:")
    human = client.run("python", "--list").stdout
    assert row["short_id"] in human and "running" in human

    attach = client.popen("python", "--reattach", run_id[:6])
    from conftest import StreamReader
    out = StreamReader(attach.stdout)
    out.wait_for("tick 0\n")  # the backlog comes first
    time.sleep(0.3)
    attach.send_signal(signal.SIGINT)  # Ctrl-C on reattach only detaches
    assert attach.wait(10) == 130  # Ctrl-C leaves a watcher with 130 (ISSUE-NOTES 1)
    assert "detached" in attach.stderr.read()

    killed = client.run("python", "--kill", run_id)
    assert killed.returncode == 0, killed.stderr
    wait_for(lambda: next(r for r in json.loads(client.run("python", "--list", "--json").stdout)
                          if r["id"] == run_id)["state"] == "exited", 20, what="kill")
    again = client.run("python", "--kill", run_id)
    assert again.returncode == 1 and "already exited" in again.stderr


def test_kill_with_signal_name(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "sig.py", "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    started = client.run("python", str(script), "--detach")
    run_id = started.stdout.split()[2]
    assert client.run("python", "--kill", run_id, "--signal", "TERM").returncode == 0
    reattached = client.run("python", "--reattach", run_id)
    assert reattached.returncode == 128 + signal.SIGTERM
    bad = client.run("python", "--kill", run_id, "--signal", "NOPE")
    assert bad.returncode == 1


def test_detached_backlog_is_bounded_and_says_what_was_dropped(client: Client,
                                                               tmp_path: Path) -> None:
    script = write_script(tmp_path, "big.py", """
import sys
for i in range(80):
    sys.stdout.write(("%d" % (i % 10)) * (1024 * 1024))
print("END")
""")
    run_id = client.run("python", str(script), "--detach").stdout.split()[2]
    def state() -> str:
        rows = json.loads(client.run("python", "--list", "--json").stdout)
        return next(r["state"] for r in rows if r["id"] == run_id)
    wait_for(lambda: state() == "exited", 60, what="the run to end with nobody reading")
    result = client.run("python", "--reattach", run_id)
    assert result.returncode == 0
    assert result.stdout.endswith("END\n")
    dropped = re.search(r"\[(\d+) bytes of earlier output were dropped", result.stderr)
    assert dropped, result.stderr
    # The box keeps the newest 64 MiB (give or take a segment); what it says it dropped and
    # what it sent add up to everything the script wrote.
    assert len(result.stdout) <= 72 * 1024 * 1024
    assert int(dropped.group(1)) + len(result.stdout) == 80 * 1024 * 1024 + 4


def test_unknown_and_ambiguous_ids(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "q.py", "print(1)\n")
    for _ in range(17):  # 17 runs: two must share a first hex digit
        client.run("python", str(script), "--detach")
    rows = json.loads(client.run("python", "--list", "--json").stdout)
    firsts = [r["id"][0] for r in rows]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    amb = client.run("python", "--reattach", shared)
    assert amb.returncode == 1 and "ambiguous" in amb.stderr
    unknown = client.run("python", "--kill", "notanid")
    assert unknown.returncode == 1 and "no run with id" in unknown.stderr


def test_unknown_box_and_box_down(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "x.py", "print(1)\n")
    result = subprocess.run([LAGER, "python", str(script), "--box", "nosuch"], env=client.env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "unknown box 'nosuch'" in result.stderr
    boxes = json.loads((client.config_dir / "boxes.json").read_text())
    boxes["down"] = dict(boxes["mybox"], name="down", port=1)
    (client.config_dir / "boxes.json").write_text(json.dumps(boxes))
    result = subprocess.run([LAGER, "python", str(script), "--box", "down"], env=client.env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 255 and "refused the connection" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unauthorized_key_is_refused(agent, tmp_path: Path) -> None:
    from conftest import make_client
    stranger = make_client(tmp_path / "stranger", agent, authorize=False)
    result = stranger.run("python", "--list")
    assert result.returncode == 255
    assert "refused key" in result.stderr and "lager-box authorize" in result.stderr


def test_changed_host_key_is_refused_and_repin_works(tmp_path: Path) -> None:
    from conftest import make_client
    first = start_agent(tmp_path / "state1")
    try:
        laptop = make_client(tmp_path / "laptop", first)
        assert laptop.run("python", "--list").returncode == 0
    finally:
        first.stop()
    reinstalled = start_agent(tmp_path / "state2", listen=f"127.0.0.1:{first.port}")
    try:
        result = laptop.run("python", "--list")
        assert result.returncode == 255
        assert "HOST KEY CHANGED" in result.stderr and "--repin" in result.stderr
        add = laptop.run("boxes", "add", "mybox", "--host", "127.0.0.1", "--port",
                         str(first.port), box=False)
        assert add.returncode == 255  # add refuses too, without --repin
        repin = laptop.run("boxes", "add", "mybox", "--host", "127.0.0.1", "--port",
                           str(first.port), "--repin", box=False)
        assert repin.returncode == 0 and reinstalled.fingerprint in repin.stdout
    finally:
        reinstalled.stop()


def test_agent_sigterm_leaves_runs_to_the_next_agent(tmp_path: Path) -> None:
    """Issue 11: a graceful restart (SIGTERM, then start) keeps every run, and nothing the
    run started is orphaned when it finally ends."""
    from conftest import make_client
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    marker = tmp_path / "finally"
    tag = f"LAGER_TEST_ORPHAN={time.time_ns()}"
    script = write_script(tmp_path, "long.py", f"""
import os, subprocess, time, pathlib
env = dict(os.environ); env["{tag.split('=')[0]}"] = "{tag.split('=')[1]}"
subprocess.Popen(["sleep", "300"], env=env)
print("up", flush=True)
try:
    time.sleep(300)
finally:
    pathlib.Path({str(marker)!r}).write_text("ran")
""")
    run_id = laptop.run("python", str(script), "--detach").stdout.split()[2]
    wait_for(lambda: pids_with_env(tag), 10, what="the run's child")
    assert box.stop(keep_runs=True) == 0
    assert pids_with_env(run_id) and not marker.exists()  # untouched by the restart
    again = start_agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        rows = json.loads(laptop.run("python", "--list", "--json").stdout)
        assert [r["state"] for r in rows if r["id"] == run_id] == ["running"]
        assert laptop.run("python", "--kill", run_id).returncode == 0
        wait_for(marker.exists, 15, what="the finally block")
        wait_for(lambda: not pids_with_env(tag) and not pids_with_env(run_id), 10,
                 what="no orphans")
        attach = laptop.run("python", "--reattach", run_id)
        assert attach.stdout == "up\n" and attach.returncode == 130, attach
    finally:
        again.stop()


def agent_rss_kb(agent) -> int:
    for line in Path(f"/proc/{agent.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_one_gigabyte_of_output_streams_with_bounded_agent_memory(client: Client,
                                                                  tmp_path: Path) -> None:
    script = write_script(tmp_path, "flood.py", """
import sys
chunk = b"y" * (1 << 20)
for _ in range(1280):  # past 1 GiB, so the box rekeys mid-stream
    sys.stdout.buffer.write(chunk)
""")
    before = agent_rss_kb(client.agent)
    out = tmp_path / "out.bin"
    with open(out, "wb") as sink:
        result = subprocess.run([LAGER, "python", str(script), "--box", "mybox"],
                                env=client.env, stdout=sink, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, timeout=300)
    code, err = result.returncode, result.stderr[-2000:]
    assert code == 0, f"exit {code}: {err}"
    size = out.stat().st_size
    assert size == 1280 << 20, f"received {size} bytes, {(1280 << 20) - size} missing"
    # The agent never held the stream: its resident memory grows by a small fraction of 1 GB
    # (allocator slack from earlier tests varies, hence the generous bound).
    grown = agent_rss_kb(client.agent) - before
    assert grown < 256 * 1024, f"agent RSS grew by {grown} KiB"


def test_a_client_that_stops_reading_stalls_the_script_not_the_box(client: Client,
                                                                   tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    script = write_script(tmp_path, "writer.py", f"""
import sys
chunk = b"z" * (1 << 20)
for i in range(400):
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    open({str(progress)!r}, "w").write(str(i))
""")
    proc = subprocess.Popen([LAGER, "python", str(script), "--box", "mybox"], env=client.env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    wait_for(progress.exists, what="the script to start writing")
    os.kill(proc.pid, signal.SIGSTOP)  # a laptop that stops reading (Ctrl-Z, a stuck pipe)
    try:
        time.sleep(2)
        stalled_at = int(progress.read_text())
        before = agent_rss_kb(client.agent)
        time.sleep(2)
        assert int(progress.read_text()) == stalled_at  # the script is blocked on its pipe
        assert stalled_at < 100  # after windows and pipes filled, far short of 400 MB
        assert agent_rss_kb(client.agent) - before < 20 * 1024
        # Meanwhile the box serves everyone else.
        assert client.run("python", "--list").returncode == 0
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    total = 0
    while data := proc.stdout.read(1 << 20):  # type: ignore[union-attr]
        total += len(data)
    assert proc.wait(60) == 0 and total == 400 << 20


def test_only_public_key_auth_is_offered(client: Client) -> None:
    from sshclients import openssh
    result = openssh(client, "list", b"", "-o", "PreferredAuthentications=password,"
                     "keyboard-interactive", "-o", "PubkeyAuthentication=no")
    assert result.returncode == 255 and b"Permission denied (publickey)" in result.stderr
    shell = subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
                            "-o", f"UserKnownHostsFile={client.known_hosts}", "-i",
                            str(client.key_path), "-p", str(client.agent.port),
                            f"lab@{client.agent.host}", "id"], capture_output=True, timeout=30)
    assert shell.returncode == 1 and b"does not offer a shell or command" in shell.stderr
    forward = subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
                              "-o", "ExitOnForwardFailure=yes", "-N", "-L", "0:127.0.0.1:22",
                              "-o", f"UserKnownHostsFile={client.known_hosts}", "-i",
                              str(client.key_path), "-p", str(client.agent.port),
                              f"lab@{client.agent.host}"], capture_output=True, timeout=30)
    assert forward.returncode == 255  # no forwarding of any kind


def test_authorize_rejects_junk(tmp_path: Path) -> None:
    from conftest import LAGER_BOX
    result = subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(tmp_path / "s"),
                             "not a key"], capture_output=True, text=True)
    assert result.returncode == 1 and "not an OpenSSH public key" in result.stderr


def test_shell_completion_through_click(client: Client) -> None:
    env = dict(client.env, _LAGER_COMPLETE="bash_complete", COMP_WORDS="lager py", COMP_CWORD="1")
    result = subprocess.run([LAGER], env=env, capture_output=True, text=True, timeout=30)
    assert "plain,python" in result.stdout


def test_malformed_subsystem_requests_get_one_line(client: Client) -> None:
    from sshclients import paramiko_subsystem
    for subsystem, payload, needle in (
            ("run", b"this is not json\n", b"malformed run request"),
            ("run", b'{"main": "../../etc/passwd", "files": []}\n', b"must be relative"),
            ("run", b'{"main": "a.py", "files": [{"path": "a.py", "size": 10}]}\nshort',
             b"upload ended early"),
            ("nets", b"[1, 2]\n", b"malformed nets request"),
            ("kill", b"\n", b"kill wants one line"),
            ("teleport", b"", b"does not offer subsystem 'teleport'")):
        status, out, err = paramiko_subsystem(client, subsystem, payload)
        assert status == 1 and out == b"", (subsystem, err)
        assert needle in err and err.count(b"\n") == 1, (subsystem, err)
    assert client.run("python", "--list").returncode == 0  # and the agent serves on


def test_client_gone_while_paused_leaves_it_paused(client: Client, tmp_path: Path) -> None:
    """Issue 11: a closed laptop lid is not a stop; the pause waits for whoever comes back."""
    script = write_script(tmp_path, "p.py",
                          "from lager import pause\npause('x', timeout=0)\nprint('after')\n")
    run = start_run(client, script)
    ident = run.banner_id()
    run.proc.kill()
    run.proc.wait()

    def state() -> str:
        rows = json.loads(client.run("python", "--list", "--json").stdout)
        return next(r for r in rows if r["short_id"] == ident)["state"]
    assert state() == "paused"
    assert client.run("python", "--continue", ident).returncode == 0
    wait_for(lambda: state() == "exited", 30, what="the resumed run to end")
    assert client.run("python", "--reattach", ident).stdout == "after\n"


def test_stop_on_disconnect_keeps_ssh_hang_up_semantics(client: Client, tmp_path: Path) -> None:
    """A run request with stop_on_disconnect (CI's default) ends when its channel does."""
    from sshclients import paramiko_connect
    marker = tmp_path / "stopped"
    body = (f"import pathlib, time\ntry:\n    time.sleep(120)\nfinally:\n"
            f"    pathlib.Path({str(marker)!r}).write_text('yes')\n").encode()
    header = {"script": "hangup.py", "main": "hangup.py", "args": [], "env": {}, "timeout": 0,
              "detach": False, "stop_on_disconnect": True,
              "files": [{"path": "hangup.py", "size": len(body), "mode": 0o644}]}
    ssh = paramiko_connect(client)
    chan = ssh.get_transport().open_session()  # type: ignore[union-attr]
    chan.invoke_subsystem("run")
    chan.sendall(json.dumps(header).encode() + b"\n" + body)
    wait_for(lambda: any(r["script"] == "hangup.py" and r["state"] == "running" for r in
                         json.loads(client.run("python", "--list", "--json").stdout)),
             20, what="the run to start")
    ssh.close()
    wait_for(marker.exists, 30, what="the run to stop with its channel")


def test_a_killed_agent_leaves_its_scripts_running(tmp_path: Path) -> None:
    """Issues 21 and 11: the agent's death sends the script no signal at all (its monitor
    keeps it); a restarted agent takes it back, and one --kill is exactly one SIGINT, after
    which a slow `finally` (2 s of work, printing as it goes) runs to its end."""
    from conftest import make_client
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    log = tmp_path / "signals"
    script = write_script(tmp_path, "orphan.py", f"""
import pathlib, signal, sys, time
log = pathlib.Path({str(log)!r})
def note(text):
    with log.open("a") as f:
        f.write(text + "\\n")
def on_int(signum, frame):
    note("SIGINT")
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, on_int)
note("up")
try:
    time.sleep(300)
finally:
    for step in range(20):
        print("cleaning", step, flush=True)
        time.sleep(0.1)
    note("finally done")
""")
    run_id = laptop.run("python", str(script), "--detach").stdout.split()[2]
    wait_for(lambda: log.exists() and "up" in log.read_text(), 10, what="the script")
    box.proc.kill()  # no gentle stop can run
    box.proc.wait()
    again = start_agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        rows = json.loads(laptop.run("python", "--list", "--json").stdout)
        assert [r["state"] for r in rows if r["id"] == run_id] == ["running"]
        assert log.read_text().splitlines() == ["up"]  # nothing reached the script
        assert laptop.run("python", "--kill", run_id).returncode == 0
        wait_for(lambda: "finally done" in log.read_text(), 15, what="the finally block")
        wait_for(lambda: not pids_with_env(run_id), 15, what="the script to end")
        assert log.read_text().splitlines() == ["up", "SIGINT", "finally done"]
        attach = laptop.run("python", "--reattach", run_id)
        assert attach.stdout.count("cleaning") == 20, attach.stdout
    finally:
        again.stop()
