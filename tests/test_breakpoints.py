"""pause(), breakpoint(), and the three ways to resume (spec: breakpoints.md)."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Client, LiveRun, StreamReader, start_run, wait_for, write_script
from sshclients import openssh, paramiko_subsystem

PAUSE_AT_4 = """import time
from lager import pause
print("before", flush=True)
pause("check the DUT before the final step"{args})
print("after", flush=True)
"""


def paused_row(client: Client, run_id: str) -> dict:
    rows = json.loads(client.run("python", "--list", "--json").stdout)
    return next(r for r in rows if r["short_id"] == run_id or r["id"] == run_id)


def start_paused(client: Client, tmp_path: Path, args: str = ", timeout=0",
                 **kw: object) -> tuple[LiveRun, str]:
    script = write_script(tmp_path, "test.py", PAUSE_AT_4.format(args=args))
    run = start_run(client, script, **kw)
    return run, run.banner_id()


def test_banner_exact_and_continue_with_the_banner_id(client: Client, tmp_path: Path) -> None:
    run, ident = start_paused(client, tmp_path, ", interactive=True")
    assert "…" in ident
    script = str(tmp_path / "test.py")
    expected = (f'=== lager breakpoint "check the DUT before the final step" at {script}:4  '
                f"(id {ident})\n"
                f"    resume: press Enter here, or `lager python --continue {ident} --box mybox`\n"
                f"    inspect: `lager python --console {ident} --box mybox`\n"
                "    auto-resume in 300s\n")
    run.err.wait_for("auto-resume in 300s\n")
    assert run.err.text == expected
    assert run.out.text == "before\n"
    result = client.run("python", "--continue", ident)
    assert result.returncode == 0 and result.stdout.startswith("resumed run")
    assert run.finish() == 0
    assert run.err.text.endswith("=== resumed\n") and run.out.text == "before\nafter\n"


def test_banner_without_console_and_without_auto_resume(client: Client, tmp_path: Path) -> None:
    run, ident = start_paused(client, tmp_path)
    run.err.wait_for("no auto-resume\n")
    assert "inspect:" not in run.err.text
    client.run("python", "--continue", ident)
    assert run.finish() == 0


def test_enter_resumes_and_early_enter_does_not_skip(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "early.py", """
import time
from lager import pause
print("sleeping", flush=True)
time.sleep(1.5)
pause("wait", timeout=0)
print("after", flush=True)
""")
    run = start_run(client, script)
    run.out.wait_for("sleeping")
    run.proc.stdin.write("\n")  # typed before the pause: must not resume it
    run.proc.stdin.flush()
    ident = run.banner_id()
    time.sleep(0.5)
    assert paused_row(client, ident)["state"] == "paused"
    run.proc.stdin.write("\n")
    run.proc.stdin.flush()
    run.err.wait_for("=== resumed")
    assert run.finish() == 0 and run.out.text.endswith("after\n")
    last = json.loads(client.run("python", "--list", "--json").stdout)[-1]["last_resume"]
    assert last["how"] == "enter" and "SHA256:" in last["by"]


@pytest.mark.parametrize("form", ["short", "full", "prefix"])
def test_continue_accepts_every_id_form(client: Client, tmp_path: Path, form: str) -> None:
    run, ident = start_paused(client, tmp_path)
    full = paused_row(client, ident)["id"]
    query = {"short": ident, "full": full, "prefix": full[:10]}[form]
    assert client.run("python", "--continue", query).returncode == 0
    assert run.finish() == 0


def test_openssh_continue_by_line_and_by_env(client: Client, tmp_path: Path) -> None:
    run, ident = start_paused(client, tmp_path)
    result = openssh(client, "continue", ident + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().count("\n") == 1
    assert run.finish() == 0

    run, ident = start_paused(client, tmp_path)
    result = openssh(client, "continue", b"", "-o", f"SetEnv=LAGER_BREAKPOINT={ident}")
    assert result.returncode == 0, result.stderr
    assert run.finish() == 0


def test_paramiko_continue(client: Client, tmp_path: Path) -> None:
    run, ident = start_paused(client, tmp_path)
    status, out, err = paramiko_subsystem(client, "continue", ident)
    assert status == 0 and out.startswith(b"resumed run"), err
    assert run.finish() == 0
    run, ident = start_paused(client, tmp_path)
    status, out, err = paramiko_subsystem(client, "continue", None, {"LAGER_BREAKPOINT": ident})
    assert status == 0, err
    assert run.finish() == 0


@pytest.mark.parametrize("payload, reason", [
    (b"nosuchrun\n", b"no run with id"),
    (b"\xff\xfe\x00garbage\n", b"not text"),
    (b"a" * (1024 * 1024) + b"\n", b"longer than"),
    (b"\n", b"no run id given"),
])
def test_bad_continue_requests_leave_the_pause_alone(client: Client, tmp_path: Path,
                                                      payload: bytes, reason: bytes) -> None:
    run, ident = start_paused(client, tmp_path)
    status, out, err = paramiko_subsystem(client, "continue", payload)
    assert status == 1 and out == b""
    assert reason in err and err.count(b"\n") == 1
    assert paused_row(client, ident)["state"] == "paused"
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0


def test_continue_when_not_paused(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "busy.py", "import time\nprint('go', flush=True)\ntime.sleep(3)\n")
    run = start_run(client, script)
    run.out.wait_for("go")
    full = json.loads(client.run("python", "--list", "--json").stdout)[-1]["id"]
    result = client.run("python", "--continue", full)
    assert result.returncode == 1 and "not paused: it is running" in result.stderr
    assert run.finish() == 0  # and nothing was armed: the run just finished
    result = client.run("python", "--continue", full)
    assert result.returncode == 1 and "not paused: it exited with code 0" in result.stderr


def test_two_racing_resumes_resume_once(client: Client, tmp_path: Path) -> None:
    run, ident = start_paused(client, tmp_path)
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda: results.append(
        client.run("python", "--continue", ident))) for _ in range(2)]
    for t in threads:
        t.start()
    run.proc.stdin.write("\n")
    run.proc.stdin.flush()
    for t in threads:
        t.join()
    assert run.finish() == 0
    assert run.err.text.count("=== resumed") == 1
    assert sum(r.returncode == 0 for r in results) <= 1


def test_auto_resume_logs_it(client: Client, tmp_path: Path) -> None:
    run, _ = start_paused(client, tmp_path, ", timeout=0.7")
    assert run.finish() == 0
    assert "    auto-resume in 0.7s\n=== auto-resumed after 0.7s\n" in run.err.text
    last = json.loads(client.run("python", "--list", "--json").stdout)[-1]["last_resume"]
    assert last["how"] == "timeout"


@pytest.mark.parametrize("args, env, shown", [
    ("", "LAGER_BREAKPOINT_TIMEOUT=0.6", "auto-resume in 0.6s"),
    (", timeout=0.5", "LAGER_BREAKPOINT_TIMEOUT=1800", "auto-resume in 0.5s"),
    (", timeout=0", "LAGER_BREAKPOINT_TIMEOUT=1", "no auto-resume"),
    ("", "LAGER_BREAKPOINT_TIMEOUT=soon", "auto-resume in 300s"),
])
def test_timeout_resolution_order(client: Client, tmp_path: Path, args: str, env: str,
                                  shown: str) -> None:
    script = write_script(tmp_path, "test.py", PAUSE_AT_4.format(args=args))
    run = start_run(client, script, "--env", env)
    ident = run.banner_id()
    run.err.wait_for(shown)
    if "soon" in env:
        assert "LAGER_BREAKPOINT_TIMEOUT='soon' is not a number" in run.err.text
    if "auto-resume in 0." not in shown:
        client.run("python", "--continue", ident)
    assert run.finish() == 0


@pytest.mark.parametrize("value", ["off", "0", "false", "no", "OFF", "No"])
def test_disabled_breakpoints_are_no_ops(client: Client, tmp_path: Path, value: str) -> None:
    script = write_script(tmp_path, "test.py", PAUSE_AT_4.format(args="") +
                          "breakpoint()\nprint('end')\n")
    result = client.run("python", str(script), "--env", f"LAGER_BREAKPOINTS={value}")
    assert result.returncode == 0
    assert result.stdout == "before\nafter\nend\n" and result.stderr == ""


def test_pause_outside_lager_python_is_a_no_op(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c",
                             "from lager import pause\npause('x')\nprint('ok')"],
                            capture_output=True, text=True, timeout=30,
                            env={k: v for k, v in os.environ.items() if not k.startswith("LAGER")})
    assert result.returncode == 0 and result.stdout == "ok\n"
    assert result.stderr == "not running under `lager python`; skipping breakpoint\n"


def test_builtin_breakpoint_with_and_without_label(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "bp.py", """
breakpoint("check DUT")
breakpoint()
print("done")
""")
    run = start_run(client, script, "--env", "LAGER_BREAKPOINT_TIMEOUT=0")
    run.err.wait_for(f'=== lager breakpoint "check DUT" at {script}:2  (id')
    client.run("python", "--continue", run.banner_id())
    run.err.wait_for(f"=== lager breakpoint at {script}:3  (id")
    client.run("python", "--continue", run.banner_id())
    assert run.finish() == 0 and run.out.text == "done\n"
    off = client.run("python", str(script), "--env", "PYTHONBREAKPOINT=0")
    assert off.returncode == 0 and off.stdout == "done\n" and "breakpoint" not in off.stderr


def test_banner_names_user_file_and_line_through_decorators(client: Client,
                                                            tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    write_script(proj, "main.py", """import functools
from lib import steps

def logged(fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        return fn(*a, **k)
    return wrapper

@logged
def final_step():
    steps.check()
    from lager import pause
    pause("in final", timeout=0.3)

final_step()
""")
    write_script(proj / "lib", "__init__.py", "")
    write_script(proj / "lib", "steps.py", "from lager import pause\n\ndef check():\n    pause('in lib', timeout=0.3)\n")
    result = client.run("python", str(proj))
    assert result.returncode == 0, result.stderr
    assert '"in lib" at lib/steps.py:4  (id' in result.stderr
    assert f'"in final" at {proj}:14  (id' in result.stderr


def test_threads_pause_one_at_a_time(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "threads.py", """
import threading
from lager import pause
def worker(n):
    pause(f"worker {n}", timeout=0)
    print(f"worker {n} resumed", flush=True)
ts = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
for t in ts: t.start()
for t in ts: t.join()
print("all done")
""")
    run = start_run(client, script)
    ident = run.banner_id()
    time.sleep(0.5)
    assert run.err.text.count("=== lager breakpoint") == 1  # the second waits its turn
    assert client.run("python", "--continue", ident).returncode == 0
    wait_for(lambda: run.err.text.count("=== lager breakpoint") == 2, what="second pause")
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0 and run.out.text.endswith("all done\n")


def test_list_shows_pause_details(client: Client, tmp_path: Path) -> None:
    run, ident = start_paused(client, tmp_path, ", timeout=120, interactive=True")
    row = paused_row(client, ident)
    pause = row["pause"]
    assert row["state"] == "paused" and pause["label"].startswith("check the DUT")
    assert pause["line"] == 4 and pause["console"] is True and 100 < pause["remaining"] <= 120
    human = client.run("python", "--list").stdout
    assert 'paused "check the DUT before the final step" at' in human and "s left, console" in human
    client.run("python", "--continue", ident)
    assert run.finish() == 0
    row = paused_row(client, ident)
    assert row["last_resume"]["how"] == "continue" and "continue by" in \
        client.run("python", "--list").stdout


def test_timeout_stops_a_paused_run(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "t2.py", PAUSE_AT_4.format(args=", timeout=0"))
    result = client.run("python", str(script), "--timeout", "1")
    assert result.returncode == 124 and "timed out" in result.stderr
    assert "=== lager breakpoint" in result.stderr and "after" not in result.stdout


def test_kill_a_paused_run(client: Client, tmp_path: Path) -> None:
    run, ident = start_paused(client, tmp_path)
    assert client.run("python", "--kill", ident).returncode == 0
    assert run.finish() == 130  # SIGINT reached the paused script: KeyboardInterrupt
    assert paused_row(client, ident)["state"] == "exited"


def test_detached_run_pauses_and_reattach_shows_banner(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "test.py", PAUSE_AT_4.format(args=", timeout=0"))
    run_id = client.run("python", str(script), "--detach").stdout.split()[2]
    wait_for(lambda: paused_row(client, run_id)["state"] == "paused", what="pause")
    attach = client.popen("python", "--reattach", run_id)
    err = StreamReader(attach.stderr)
    out = StreamReader(attach.stdout)
    err.wait_for("=== lager breakpoint")
    attach.stdin.write("\n")  # Enter in a reattached terminal resumes too
    attach.stdin.flush()
    err.wait_for("=== resumed")
    assert attach.wait(20) == 0 and out.join() == "before\nafter\n"


def test_live_countdown_only_on_a_terminal(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "test.py", PAUSE_AT_4.format(args=", timeout=2.5"))
    master, slave = pty.openpty()
    proc = subprocess.Popen(["lager", "python", str(script), "--box", "mybox"],
                            env=client.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, executable=str(Path(sys.executable).parent / "lager"))
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(20)
    os.close(master)
    assert b"\r    ... auto-resume in " in seen and b"=== auto-resumed after 2.5s" in seen
    piped = client.run("python", str(script))
    assert "\r" not in piped.stderr and "... auto-resume in" not in piped.stderr


def test_pause_never_raises_into_the_script(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "odd.py", """
from lager import pause
pause(object(), timeout="abc")
print("survived")
""")
    run = start_run(client, script)
    ident = run.banner_id()
    assert "timeout='abc' is not a number" in run.err.text
    assert "auto-resume in 300s" in run.err.wait_for("auto-resume")
    client.run("python", "--continue", ident)
    assert run.finish() == 0 and run.out.text == "survived\n"


def test_forked_children_and_console_code_cannot_pause(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "fork.py", """
import multiprocessing as mp
from lager import pause

def child():
    pause("from a child", timeout=0)  # shares the socket, not the pause: a no-op
    print("child went on", flush=True)

ctx = mp.get_context("fork")
p = ctx.Process(target=child); p.start(); p.join()
pause("parent", timeout=0, interactive=True)
print("parent done", flush=True)
""")
    run = start_run(client, script)
    ident = run.banner_id()
    assert "child went on" in run.out.text and "from a child" not in run.err.text
    console = client.run("python", "--console", ident, input="pause('nested')\n1+1\n")
    assert "pause() inside the console is ignored" in console.stdout
    assert console.stdout.splitlines()[-1] == "2"
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0 and run.out.text.endswith("parent done\n")


def test_a_numbered_continue_never_resumes_a_later_pause(client: Client, tmp_path: Path) -> None:
    """ISSUE-NOTES 9 with OpenSSH as the client: `ID#N` resumes pause N only; a retry of it
    after pause N+1 has begun says "already resumed" (status 0) and leaves N+1 paused."""
    from sshclients import openssh
    script = write_script(tmp_path, "twice.py", "from lager import pause\n"
                          "pause('one', timeout=0)\npause('two', timeout=0)\nprint('done')\n")
    run = start_run(client, script)
    ident = run.banner_id()

    def pause_row() -> dict:
        rows = json.loads(client.run("python", "--list", "--json").stdout)
        return next(r for r in rows if r["short_id"] == ident)["pause"] or {}
    assert pause_row()["seq"] == 1
    first = openssh(client, "continue", f"{ident}#1\n")
    assert first.returncode == 0 and b"resumed" in first.stdout, first.stderr
    wait_for(lambda: pause_row().get("seq") == 2, 20, what="the second pause")
    retry = openssh(client, "continue", f"{ident}#1\n")
    assert retry.returncode == 0 and b"already resumed" in retry.stdout, retry
    assert pause_row()["seq"] == 2  # the retry did not touch the second pause
    ahead = openssh(client, "continue", f"{ident}#3\n")
    assert ahead.returncode == 1 and b"not been reached" in ahead.stderr
    bad = openssh(client, "continue", f"{ident}#x\n")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert client.run("python", "--continue", f"{ident}#2").returncode == 0
    assert run.finish() == 0 and run.out.text == "done\n"
