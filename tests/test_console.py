"""The interactive console inside a paused script (spec: "Interactive console")."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest
from conftest import LAGER, Client, LiveRun, start_run, wait_for, write_script
from sshclients import openssh, paramiko_connect, paramiko_subsystem

SCRIPT = """import threading, time
from lager import pause
readings = {"adc1": -10.6032}
shared = []
x = 1
stop = threading.Event()

def read_adcs():
    return {"adc1": -10.6031}

def chatter():
    while not stop.wait(0.2):
        print("tick", flush=True)

def inspect():
    local_only = "seen"
    pause("inspect bench", interactive=True, timeout=0)

%s
inspect()
stop.set()
print("after", x, shared, flush=True)
"""


def start_console_run(client: Client, tmp_path: Path, chatter: bool = False) -> tuple[LiveRun, str]:
    body = SCRIPT % ("threading.Thread(target=chatter, daemon=True).start()" if chatter else "")
    run = start_run(client, write_script(tmp_path, "test.py", body))
    return run, run.banner_id()


def finish(client: Client, run: LiveRun, ident: str) -> None:
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0


def test_piped_console_runs_each_line_and_survives_errors(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    result = client.run("python", "--console", ident, input=(
        "readings\nround(readings['adc1'] * 1000, 1)\nread_adcs()\nlocal_only\n1/0\n"
        "for i in range(2):\n    print('loop', i)\n\nprint('still here')\n"))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[:2] == ["Connected to interactive console (Ctrl+D to disconnect)",
                       f'paused at "inspect bench" {tmp_path / "test.py"}:17']
    assert out[2:6] == ["{'adc1': -10.6032}", "-10603.2", "{'adc1': -10.6031}", "'seen'"]
    assert "ZeroDivisionError: division by zero" in result.stdout
    assert out[-3:] == ["loop 0", "loop 1", "still here"]
    finish(client, run, ident)


def test_snapshot_rebinding_stays_mutation_carries(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    client.run("python", "--console", ident, input="x = 99\nshared.append('from console')\n")
    again = client.run("python", "--console", ident, input="x\n")
    assert again.stdout.splitlines()[-1] == "1"  # each console starts from a fresh snapshot
    finish(client, run, ident)
    assert "after 1 ['from console']" in run.out.text


def test_console_output_stays_in_console_and_script_output_keeps_streaming(
        client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path, chatter=True)
    run.out.wait_for("tick")
    result = client.run("python", "--console", ident,
                        input="import sys\nprint('ONLY-IN-CONSOLE')\nprint('E', file=sys.stderr)\n"
                              "sys.stdout is sys.__stdout__\n")
    assert "ONLY-IN-CONSOLE" in result.stdout and "\nE\n" in result.stdout
    ticks = run.out.text.count("tick")
    wait_for(lambda: run.out.text.count("tick") > ticks, what="the script's thread output")
    finish(client, run, ident)
    assert "ONLY-IN-CONSOLE" not in run.out.text and "E\n" not in run.err.text


def test_exit_disconnects_and_reconnect_works(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    first = client.run("python", "--console", ident, input="exit()\nprint('not run')\n")
    assert first.returncode == 0 and "not run" not in first.stdout
    second = client.run("python", "--console", ident, input="quit()\n")
    assert second.returncode == 0
    third = client.run("python", "--console", ident, input="2+2\n")
    assert third.stdout.splitlines()[-1] == "4"
    time.sleep(0.3)
    assert "after" not in run.out.text  # still paused
    finish(client, run, ident)


def test_openssh_console_by_line_and_by_setenv(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    by_line = openssh(client, "console", f"{ident}\nreadings\n")
    assert by_line.returncode == 0, by_line.stderr
    assert b"{'adc1': -10.6032}" in by_line.stdout
    by_env = openssh(client, "console", "read_adcs()\n", "-o", f"SetEnv=LAGER_BREAKPOINT={ident}")
    assert by_env.returncode == 0, by_env.stderr
    assert b"{'adc1': -10.6031}" in by_env.stdout
    finish(client, run, ident)


def test_paramiko_console(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    status, out, err = paramiko_subsystem(client, "console", f"{ident}\n6*7")
    assert status == 0 and out.splitlines()[-1] == b"42", err
    finish(client, run, ident)


def test_two_consoles_at_once_both_work(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    ssh = paramiko_connect(client)
    try:
        chans = []
        for n in range(2):
            chan = ssh.get_transport().open_session()
            chan.invoke_subsystem("console")
            chan.sendall(f"{ident}\nprint('console', {n})\n".encode())
            chans.append(chan)
        for n, chan in enumerate(chans):
            chan.shutdown_write()
            assert f"console {n}".encode() in chan.makefile("rb").read()
            assert chan.recv_exit_status() == 0
    finally:
        ssh.close()
    finish(client, run, ident)


def test_resume_closes_an_open_console(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    ssh = paramiko_connect(client)
    try:
        chan = ssh.get_transport().open_session()
        chan.invoke_subsystem("console")
        chan.sendall(f"{ident}\nimport time\n".encode())
        chan.sendall(b"while True: time.sleep(0.01)\n\n")  # a statement still running
        time.sleep(0.5)
        assert client.run("python", "--continue", ident).returncode == 0
        text = chan.makefile("rb").read()
        assert b"=== script resumed; console closed" in text
        assert chan.recv_exit_status() == 0
    finally:
        ssh.close()
    assert run.finish() == 0 and "after 1" in run.out.text


def test_console_client_vanishing_mid_statement_leaves_script_paused(client: Client,
                                                                     tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    ssh = paramiko_connect(client)
    chan = ssh.get_transport().open_session()
    chan.invoke_subsystem("console")
    chan.sendall(f"{ident}\nimport time; time.sleep(1); print('late')\n".encode())
    time.sleep(0.3)
    ssh.get_transport().sock.close()  # the laptop goes away without a goodbye
    time.sleep(1.5)
    after = client.run("python", "--console", ident, input="1+1\n")
    assert after.stdout.splitlines()[-1] == "2"
    assert "after" not in run.out.text
    finish(client, run, ident)


@pytest.mark.parametrize("case", ["no-console", "running", "unknown", "garbage"])
def test_console_bad_requests(client: Client, tmp_path: Path, case: str) -> None:
    if case == "no-console":
        run = start_run(client, write_script(tmp_path, "p.py",
                                             "from lager import pause\npause('x', timeout=0)\n"))
        ident = run.banner_id()
        result = client.run("python", "--console", ident, input="")
        assert result.returncode == 1 and "without a console" in result.stderr
        assert "interactive=True" in result.stderr
        finish(client, run, ident)
    elif case == "running":
        run = start_run(client, write_script(tmp_path, "r.py",
                                             "import time\nprint('go', flush=True)\ntime.sleep(5)\n"))
        run.out.wait_for("go")
        import json
        full = json.loads(client.run("python", "--list", "--json").stdout)[-1]["id"]
        result = client.run("python", "--console", full, input="")
        assert result.returncode == 1 and "is not paused" in result.stderr
        run.proc.terminate()
        run.finish()
    elif case == "unknown":
        result = client.run("python", "--console", "ffffffffff", input="")
        assert result.returncode == 1 and "no run with id" in result.stderr
    else:
        status, out, err = paramiko_subsystem(client, "console", b"\x00\xff\xfe\n")
        assert status == 1 and out == b"" and err.count(b"\n") == 1


class PtyConsole:
    def __init__(self, client: Client, ident: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([LAGER, "python", "--console", ident, "--box", "mybox"],
                                     env=client.env, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True)
        os.close(slave)
        self.text = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, needle: bytes, timeout: float = 15, count: int = 1) -> bytes:
        deadline = time.monotonic() + timeout
        while self.text.count(needle) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not in {self.text!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"EOF before {needle!r}: {self.text!r}")
                self.text += chunk
        return self.text

    def close(self) -> int:
        code = self.proc.wait(15)
        os.close(self.master)
        return code


def test_tty_console_completion_history_and_ctrl_c(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    con = PtyConsole(client, ident)
    con.expect(b">>> ")
    con.send(b"read_a\t")  # completes the script's function name
    con.expect(b"read_adcs()")  # a function taking no arguments completes with ()
    con.send(b"\r")
    con.expect(b"{'adc1': -10.6031}")
    con.send(b"readings.ke\t")  # attribute completion from the namespace
    con.expect(b"readings.keys(")
    con.send(b"\x15")  # Ctrl-U: drop the line
    con.send(b"\x1b[A\x1b[A\r")  # history: two lines back is read_adcs()
    con.expect(b"{'adc1': -10.6031}", count=2)
    con.send(b"while True: pass\r\r")
    time.sleep(0.5)
    con.send(b"\x03")  # interrupts the statement, not the script
    con.expect(b"KeyboardInterrupt")
    con.send(b"6*7\r")
    con.expect(b"42")
    con.send(b"\x04")  # Ctrl-D disconnects
    assert con.close() == 0
    assert "after" not in run.out.text and "KeyboardInterrupt" not in run.err.text
    finish(client, run, ident)


def test_openssh_tty_console(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
                             "-o", f"UserKnownHostsFile={client.known_hosts}",
                             "-i", str(client.key_path), "-p", str(client.agent.port), "-tt",
                             "-s", f"lab@{client.agent.host}", "console"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    con = PtyConsole.__new__(PtyConsole)
    con.master, con.proc, con.text = master, proc, b""
    con.send(ident.encode() + b"\r")
    con.expect(b">>> ")
    con.send(b"local_\t")
    con.expect(b"local_only")
    con.send(b"\r")
    con.expect(b"'seen'")
    con.send(b"\x04")
    assert con.close() == 0
    finish(client, run, ident)
