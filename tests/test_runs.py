"""`lager python` runs: streams, exit codes, timeouts, stopping, detaching, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (LAGER, Client, pids_with_env, start_agent, start_run, wait_for,
                      write_script)


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


def test_killed_client_stops_run_gently(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    script = write_script(tmp_path, "gone.py", f"""
import time, pathlib
try:
    print("ready", flush=True)
    time.sleep(120)
finally:
    pathlib.Path({str(marker)!r}).write_text("yes")
""")
    run = start_run(client, script)
    run.out.wait_for("ready")
    run.proc.kill()
    run.proc.wait()
    wait_for(marker.exists, 30, what="the run's finally block after the client died")


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
    assert attach.wait(10) == 0
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
for i in range(6):
    sys.stdout.write(("%d" % i) * (1024 * 1024))
print("END")
""")
    run_id = client.run("python", str(script), "--detach").stdout.split()[2]
    result = client.run("python", "--reattach", run_id)
    assert result.returncode == 0
    assert result.stdout.endswith("END\n")
    assert "bytes of earlier output were dropped" in result.stderr
    assert len(result.stdout) <= 4 * 1024 * 1024 + 10


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
    assert result.returncode == 1 and "unknown box 'nosuch'" in result.stderr
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


def test_agent_sigterm_stops_runs_gently_without_orphans(tmp_path: Path) -> None:
    from conftest import make_client
    box = start_agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    marker = tmp_path / "finally"
    tag = f"LAGER_TEST_ORPHAN={time.time_ns()}"
    script = write_script(tmp_path, "long.py", f"""
import os, subprocess, time, pathlib
env = dict(os.environ); env["{tag.split('=')[0]}"] = "{tag.split('=')[1]}"
subprocess.Popen(["sleep", "300"], env=env)
try:
    time.sleep(300)
finally:
    pathlib.Path({str(marker)!r}).write_text("ran")
""")
    run_id = laptop.run("python", str(script), "--detach").stdout.split()[2]
    wait_for(lambda: pids_with_env(tag), 10, what="the run's child")
    assert box.stop() == 0
    assert marker.read_text() == "ran"
    wait_for(lambda: not pids_with_env(tag) and not pids_with_env(run_id), 10,
             what="no orphans")
