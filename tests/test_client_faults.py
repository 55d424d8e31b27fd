"""The client under faults (issue 10): Ctrl-C while output streams, boxes that refuse, never
answer or die mid-run, a changed host key, colliding uploads, and a keeper that may already
have forwarded a request. Real processes throughout: the `lager` command, real agents, a real
pty, and a real TCP server that accepts and never speaks."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    LAGER,
    Client,
    StreamReader,
    make_client,
    pids_with_env,
    start_agent,
    start_run,
    wait_for,
    write_script,
)
from tcp_peer import TcpPeer

from client.config import Box, Config

# Streams as fast as Python prints, forever: only a stop ends it.
FLOOD = """
import sys
line = "x" * 100 + "\\n"
while True:
    sys.stdout.write(line)
"""
CATCH_AND_EXIT_5 = """
import sys
try:
    line = "y" * 100 + "\\n"
    while True:
        sys.stdout.write(line)
except KeyboardInterrupt:
    print("caught ctrl-c", file=sys.stderr, flush=True)
    sys.exit(5)
"""


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: ") and needle in result.stderr, result.stderr


def rows_for(client: Client, script: Path) -> list[dict]:
    listing = subprocess.run([LAGER, "python", "--list", "--json", "--box", client.box],
                             env={**client.env, "LAGER_MUX": "0"}, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert listing.returncode == 0, listing.stderr
    return [r for r in json.loads(listing.stdout) if r["script"] == str(script)]


class SlowReader:
    """A pipe reader that takes 4 KiB every 10 ms (by default): slower than any script prints."""

    def __init__(self, fd: int, delay: float = 0.01) -> None:
        self.fd = fd
        self.delay = delay
        self.total = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO: the pty's other side is gone
                return
            if not data:
                return
            self.total += len(data)
            time.sleep(self.delay)


def ctrl_c_into_a_slow_pipe(client: Client, script: Path) -> tuple[int, str]:
    """`lager python script` with its stdout read slowly, sent SIGINT once the output is well
    past the pipe's 64 KiB (lager is then writing into a full, slow pipe): its exit code and
    what it wrote on stderr."""
    proc = subprocess.Popen([LAGER, "python", str(script), "--box", client.box], env=client.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    reader = SlowReader(proc.stdout.fileno())
    err = StreamReader(proc.stderr)
    wait_for(lambda: reader.total > 256 * 1024, 30, what="output to stream")
    proc.send_signal(signal.SIGINT)
    code = proc.wait(30)
    # The reader to its EOF before proc's pipe is closed with it: a reader left on the fd would
    # read whatever next takes that number (the --list a test runs next).
    reader.thread.join(30)
    return code, err.join()


def test_ctrl_c_into_a_slow_pipe_stops_the_run_and_exits_130(client: Client,
                                                             tmp_path: Path) -> None:
    script = write_script(tmp_path, "flood.py", FLOOD)
    code, err = ctrl_c_into_a_slow_pipe(client, script)
    assert code == 130  # the old client hung here, every time
    assert "sent Ctrl-C" in err
    [row] = rows_for(client, script)
    assert row["state"] == "exited" and row["exit_code"] == 130


def test_ctrl_c_typed_on_a_terminal_stops_the_run(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "flood_tty.py", FLOOD)
    master, slave = os.openpty()
    setsid = shutil.which("setsid")
    assert setsid, "util-linux setsid makes the pty lager's controlling terminal"
    # setsid -c: lager leads a new session with the pty as its terminal, so the ^C byte typed
    # below reaches it as SIGINT from the terminal driver, as a real Ctrl-C does.
    proc = subprocess.Popen([setsid, "-c", LAGER, "python", str(script), "--box", client.box],
                            env=client.env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    reader = SlowReader(master)
    try:
        wait_for(lambda: reader.total > 256 * 1024, 30, what="output on the terminal")
        os.write(master, b"\x03")
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.thread.join(10)
        os.close(master)
    [row] = rows_for(client, script)
    assert row["state"] == "exited" and row["exit_code"] == 130


def test_a_script_that_catches_ctrl_c_gives_its_own_code(client: Client,
                                                          tmp_path: Path) -> None:
    script = write_script(tmp_path, "catch.py", CATCH_AND_EXIT_5)
    code, err = ctrl_c_into_a_slow_pipe(client, script)
    assert code == 5
    assert "caught ctrl-c" in err
    [row] = rows_for(client, script)
    assert row["exit_code"] == 5


def test_ctrl_c_again_escalates_then_leaves(client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "stubborn.py", """
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("deaf", flush=True)
time.sleep(120)
""")
    run = start_run(client, script)
    run.out.wait_for("deaf\n")
    run.proc.send_signal(signal.SIGINT)
    run.err.wait_for("sent Ctrl-C (SIGINT)")
    run.proc.send_signal(signal.SIGINT)
    run.err.wait_for("sent SIGTERM")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    assert "left the run" in run.err.text
    # With its client gone, the box stops the run itself, up to SIGKILL.
    wait_for(lambda: rows_for(client, script)[0]["state"] == "exited", 30,
             what="the box to stop the run")
    assert rows_for(client, script)[0]["exit_code"] == 128 + signal.SIGKILL


def test_ctrl_c_on_reattach_leaves_130_and_the_run_goes_on(client: Client,
                                                           tmp_path: Path) -> None:
    script = write_script(tmp_path, "ticks.py", """
import time
for i in range(100000):
    print("tick", i, flush=True)
    time.sleep(0.02)
""")
    started = client.run("python", str(script), "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[2]
    try:
        watch = client.popen("python", "--reattach", run_id)
        out, err = StreamReader(watch.stdout), StreamReader(watch.stderr)
        out.wait_for("tick 1\n")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(30) == 130
        assert "the run goes on" in err.join()
        [row] = rows_for(client, script)
        assert row["state"] == "running"
        last_seen = max(int(n) for n in re.findall(r"^tick (\d+)$", out.join(), re.M))
        # It goes on: a new watcher sees ticks the first one never got.
        again = client.popen("python", "--reattach", run_id)
        later = StreamReader(again.stdout)
        later.wait_for(f"tick {last_seen + 5}\n")
        again.send_signal(signal.SIGINT)
        assert again.wait(30) == 130
    finally:
        client.run("python", "--kill", run_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_is_255_in_one_line(client: Client, tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there once the probe socket is closed
    added = client.run("boxes", "add", "nobody", "--host", "127.0.0.1", "--port", str(port),
                       box=False)
    assert_one_line(added, 255, "refused the connection")
    Config(client.config_dir).add_box(Box(name="nobody", host="127.0.0.1", port=port))
    script = write_script(tmp_path, "never.py", "print('never')\n")
    for args in (["python", "--list"], ["python", "--continue", "abcd"], ["python", str(script)],
                 ["nets"]):
        result = client.run(*args, "--box", "nobody", box=False)
        assert_one_line(result, 255, "refused the connection")


def test_a_box_that_hangs_up_at_once_is_255_without_paramikos_traceback(
        client: Client) -> None:
    slam = BlackHole(slam=True)
    try:
        Config(client.config_dir).add_box(Box(name="slam", host="127.0.0.1", port=slam.port))
        for args in (["python", "--list"], ["python", "--continue", "abcd"]):
            result = client.run(*args, "--box", "slam", box=False)
            assert_one_line(result, 255, "closed the connection")
        added = client.run("boxes", "add", "slam2", "--host", "127.0.0.1", "--port",
                           str(slam.port), box=False)
        assert_one_line(added, 255, "closed the connection")
    finally:
        slam.close()


class BlackHole(TcpPeer):
    """Accepts TCP connections and never sends a byte: a box that hangs before SSH starts.
    With slam=True it closes each one at once instead, as a box over its connection limit."""

    def __init__(self, slam: bool = False) -> None:
        self.slam = slam
        super().__init__()

    def connected(self, conn: socket.socket) -> None:
        if self.slam:
            conn.close()
        else:
            super().connected(conn)


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    server = BlackHole()
    yield server
    server.close()


def test_a_box_that_never_answers_times_out_with_255(client: Client, hole: BlackHole) -> None:
    added = client.run("boxes", "add", "hole", "--host", "127.0.0.1", "--port", str(hole.port),
                       "--connect-timeout", "1", box=False)
    assert_one_line(added, 255, "within 1s")
    config = Config(client.config_dir)
    assert "hole" not in config.boxes()  # nothing pinned for a box that never spoke
    config.add_box(Box(name="hole", host="127.0.0.1", port=hole.port, connect_timeout=1.0))
    assert_one_line(client.run("python", "--list", "--box", "hole", box=False), 255,
                    "within 1s")
    # The env overrides the default (and a box's own value) for one command.
    config.add_box(Box(name="hole2", host="127.0.0.1", port=hole.port))
    client.env["LAGER_CONNECT_TIMEOUT"] = "1"
    try:
        assert_one_line(client.run("python", "--continue", "abcd", "--box", "hole2",
                                   box=False), 255, "within 1s")
    finally:
        del client.env["LAGER_CONNECT_TIMEOUT"]
    bad = client.run("boxes", "add", "x", "--host", "127.0.0.1", "--connect-timeout", "soon",
                     box=False)
    assert_one_line(bad, 2, "--connect-timeout")


def test_ctrl_c_while_connecting_is_130_not_aborted(client: Client, hole: BlackHole) -> None:
    Config(client.config_dir).add_box(Box(name="slowhole", host="127.0.0.1", port=hole.port,
                                          connect_timeout=60.0))
    proc = subprocess.Popen([LAGER, "python", "--list", "--box", "slowhole"], env=client.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: hole.kept, 30, what="lager to connect")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Aborted" not in err and "Traceback" not in err


def test_agent_killed_mid_run_is_255_in_one_line(tmp_path: Path) -> None:
    box = start_agent(tmp_path / "state")
    try:
        laptop = make_client(tmp_path / "laptop", box)
        assert laptop.run("python", "--list").returncode == 0  # leaves a keeper behind
        script = write_script(tmp_path, "flood.py", FLOOD)
        # With reconnecting switched off (issue 11 waits for the box by default).
        proc = subprocess.Popen([LAGER, "python", str(script), "--box", laptop.box],
                                env={**laptop.env, "LAGER_RECONNECT_FOR": "0"},
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        reader = SlowReader(proc.stdout.fileno(), delay=0)
        err = StreamReader(proc.stderr)
        wait_for(lambda: reader.total > 256 * 1024, 30, what="output to stream")
        box.proc.kill()  # mid-stream: the box's socket dies with data in flight
        box.proc.wait()
        code = proc.wait(60)
        text = err.join()
        assert code == 255, text
        assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
        assert "lost the connection" in text
        # Short requests, through the keeper or direct, say the same in one line.
        for args in (["python", "--continue", "abcd"], ["python", "--list"]):
            result = laptop.run(*args)
            assert result.returncode == 255 and "Traceback" not in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    finally:
        box.stop()


def _bench_pid(agent_pid: int) -> int:
    def find() -> int | None:
        try:
            children = Path(f"/proc/{agent_pid}/task/{agent_pid}/children").read_text().split()
        except OSError:
            return None
        for pid in map(int, children):
            try:
                if b"box_agent.simbench" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
        return None

    return wait_for(find, 20, what="the simulated bench")


def _unread_by(pid: int) -> int:
    """Bytes waiting, unread, in the TCP sockets of process pid (/proc/net/tcp rx_queue)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            total += int(fields[4].split(":")[1], 16)
    return total


@pytest.mark.parametrize("via_keeper", [False, True])
def test_agent_killed_mid_request_is_255_in_one_line(tmp_path: Path, via_keeper: bool) -> None:
    box = start_agent(tmp_path / "state")
    bench = _bench_pid(box.proc.pid)
    try:
        laptop = make_client(tmp_path / "laptop", box)
        if via_keeper:
            assert laptop.run("python", "--list").returncode == 0  # leaves a keeper behind
            wait_for(lambda: list((laptop.config_dir / "mux").glob("*.sock")), 20,
                     what="the keeper's socket")
        else:
            laptop.env["LAGER_MUX"] = "0"
        # A stopped bench: the box takes the request and waits on the instrument.
        os.kill(bench, signal.SIGSTOP)
        proc = subprocess.Popen([LAGER, "supply", "supply1", "state", "--box", laptop.box],
                                env=laptop.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: _unread_by(bench) > 0, 20, what="the box to ask the instrument")
        box.proc.kill()
        box.proc.wait()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 255, (proc.returncode, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    finally:
        try:
            os.kill(bench, signal.SIGKILL)  # stopped, it would never see its stdin close
        except ProcessLookupError:
            pass
        box.stop()


def test_duplicate_add_file_names_are_refused_before_anything_starts(client: Client,
                                                                     tmp_path: Path) -> None:
    script = write_script(tmp_path, "up.py", "print('ran')\n")
    one = write_script(tmp_path / "a", "cal.json", "{}")
    two = write_script(tmp_path / "b", "cal.json", "{}")
    twin = write_script(tmp_path / "c", "up.py", "print('impostor')\n")
    proj = tmp_path / "proj"
    write_script(proj, "main.py", "print('main')\n")
    write_script(proj, "helper.py", "X = 1\n")
    helper = write_script(tmp_path / "d", "helper.py", "X = 2\n")
    cases = [
        ([str(script), "--add-file", str(one), "--add-file", str(two)], "same name"),
        ([str(script), "--add-file", str(twin)], "would replace the script"),
        ([str(proj), "--add-file", str(helper)], "would replace helper.py"),
    ]
    for args, needle in cases:
        assert_one_line(client.run("python", *args), 2, needle)
    assert rows_for(client, script) == [] and rows_for(client, proj) == []


def test_a_changed_host_key_is_255_in_one_line(agent, tmp_path: Path) -> None:
    laptop = make_client(tmp_path / "laptop", agent)
    pinned = laptop.known_hosts.read_text().split()
    # Another valid ed25519 key where the box's was pinned: what a swapped box would show.
    other = (laptop.key_path.with_suffix(".pub")).read_text().split()[1]
    laptop.known_hosts.write_text(f"{pinned[0]} {pinned[1]} {other}\n")
    script = write_script(tmp_path, "hk.py", "print('never')\n")
    for args in (["python", "--list"], ["python", "--continue", "abcd"],
                 ["python", str(script)]):
        assert_one_line(laptop.run(*args), 255, "HOST KEY CHANGED")


def _keeper_pid(laptop: Client) -> int:
    def find() -> int | None:
        for pid in pids_with_env(str(laptop.config_dir)):
            try:
                if b"client.mux" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
        return None

    return wait_for(find, 20, what="the connection keeper")


def _has_socket(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd).startswith("socket:") for fd in fds.iterdir())
    except OSError:
        return False


def test_keeper_never_resends_a_continue_it_may_have_forwarded(agent,
                                                               tmp_path: Path) -> None:
    laptop = make_client(tmp_path / "laptop", agent)
    script = write_script(tmp_path, "twice.py", """
from lager import pause
pause("one", timeout=0)
pause("two", timeout=0)
print("done", flush=True)
""")
    laptop.env["LAGER_MUX"] = "0"  # the run does not serve as keeper: a keeper process does
    run = start_run(laptop, script)
    del laptop.env["LAGER_MUX"]
    ident = run.banner_id()
    assert laptop.run("python", "--list").returncode == 0  # leaves a keeper behind
    wait_for(lambda: list((laptop.config_dir / "mux").glob("*.sock")), 20,
             what="the keeper's socket")
    keeper = _keeper_pid(laptop)
    os.kill(keeper, signal.SIGSTOP)  # takes requests into its socket, answers none
    try:
        laptop.env["LAGER_MUX_TIMEOUT"] = "1"
        unsure = laptop.run("python", "--continue", ident)
        assert_one_line(unsure, 255, "not sent again")
        # A direct retry would have resumed "one" before lager exited; it is still paused.
        [row] = rows_for(laptop, script)
        assert row["state"] == "paused" and row["pause"]["label"] == "one"

        # Ctrl-C on the click-free path, waiting on the keeper: 130, no traceback.
        laptop.env["LAGER_MUX_TIMEOUT"] = "60"
        waiting = subprocess.Popen([LAGER, "python", "--continue", ident, "--box", "mybox"],
                                   env=laptop.env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: _has_socket(waiting.pid), 20, what="the request to reach the keeper")
        waiting.send_signal(signal.SIGINT)
        _, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 130 and "Traceback" not in err, err
    finally:
        os.kill(keeper, signal.SIGKILL)  # the requests it holds die with it, unsent
    [row] = rows_for(laptop, script)
    assert row["state"] == "paused" and row["pause"]["label"] == "one"
    for _ in ("one", "two"):
        wait_for(lambda: rows_for(laptop, script)[0]["state"] == "paused", what="a pause")
        assert laptop.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0 and "done" in run.out.text


def test_a_reader_that_goes_away_is_not_a_connection_error(client: Client,
                                                           tmp_path: Path) -> None:
    # `lager nets | head -1`: the reader is gone before lager writes a byte.
    proc = subprocess.Popen([LAGER, "nets", "--box", client.box], env=client.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    assert proc.wait(60) == 128 + signal.SIGPIPE
    assert proc.stderr.read() == ""
    # A run whose output reader leaves is stopped, as Ctrl-C would stop it.
    script = write_script(tmp_path, "flood_head.py", FLOOD)
    proc = subprocess.Popen([LAGER, "python", str(script), "--box", client.box],
                            env=client.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    err = StreamReader(proc.stderr)
    proc.stdout.read(4096)
    proc.stdout.close()
    assert proc.wait(60) == 130
    assert "output reader went away" in err.join()
    [row] = rows_for(client, script)
    assert row["state"] == "exited" and row["exit_code"] == 130
