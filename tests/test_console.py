"""The interactive console inside a paused script (spec: "Interactive console")."""
from __future__ import annotations

import codecs
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import LAGER, Client, LiveRun, start_run, wait_for, write_script
from sshclients import openssh, paramiko_connect, paramiko_subsystem
from tcp_peer import TcpPeer
from unit.vt import Screen

from lager import protocol

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
    assert_still_paused(client, ident)
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


def assert_still_paused(client: Client, ident: str) -> None:
    rows = json.loads(client.run("python", "--list", "--json").stdout)
    (row,) = [r for r in rows if protocol.id_matches(ident, r["id"])]
    assert row["state"] == "paused", row


def recv_until(chan: paramiko.Channel, needle: bytes, timeout: float = 15) -> bytes:
    chan.settimeout(timeout)
    text = b""
    while needle not in text:
        try:
            chunk = chan.recv(65536)
        except TimeoutError:
            raise AssertionError(f"{needle!r} not in {text!r}") from None
        assert chunk, f"EOF before {needle!r}: {text!r}"
        text += chunk
    return text


SPIN = b"def spin():\n    print('spin' + 'ning', flush=True)\n    while True: time.sleep(0.01)\n\n"


def test_resume_closes_an_open_console(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    ssh = paramiko_connect(client)
    try:
        chan = ssh.get_transport().open_session()
        chan.invoke_subsystem("console")
        chan.sendall(f"{ident}\nimport time\n".encode() + SPIN + b"spin()\n")
        text = recv_until(chan, b"spinning")  # a statement still running
        assert client.run("python", "--continue", ident).returncode == 0
        text += chan.makefile("rb").read()
        assert b"=== script resumed; console closed" in text
        assert b"Traceback" not in text and b"abandoned" not in text  # it stopped, quietly
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
    chan.sendall(f"{ident}\nimport time; print('started'); time.sleep(1); print('late'); "
                 "shared.append('late')\n".encode())
    recv_until(chan, b"started")
    ssh.get_transport().sock.close()  # the laptop goes away without a goodbye
    # Another console works meanwhile, and sees the orphaned statement finish.
    after = client.run("python", "--console", ident, input=(
        "import time\ndeadline = time.monotonic() + 20\n"
        "while not shared and time.monotonic() < deadline: time.sleep(0.02)\n\n"
        "shared\n"))
    assert after.stdout.splitlines()[-1] == "['late']"
    assert_still_paused(client, ident)
    finish(client, run, ident)
    assert "after 1 ['late']" in run.out.text


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
    """A client on a real PTY that is its controlling terminal, so window changes reach it as
    SIGWINCH, and a screen (tests/unit/vt.py) that shows what a person would see."""

    def __init__(self, client: Client, ident: str | None = None, argv: list[str] | None = None,
                 cols: int = 80, rows: int = 24) -> None:
        self.master, slave = pty.openpty()
        self._set_size(cols, rows)
        argv = argv or [LAGER, "python", "--console", str(ident), "--box", "mybox"]
        # setsid -c: a new session whose controlling terminal is this PTY.
        self.proc = subprocess.Popen(["setsid", "-w", "-c", *argv], env=client.env,
                                     stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        self.text = b""
        self.screen = Screen(cols, rows)
        self._fed = 0
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode

    def _set_size(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def _read(self, deadline: float, waiting_for: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{waiting_for} not seen in {self.text!r}")
        ready, _, _ = select.select([self.master], [], [], left)
        if ready:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {waiting_for}: {self.text!r}")
            self.text += chunk

    def expect(self, needle: bytes, timeout: float = 15, count: int = 1) -> bytes:
        deadline = time.monotonic() + timeout
        while self.text.count(needle) < count:
            self._read(deadline, repr(needle))
        return self.text

    def _catch_up(self) -> None:
        self.screen.feed(self._decode(self.text[self._fed:]))
        self._fed = len(self.text)

    def expect_screen(self, rows: list[str], cursor: tuple[int, int] | None = None,
                      timeout: float = 15) -> None:
        """Wait until the screen's last rows are `rows` (and the cursor is at `cursor`,
        counted from the first of them)."""
        deadline = time.monotonic() + timeout

        def shows() -> bool:
            lines = self.screen.lines()
            top = len(lines) - len(rows)
            if top < 0 or lines[top:] != rows:
                return False
            return cursor is None or self.screen.cursor == (top + cursor[0], cursor[1])

        self._catch_up()
        while not shows():
            self._read(deadline, f"screen {rows} cursor {cursor}: {self.screen.lines()}")
            self._catch_up()

    def resize(self, cols: int, rows: int) -> None:
        """Change the window, as dragging its corner does; the screen first, as a terminal
        re-lays itself out before the program hears of it."""
        self._catch_up()
        self.screen.resize(cols)
        self._set_size(cols, rows)

    def close(self) -> int:
        """Wait for the client to end, keeping what it wrote last."""
        code = self.proc.wait(15)
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the PTY's other side is closed and drained
                break
            if not chunk:
                break
            self.text += chunk
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
    con.send(b"import time\r" + SPIN.replace(b"\n", b"\r") + b"spin()\r")
    con.expect(b"spinning")
    con.send(b"\x03")  # interrupts the statement, not the script
    con.expect(b"KeyboardInterrupt")
    con.send(b"6*7\r")
    con.expect(b"42")
    con.send(b"\x04")  # Ctrl-D disconnects
    assert con.close() == 0
    assert "after" not in run.out.text and "KeyboardInterrupt" not in run.err.text
    finish(client, run, ident)


def openssh_console_argv(client: Client) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={client.known_hosts}", "-i", str(client.key_path),
            "-p", str(client.agent.port), "-tt", "-s", f"lab@{client.agent.host}", "console"]


def test_openssh_tty_console(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    con = PtyConsole(client, argv=openssh_console_argv(client))
    con.send(ident.encode() + b"\r")
    con.expect(b">>> ")
    con.send(b"local_\t")
    con.expect(b"local_only")
    con.send(b"\r")
    con.expect(b"'seen'")
    con.send(b"\x04")
    assert con.close() == 0
    finish(client, run, ident)


LONG = "value = 'abcdefghijklmnopqrstuvwxyz0123456789'"  # 46 characters


def test_tty_console_wraps_at_the_window_width_and_follows_resizes(
        client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    con = PtyConsole(client, ident, cols=30, rows=20)
    con.expect_screen([">>>"], (0, 4))
    con.send(LONG.encode())
    con.expect_screen([">>> value = 'abcdefghijklmnopq", "rstuvwxyz0123456789'"], (1, 20))
    con.send(b"\x1b[D" * 25)  # back into the first row
    con.expect_screen([">>> value = 'abcdefghijklmnopq", "rstuvwxyz0123456789'"], (0, 25))
    con.resize(20, 20)
    con.expect_screen([">>> value = 'abcdefg", "hijklmnopqrstuvwxyz0", "123456789'"], (1, 5))
    con.resize(60, 20)
    con.expect_screen([">>> " + LONG], (0, 25))
    con.send(b"_\r")
    con.expect_screen([">>> value = 'abcdefghijkl_mnopqrstuvwxyz0123456789'", ">>>"], (1, 4))
    con.send(b"value\r")
    con.expect(b"'abcdefghijkl_mnopqrstuvwxyz0123456789'")
    con.send(b"print('no newline', end='')\r")  # the next prompt does not draw over it
    con.expect_screen([">>> print('no newline', end='')", "no newline", ">>>"], (2, 4))
    con.send(b"\x04")
    assert con.close() == 0
    finish(client, run, ident)


def test_tty_console_ctrl_w_ctrl_u_ctrl_r_and_bracketed_paste(client: Client,
                                                              tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    con = PtyConsole(client, ident, cols=60, rows=20)
    con.expect(b">>> ")
    con.send(b"len('abc') + zzz\x17")  # Ctrl-W takes back the last word
    con.expect_screen([">>> len('abc') +"], (0, 17))
    con.send(b"1\r")
    con.expect(b"\r\n4\r\n")
    con.send(b"garbage(\x156*7\r")  # Ctrl-U drops what is before the cursor
    con.expect(b"\r\n42\r\n")
    con.send(b"100 - 1\r")
    con.expect(b"\r\n99\r\n")
    con.send(b"\x12len(")  # Ctrl-R: the newest line holding "len("
    con.expect_screen(["(reverse-i-search)`len(': len('abc') + 1"], (0, 26))
    con.send(b"\r")
    con.expect(b"\r\n4\r\n", count=2)
    con.send(b"\x1b[200~for i in range(2):\r    print('p', i)\rprint('after', i)\x1b[201~")
    con.send(b"\r")  # the pasted block closes itself at the line back at the margin
    con.expect(b"after 1")
    assert b"p 0\r\np 1\r\n" in con.text and b"SyntaxError" not in con.text
    con.send(b"\x1b[200~read_a\t\x1b[201~")  # no completion inside a paste
    con.expect_screen([">>> read_a^I"], (0, 12))
    con.send(b"\x15\x04")
    assert con.close() == 0
    assert con.text.endswith(b"\x1b[?2004l")  # the client leaves paste mode off
    finish(client, run, ident)


def test_openssh_window_changes_reach_the_console(client: Client, tmp_path: Path) -> None:
    run, ident = start_console_run(client, tmp_path)
    con = PtyConsole(client, argv=openssh_console_argv(client), cols=40, rows=20)
    con.send(ident.encode() + b"\r")
    con.expect(b">>> ")
    con.send(LONG.encode())
    con.expect_screen([">>> value = 'abcdefghijklmnopqrstuvwxyz0", "123456789'"], (1, 10))
    con.resize(25, 20)
    con.expect_screen([">>> value = 'abcdefghijkl", "mnopqrstuvwxyz0123456789'"], (2, 0))
    con.send(b"\x15\x04")
    assert con.close() == 0
    finish(client, run, ident)


# --- statements blocked in C (time.sleep, socket.recv, a VISA read) -------------------------

BLOCKED_SCRIPT = """import os, platform, threading, time
from lager import pause
from lager.console.runner import SYSCALL_NAMES
PORT = @PORT@
MARKER = @MARKER@
late = []

def report_when_blocked(syscalls, fd=None):
    '''Print BLOCKED once a thread of this process waits in one of syscalls (on fd), so the
    test's Ctrl-C or resume finds the statement inside C, not between two bytecodes.'''
    numbers = {str(n) for n, name in SYSCALL_NAMES[platform.machine()].items()
               if name in syscalls}
    def watch():
        while True:
            for tid in os.listdir('/proc/self/task'):
                try:
                    with open(f'/proc/self/task/{tid}/syscall') as f:
                        fields = f.read().split()
                except OSError:
                    continue
                if fields and fields[0] in numbers and (fd is None or int(fields[1], 16) == fd):
                    print('BLOCKED', flush=True)
                    return
            time.sleep(0.01)
    threading.Thread(target=watch, daemon=True).start()

def console_threads():
    return [t for t in threading.enumerate() if t.name == 'lager-console']

pause('blocked', interactive=True, timeout=0)
print('resumed', flush=True)
while not os.path.exists(MARKER):
    time.sleep(0.02)
with open(MARKER) as f:
    deadline = time.monotonic() + float(f.read())
while console_threads() and time.monotonic() < deadline:
    time.sleep(0.02)
print('console threads after resume:', len(console_threads()), 'late:', late, flush=True)
"""

# setup line, blocking statement: each appends to `late` only if it ever gets past its call.
BLOCKERS = {
    "sleep": ("", "report_when_blocked(('clock_nanosleep', 'nanosleep')); "
                  "time.sleep(600); late.append('sleep')"),
    "socket": ("import socket; s = socket.create_connection(('127.0.0.1', PORT))",
               "report_when_blocked(('recvfrom',), s.fileno()); s.recv(10); "
               "late.append('socket')"),
    "pyvisa": ("import pyvisa; inst = pyvisa.ResourceManager('@py').open_resource("
               "f'TCPIP0::127.0.0.1::{PORT}::SOCKET', read_termination='\\n', timeout=600000)",
               "report_when_blocked(('select', 'pselect6')); inst.read(); "
               "late.append('pyvisa')"),
}


class SilentInstrument(TcpPeer):
    """A TCP 'instrument' that accepts and never answers, until told to."""

    def answer(self) -> None:
        for conn in self.kept:
            conn.sendall(b"answer\n")


@pytest.fixture
def instrument() -> Iterator[SilentInstrument]:
    inst = SilentInstrument()
    yield inst
    inst.close()


def start_blocked_run(client: Client, tmp_path: Path, port: int) -> tuple[LiveRun, str, Path]:
    marker = tmp_path / "marker"
    body = BLOCKED_SCRIPT.replace("@PORT@", str(port)).replace("@MARKER@", repr(str(marker)))
    run = start_run(client, write_script(tmp_path, "blocked.py", body))
    return run, run.banner_id(), marker


def finish_blocked_run(client: Client, run: LiveRun, kind: str, instrument: SilentInstrument,
                       marker: Path) -> None:
    run.out.wait_for("resumed")
    if kind == "sleep":
        marker.write_text("0")  # nothing ends a 600 s sleep early: it stays abandoned
    else:
        instrument.answer()  # the call returns; the pending exception stops the statement
        marker.write_text("20")
    assert run.finish() == 0
    want = "1" if kind == "sleep" else "0"
    assert f"console threads after resume: {want} late: []" in run.out.text


@pytest.mark.parametrize("kind", list(BLOCKERS))
def test_ctrl_c_interrupts_a_statement_blocked_in_c(client: Client, tmp_path: Path,
                                                    instrument: SilentInstrument,
                                                    kind: str) -> None:
    setup, blocking = BLOCKERS[kind]
    run, ident, marker = start_blocked_run(client, tmp_path, instrument.port)
    con = PtyConsole(client, ident)
    con.expect(b">>> ")
    prompts = 1
    if setup:
        con.send(setup.encode() + b"\r")
        prompts += 1
        con.expect(b">>> ", count=prompts)
    con.send(blocking.encode() + b"\r")
    run.out.wait_for("BLOCKED")
    con.send(b"\x03")
    con.expect(b"KeyboardInterrupt")
    if kind != "pyvisa":  # pyvisa-py polls in Python, so Ctrl-C may stop it outright
        con.expect(b"abandoned: it stops when that call returns")
        assert b"blocked in recvfrom()" in con.text if kind == "socket" else \
            b"blocked in clock_nanosleep()" in con.text
    con.send(b"6*7\r")  # the console goes on, on a fresh thread
    con.expect(b"42")
    con.send(b"\x04")
    assert con.close() == 0
    assert client.run("python", "--continue", ident).returncode == 0
    if kind != "pyvisa":
        run.err.wait_for("at resume: blocked in")
        assert "abandoned: it stops when that call returns" in run.err.text
    finish_blocked_run(client, run, kind, instrument, marker)


@pytest.mark.parametrize("kind", list(BLOCKERS))
def test_resume_abandons_and_reports_a_statement_blocked_in_c(
        client: Client, tmp_path: Path, instrument: SilentInstrument, kind: str) -> None:
    setup, blocking = BLOCKERS[kind]
    run, ident, marker = start_blocked_run(client, tmp_path, instrument.port)
    ssh = paramiko_connect(client)
    try:
        chan = ssh.get_transport().open_session()
        chan.invoke_subsystem("console")
        chan.sendall(f"{ident}\n{setup}\n{blocking}\n".encode())
        run.out.wait_for("BLOCKED")
        assert client.run("python", "--continue", ident).returncode == 0
        text = chan.makefile("rb").read()
        assert b"=== script resumed; console closed" in text
        assert chan.recv_exit_status() == 0
    finally:
        ssh.close()
    if kind != "pyvisa":
        assert b"at resume: blocked in" in text
        run.err.wait_for(f"lager: console statement `{blocking}` at resume: blocked in")
        assert "abandoned: it stops when that call returns" in run.err.text
    finish_blocked_run(client, run, kind, instrument, marker)


STUBBORN = """def stubborn():
    announced = False
    while True:
        try:
            if not announced:  # said inside the try, so Ctrl-C can only come after it
                announced = True
                print('stub' + 'born', flush=True)
            while True:
                pass
        except KeyboardInterrupt:
            pass

"""


def test_a_statement_that_swallows_ctrl_c_is_abandoned_then_stopped_at_resume(
        client: Client, tmp_path: Path, instrument: SilentInstrument) -> None:
    run, ident, marker = start_blocked_run(client, tmp_path, instrument.port)
    ssh = paramiko_connect(client)
    try:
        chan = ssh.get_transport().open_session()
        chan.invoke_subsystem("console")
        chan.sendall(f"{ident}\n{STUBBORN}stubborn()\n".encode())
        recv_until(chan, b"stubborn")
        chan.sendall(b"\x03")  # piped, a Ctrl-C byte during a statement still interrupts it
        recv_until(chan, b"it caught the interrupt; abandoned")
        chan.sendall(b"6*7\n")
        recv_until(chan, b"42")
        assert client.run("python", "--continue", ident).returncode == 0
        text = chan.makefile("rb").read()
        assert b"at resume: not stopping" in text and b"script resumed; console closed" in text
    finally:
        ssh.close()
    run.out.wait_for("resumed")
    marker.write_text("20")  # the resume's exception is not a KeyboardInterrupt: it stops
    assert run.finish() == 0
    assert "console threads after resume: 0 late: []" in run.out.text
