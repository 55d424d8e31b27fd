"""A key the box refuses a terminal (`restrict` in authorized_keys, as OpenSSH reads it): the
console still works, line by line, says why in one line, and leaves the terminal as it was."""
from __future__ import annotations

import os
import select
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LAGER, Agent, Client, make_client, start_agent, start_run, write_script


@pytest.fixture
def restricted(tmp_path: Path) -> Iterator[tuple[Agent, Client]]:
    agent = start_agent(tmp_path / "state")
    try:
        client = make_client(tmp_path / "laptop", agent, authorize=False)
        public = (client.key_path.parent / (client.key_path.name + ".pub")).read_text()
        with (agent.state_dir / "authorized_keys").open("a") as keys:
            keys.write(f"restrict {public.strip()}\n")
        yield agent, client
    finally:
        agent.stop()


def _read_until(fd: int, needle: bytes, timeout: float = 60) -> bytes:
    seen = b""
    until = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_a_refused_terminal_keeps_the_terminal_cooked(restricted: tuple[Agent, Client],
                                                      tmp_path: Path) -> None:
    _, client = restricted
    script = write_script(tmp_path, "t.py", "from lager import pause\nanswer = 42\n"
                                            "pause('look', timeout=0, interactive=True)\n")
    live = start_run(client, script)
    ident = live.banner_id()
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        proc = subprocess.Popen([LAGER, "python", "--console", ident, "--box", client.box],
                                env=client.env, stdin=slave, stdout=slave,
                                stderr=subprocess.PIPE)
        os.write(master, b"print(answer * 2)\n")
        shown = _read_until(master, b"84")
        os.write(master, b"\x04")  # Ctrl-D on a cooked terminal: EOF, the console disconnects
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert b"84" in shown
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and "refused a terminal" in lines[0] and "restrict" in lines[0]
        after = termios.tcgetattr(slave)
        assert after[3] & termios.ICANON and after[3] & termios.ECHO
        assert after == before
    finally:
        os.close(master)
        os.close(slave)
    assert client.run("python", "--continue", ident).returncode == 0
    assert live.finish() == 0
