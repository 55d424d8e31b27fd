"""A run is its own keeper (client/run_keeper.py): while `lager python SCRIPT` is attached, the
other terminals of the same user reach the box over the run's connection, with no handshake."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import (
    LiveRun,
    cannot_run,
    keeper_processes,
    laptop_on_a_new_box,
    make_client,
    wait_for,
    write_script,
)
from keeper_rig import (
    PAUSES_THREE_TIMES,
    connections,
    keeper_sockets,
    laptop_behind_a_holding_proxy,
    pin_pause,
    run_serving,
    run_to_first_pause,
)


def pauses(run: LiveRun) -> int:
    return run.err.text.count("=== lager breakpoint")


def test_a_second_terminal_rides_the_attached_runs_connection(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        run, ident = run_to_first_pause(laptop, tmp_path)
        sock = run_serving(laptop)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        before = connections(laptop)
        # The second terminal: the real CLI, its own process, the same config dir.
        listed = laptop.run("python", "--list")
        assert listed.returncode == 0 and ident in listed.stdout, listed.stderr
        assert laptop.run("nets", "--json").returncode == 0
        refused = laptop.run("python", "--continue", "ffffffff")
        assert refused.returncode == 1 and refused.stderr.startswith("Error: no run with id")
        resumed = laptop.run("python", "--continue", ident)
        assert resumed.returncode == 0 and resumed.stdout.startswith("resumed run"), \
            resumed.stderr
        wait_for(lambda: pauses(run) == 2, what="the second pause")
        # The click path (an option the fast path leaves to click) goes the same way.
        assert laptop.run("--debug", "python", "--continue", ident).returncode == 0
        wait_for(lambda: pauses(run) == 3, what="the third pause")
        assert connections(laptop) == before  # not one handshake for any of them
        assert keeper_processes(laptop) == []  # and no keeper of its own was left behind
        assert laptop.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0
        assert "done" in run.out.text
    # The run took its socket with it; the next request goes direct and leaves a keeper.
    assert keeper_sockets(laptop) == []


def test_lager_mux_0_serves_nothing_and_asks_no_keeper(tmp_path: Path) -> None:
    # Two laptops (two keys) with runs at once: a shared box would hold the second one back.
    with laptop_on_a_new_box(tmp_path, "--reservations", "off") as laptop:
        laptop.env["LAGER_MUX"] = "0"
        run, ident = run_to_first_pause(laptop, tmp_path)
        assert keeper_sockets(laptop) == []
        before = connections(laptop)
        assert laptop.run("python", "--continue", ident).returncode == 0
        assert connections(laptop) == before + 1  # direct
        wait_for(lambda: pauses(run) == 2, what="the second pause")
        # A run that serves, and a second terminal that turned it off: that one goes direct.
        served = make_client(tmp_path / "laptop2", laptop.agent)
        run2, ident2 = run_to_first_pause(served, tmp_path, "q.py")
        run_serving(served)
        before = connections(served)
        served.env["LAGER_MUX"] = "0"
        assert served.run("python", "--continue", ident2).returncode == 0
        assert connections(served) == before + 1
        wait_for(lambda: pauses(run2) == 2, what="the second pause")
        for ident_, client, live in ((ident, laptop, run), (ident2, served, run2)):
            assert client.run("python", "--continue", ident_).returncode == 0
            wait_for(lambda r=live: pauses(r) == 3, what="the third pause")  # type: ignore[misc]
            assert client.run("python", "--continue", ident_).returncode == 0
            assert live.finish() == 0


_KNOCK = r"""
import json, os, socket, sys
os.setgid(65534)
os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[2])
except PermissionError:
    print("EACCES")
    sys.exit(0)
reply = b""
try:
    s.sendall(json.dumps({"subsystem": "continue", "line": sys.argv[3], "env": None}).encode()
              + b"\n")
    s.shutdown(socket.SHUT_WR)
    while chunk := s.recv(65536):
        reply += chunk
except (ConnectionResetError, BrokenPipeError):
    pass  # closed on us before or while we wrote (the peer check is instant): no answer either
print("REPLY", reply.decode() or "<none>")
"""


def test_another_uid_gets_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        cannot_run("a second uid needs root")
    with laptop_on_a_new_box(tmp_path) as laptop:
        run, ident = run_to_first_pause(laptop, tmp_path)
        sock = run_serving(laptop)
        # Another uid cannot even walk to the socket (0700 dirs): give it a way in, a hard link
        # in an open directory, so the socket's own checks are what is tested.
        door = Path(tempfile.mkdtemp(prefix="lager-knock-"))
        door.chmod(0o755)
        os.link(sock, door / "keeper.sock")
        knock = [sys.executable, "-c", _KNOCK, "-", str(door / "keeper.sock"), ident]
        # The file's mode keeps another uid out...
        out = subprocess.run(knock, capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "EACCES", out.stderr
        # ...and with the mode loosened (a careless umask, a shared dir), the peer check does.
        before = connections(laptop)
        (door / "keeper.sock").chmod(0o666)
        out = subprocess.run(knock, capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "REPLY <none>", out.stderr
        assert pauses(run) == 1 and "=== resumed" not in run.err.text
        assert connections(laptop) == before
        # The same request from the run's own uid is served.
        assert laptop.run("python", "--continue", ident).returncode == 0
        run.err.wait_for("=== resumed")
        run.proc.terminate()
        run.finish()
        shutil.rmtree(door)


def test_the_runs_link_dropping_under_a_waiting_request(tmp_path: Path) -> None:
    with laptop_behind_a_holding_proxy(tmp_path) as (_, proxy, laptop):
        run, ident = run_to_first_pause(laptop, tmp_path)
        run_serving(laptop)

        # A --list on the run's link when it goes quiet, then drops: safe to ask again, so it
        # is asked directly, with one line saying why.
        proxy.hold_all()
        second = laptop.popen("python", "--list", stdin=subprocess.DEVNULL)
        wait_for(lambda: proxy.held_bytes > 0, what="the request on the held link")
        proxy.cut_all()
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0 and ident in out, err
        assert err.count("\n") == 1 and "asked directly" in err, err
        wait_for(lambda: run.err.text.count("reconnected to") == 1, 30, what="a reconnect")
        assert laptop.run("python", "--list").returncode == 0  # the run serves again

        # A --continue whose answer is held, then the link drops. The run numbered the bare
        # id from its own pause notice (`ID#1`, no round trip first), so the answer held is
        # the continue's: it reached the box, and is asked again directly with its number,
        # which the box answers "already resumed". (If the keeper's channel opened ahead was
        # not ready yet, it was the channel's opening that the link held: then nothing was
        # sent, it goes direct, and that resumes the pause.) Either way the run resumed once.
        wait_for(lambda: pin_pause(keeper_sockets(laptop)[0], "mybox", ident)
                 == f"{ident}#1", what="the run's own pause number")
        proxy.hold_all(towards_client_only=True)
        second = laptop.popen("python", "--continue", ident, stdin=subprocess.DEVNULL)
        wait_for(lambda: proxy.held_bytes > 0, what="the box's answer on the held link")
        proxy.cut_all()
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0 and err.count("\n") == 1, err
        if "asked directly" in err:
            assert out == f"already resumed: run {ident} pause 1\n", (out, err)
        else:
            assert "connected directly" in err and out.startswith("resumed run"), (out, err)
        wait_for(lambda: run.err.text.count("reconnected to") == 2, 30, what="a reconnect")
        wait_for(lambda: pauses(run) == 2, what="the second pause")  # resumed once, not twice

        # The run's link is down (its reconnect held up) when the request comes: nothing was
        # sent, so the request goes direct, with one line.
        proxy.hold_next()
        links = len(proxy.links)
        proxy.cut_all()
        wait_for(lambda: len(proxy.links) > links and proxy.held_bytes > 0,
                 what="the run's reconnect, held")
        second = laptop.popen("python", "--continue", ident, stdin=subprocess.DEVNULL)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0 and out.startswith("resumed run"), err
        assert err.count("\n") == 1 and "connected directly" in err, err
        proxy.release_all()
        wait_for(lambda: pauses(run) == 3, what="the third pause")
        wait_for(lambda: run.err.text.count("reconnected to") == 3, 30, what="a reconnect")

        # Over its new connection the run serves again: no handshake.
        wait_for(lambda: keeper_processes(laptop) == [], 30, what="spare keepers to go")
        before = connections(laptop)
        assert laptop.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0
        assert connections(laptop) == before


CONSOLE_SCRIPT = ("from lager import pause\nprobe = [41]\npause('look', timeout=0, interactive=True)\n"
                  "print('after', probe)\n")


def test_a_console_from_a_second_terminal_rides_the_runs_connection(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        run, ident = run_to_first_pause(laptop, tmp_path, "c.py", CONSOLE_SCRIPT)
        sock = run_serving(laptop)
        streams = sock.with_name(sock.stem + ".stream.sock")
        assert stat.S_IMODE(streams.stat().st_mode) == 0o600
        before = connections(laptop)
        console = laptop.run("python", "--console", ident,
                             input="probe[0] + 1\nprobe.append(99)\n")
        assert console.returncode == 0, console.stderr
        assert "42" in console.stdout.splitlines()
        assert connections(laptop) == before  # no handshake for the console either
        assert laptop.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0
        assert "after [41, 99]" in run.out.text  # the console's change reached the script
        assert connections(laptop) == before
    assert not any((laptop.config_dir / "mux").glob("*.sock"))  # both sockets went with it


def test_a_console_through_a_standalone_keeper_and_without_one(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        laptop.env["LAGER_MUX"] = "0"  # the run does not serve: a keeper of its own does
        run, ident = run_to_first_pause(laptop, tmp_path, "c.py", CONSOLE_SCRIPT)
        del laptop.env["LAGER_MUX"]
        assert laptop.run("python", "--list").returncode == 0  # direct, leaves a keeper
        wait_for(lambda: [s for s in keeper_sockets(laptop) if ".stream" in s.name],
                 what="the keeper's stream socket")
        before = connections(laptop)
        console = laptop.run("python", "--console", ident, input="probe[0] + 1\n")
        assert console.returncode == 0 and "42" in console.stdout.splitlines(), console.stderr
        assert connections(laptop) == before
        # LAGER_MUX=0: the console opens on its own connection, as before.
        laptop.env["LAGER_MUX"] = "0"
        console = laptop.run("python", "--console", ident, input="probe[0] + 2\n")
        assert console.returncode == 0 and "43" in console.stdout.splitlines(), console.stderr
        assert connections(laptop) == before + 1
        assert laptop.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0


def test_a_reattached_run_serves_too(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        script = write_script(tmp_path, "p.py", PAUSES_THREE_TIMES)
        started = laptop.run("python", str(script), "--detach")
        assert started.returncode == 0, started.stderr
        ident = started.stdout.split("started run ")[1].split()[0]
        proc = laptop.popen("python", "--reattach", ident)
        sock = wait_for(lambda: keeper_sockets(laptop), what="the reattached run's socket")[0]
        before = connections(laptop)
        for n in (1, 2, 3):
            wait_for(lambda n=n: laptop.run("python", "--list", "--json").stdout.count(  # type: ignore[misc]
                '"paused"') == 1, what=f"pause {n}")
            assert laptop.run("python", "--continue", ident).returncode == 0
        assert proc.wait(60) == 0
        assert connections(laptop) == before  # lists and continues, all over its connection
        assert not sock.exists()


def test_a_second_attached_run_takes_over_when_the_first_ends(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        first, ident1 = run_to_first_pause(laptop, tmp_path, "one.py")
        wait_for(lambda: keeper_sockets(laptop), what="the first run's socket")
        second, ident2 = run_to_first_pause(laptop, tmp_path, "two.py")
        for _ in range(3):  # the first run to its end, over its own connection
            count = pauses(first)
            assert laptop.run("python", "--continue", ident1).returncode == 0
            wait_for(lambda c=count: pauses(first) > c or first.proc.poll() is not None,  # type: ignore[misc]
                     what="the next pause")
        assert first.finish() == 0
        # The second run serves from now on: its continues need no handshake.
        wait_for(lambda: keeper_sockets(laptop), what="the second run taking over")
        wait_for(lambda: keeper_processes(laptop) == [], 30, what="spare keepers to go")
        before = connections(laptop)
        for n in (2, 3):
            assert laptop.run("python", "--continue", ident2).returncode == 0
            wait_for(lambda n=n: pauses(second) == n, what="the next pause")  # type: ignore[misc]
        assert laptop.run("python", "--continue", ident2).returncode == 0
        assert second.finish() == 0
        assert connections(laptop) == before
