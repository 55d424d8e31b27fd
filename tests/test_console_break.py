"""One channel reader for every subsystem (#14): a break, a signal and a window change from an
asyncssh client reach the console the same way, and none of them drops the connection."""
from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
from conftest import Client, start_run, write_script

SCRIPT = "from lager import pause\npause('look', timeout=0, interactive=True)\n"


async def _until(stdout: asyncssh.SSHReader[bytes], needle: bytes, seen: bytearray) -> None:
    while needle not in seen:
        try:
            chunk = await asyncio.wait_for(stdout.read(4096), 60)
        except TimeoutError:
            raise AssertionError(f"no {needle!r} in {bytes(seen)!r}") from None
        assert chunk, bytes(seen)
        seen += chunk


async def _drive(client: Client, ident: str) -> bytes:
    async with asyncssh.connect(client.agent.host, client.agent.port, username="lab",
                                known_hosts=None, client_keys=[str(client.key_path)],
                                agent_path=None, config=None) as conn:
        proc = await conn.create_process(subsystem="console", term_type="xterm",
                                         term_size=(80, 24), encoding=None)
        proc.stdin.write(ident.encode() + b"\n")
        seen = bytearray()
        await _until(proc.stdout, b">>> ", seen)
        for interrupt in (lambda: proc.send_break(0), lambda: proc.send_signal("INT")):
            del seen[:]
            proc.stdin.write(b"import time; time.sleep(600)\r")
            await _until(proc.stdout, b"time.sleep(600)", seen)
            interrupt()
            await _until(proc.stdout, b"KeyboardInterrupt", seen)
            await _until(proc.stdout, b">>> ", seen)
        proc.change_terminal_size(120, 40)
        del seen[:]
        proc.stdin.write(b"print(6 * 7)\r")  # the connection outlived the window change
        await _until(proc.stdout, b"42", seen)
        proc.stdin.write(b"\x04")
        await asyncio.wait_for(proc.wait_closed(), 60)
        return bytes(seen)


def test_break_signal_and_window_change_reach_the_console(client: Client,
                                                          tmp_path: Path) -> None:
    live = start_run(client, write_script(tmp_path, "t.py", SCRIPT))
    ident = live.banner_id()
    asyncio.run(_drive(client, ident))
    assert client.run("python", "--continue", ident).returncode == 0
    assert live.finish() == 0
