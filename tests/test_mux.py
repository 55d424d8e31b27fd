"""The per-box connection keeper (client/mux.py) behind short requests."""
from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

from conftest import laptop_on_a_new_box, pids_with_env, wait_for
from keeper_rig import connections, keeper_sockets, run_to_first_pause


def test_short_requests_reuse_one_connection(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        run, ident = run_to_first_pause(laptop, tmp_path)
        assert laptop.run("python", "--continue", ident).returncode == 0  # direct, leaves a keeper
        sock = wait_for(lambda: keeper_sockets(laptop), what="the keeper's socket")[0]
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        before = connections(laptop)
        run.err.wait_for("=== resumed")
        wait_for(lambda: run.err.text.count("=== lager breakpoint") == 2, what="second pause")
        fast = laptop.run("python", "--continue", ident)  # the click-free path, via the keeper
        assert fast.returncode == 0 and fast.stdout.startswith("resumed run")
        assert laptop.run("nets", "--json").returncode == 0
        refused = laptop.run("python", "--continue", "ffffffff")
        assert refused.returncode == 1 and refused.stderr.startswith("Error: no run with id")
        assert connections(laptop) == before  # no new SSH connection for any of them
        wait_for(lambda: run.err.text.count("=== lager breakpoint") == 3, what="third pause")
        assert laptop.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0
    # The keeper goes with its connection: no process and no socket left behind.
    wait_for(lambda: not keeper_sockets(laptop), 15, what="the keeper to exit")


def test_a_dead_keeper_falls_back_to_direct(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        assert laptop.run("python", "--list").returncode == 0
        sock = wait_for(lambda: keeper_sockets(laptop), what="keeper")[0]
        pid = next(p for p in pids_with_env(str(laptop.config_dir))
                   if b"client.mux" in _cmdline(Path(f"/proc/{p}")))
        os.kill(pid, signal.SIGKILL)  # leaves a stale socket file behind
        time.sleep(0.2)
        assert sock.exists()
        before = connections(laptop)
        result = laptop.run("python", "--continue", "abcd")
        assert result.returncode == 1 and "no run with id" in result.stderr
        assert connections(laptop) == before + 1  # it went direct


def test_lager_mux_0_turns_it_off(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        laptop.env["LAGER_MUX"] = "0"
        for _ in range(2):
            assert laptop.run("python", "--list").returncode == 0
        time.sleep(0.5)
        assert keeper_sockets(laptop) == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
