"""Hostile servers against the quick SSH client (client/quick_ssh.py), the first thing a short
request talks to when no keeper is up.

A fake box answers at a pinned box's address with generated garbage, a truncated packet, a
strict key exchange broken Terrapin-style, or a disconnect message full of escape sequences;
a real asyncssh server (code we did not write) answers with another host key. Each time the
real `lager` command gives one line and exit 255, never a traceback or a hang; and the quick
client itself, driven directly, refuses each one (it must not lean on the full path's checks).
"""
from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest
from conftest import LAGER, Client, make_client, start_agent
from tcp_peer import TcpPeer

from client import quick_ssh as q
from client.config import Box, Config
from client.quick_keys import load_ed25519

SEED = 20261205
Script = Callable[[socket.socket], None]


def plain_packet(payload: bytes) -> bytes:
    """An unencrypted SSH packet (RFC 4253 6): whole 8-byte blocks, at least 4 bytes of
    padding."""
    pad = -(5 + len(payload)) % 8
    pad += 8 if pad < 4 else 0
    body = bytes([pad]) + payload + bytes(pad)
    return struct.pack(">I", len(body)) + body


def kexinit(strict: bool = True, first_kex: bytes = b"") -> bytes:
    kex = first_kex + b"curve25519-sha256" + (b",kex-strict-s-v00@openssh.com" if strict
                                               else b"")
    lists = (kex, b"ssh-ed25519", b"aes128-gcm@openssh.com", b"aes128-gcm@openssh.com",
             b"hmac-sha2-256", b"hmac-sha2-256", b"none", b"none", b"", b"")
    return (bytes([q.KEXINIT]) + os.urandom(16) + b"".join(q.string(n) for n in lists)
            + b"\0" + q.u32(0))


def _garbage(conn: socket.socket) -> None:
    rng = random.Random(SEED)
    conn.sendall(rng.randbytes(20000))


def _version_then_garbage(conn: socket.socket) -> None:
    rng = random.Random(SEED + 1)
    conn.sendall(b"SSH-2.0-Evil\r\n" + rng.randbytes(4000))


def _truncated_packet(conn: socket.socket) -> None:
    whole = plain_packet(kexinit())
    conn.sendall(b"SSH-2.0-Evil\r\n" + whole[:len(whole) // 2])


def _terrapin(conn: socket.socket) -> None:
    # An IGNORE slipped in before the KEXINIT of a strict key exchange: what a Terrapin
    # attacker inserts to shift the sequence numbers.
    conn.sendall(b"SSH-2.0-Evil\r\n" + plain_packet(bytes([q.IGNORE]) + q.string(b"x"))
                 + plain_packet(kexinit(strict=True)))


def _escapes(conn: socket.socket) -> None:
    reason = b"\x1b[2J\x1b]0;pwned\x07 go away"
    conn.sendall(b"SSH-2.0-Evil\r\n" + plain_packet(bytes([q.DISCONNECT]) + q.u32(2)
                                                    + q.string(reason) + q.string(b"")))


SCRIPTS: dict[str, Script] = {"garbage": _garbage, "version then garbage": _version_then_garbage,
                              "truncated packet": _truncated_packet, "terrapin": _terrapin,
                              "escape sequences": _escapes}


class FakeBox(TcpPeer):
    """Accepts connections and plays `script` on each, then closes it once the client has."""

    def __init__(self, script: Script) -> None:
        self.script = script
        super().__init__()

    def connected(self, conn: socket.socket) -> None:
        threading.Thread(target=self._play, args=(conn,), daemon=True).start()

    def _play(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.script(conn)
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(30)
                while conn.recv(65536):
                    pass
            except OSError:
                pass



@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    root = tmp_path_factory.mktemp("hostile")
    agent = start_agent(root / "state")
    try:
        yield make_client(root / "laptop", agent)
    finally:
        agent.stop()


def _pin_box_at(laptop: Client, name: str, port: int) -> None:
    """Box `name` at 127.0.0.1:port, pinned to the real agent's host key: the box that was
    enrolled, and something else answering at its address now."""
    config = Config(laptop.config_dir)
    config.add_box(Box(name=name, host="127.0.0.1", port=port))
    real = laptop.known_hosts.read_text().splitlines()[0].split()
    with open(laptop.known_hosts, "a") as f:
        f.write(f"[127.0.0.1]:{port} {real[1]} {real[2]}\n")


def _one_line_255(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 255, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr, repr(result.stderr)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_a_hostile_box_gets_one_line_and_255(laptop: Client, name: str) -> None:
    fake = FakeBox(SCRIPTS[name])
    try:
        box = f"evil{list(SCRIPTS).index(name)}"
        _pin_box_at(laptop, box, fake.port)
        for args in (["python", "--list"], ["python", "--continue", "abcd"], ["nets"]):
            result = subprocess.run([LAGER, *args, "--box", box], env=laptop.env, text=True,
                                    capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
            _one_line_255(result)
        assert fake.connections >= 3
    finally:
        fake.close()


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_quick_client_itself_refuses_it(laptop: Client, name: str) -> None:
    """Driven directly: the quick client stops at the first wrong thing (Lost, or Unsupported
    so the full path decides), and nothing the box said reaches a message unfiltered."""
    fake = FakeBox(SCRIPTS[name])
    sock = socket.create_connection(("127.0.0.1", fake.port), timeout=30)
    transport = q.Transport(sock, b"\0" * 51)
    key, blob = load_ed25519(laptop.key_path)
    try:
        with pytest.raises((q.Lost, q.Unsupported)) as caught:
            transport.start("lager", key, blob, [])
        message = str(caught.value)
        assert message and "\x1b" not in message and "\x07" not in message
        if name == "terrapin":
            assert "strict key exchange" in message
    finally:
        transport.sock.close()
        fake.close()


def _other_first_kex(version: bytes) -> Script:
    def script(conn: socket.socket) -> None:
        conn.sendall(version + b"\r\n" + plain_packet(kexinit(first_kex=b"mlkem768x25519-sha256,")))
        conn.settimeout(60)
        while conn.recv(65536):  # and then nothing: our ECDH_INIT is not answered
            pass

    return script


def test_a_guess_the_box_would_drop_is_not_waited_on(laptop: Client) -> None:
    """RFC 4253 7: a server whose first-listed kex method is not ours ignores our guessed
    ECDH_INIT (OpenSSH does). Waiting for its reply would hang until the timeout."""
    fake = FakeBox(_other_first_kex(b"SSH-2.0-OpenSSH_9.9"))
    sock = socket.create_connection(("127.0.0.1", fake.port), timeout=20)
    transport = q.Transport(sock, b"\0" * 51)
    key, blob = load_ed25519(laptop.key_path)
    try:
        with pytest.raises(q.Unsupported, match="ignore the key-exchange guess"):
            transport.start("lager", key, blob, [])
    finally:
        transport.sock.close()
        fake.close()


def test_another_servers_host_key_gets_one_line_and_255(laptop: Client, tmp_path: Path) -> None:
    """A real SSH server (asyncssh) with its own host key at the pinned box's address."""
    ready: dict[str, int] = {}
    started = threading.Event()
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        key = asyncssh.generate_private_key("ssh-ed25519")
        server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[key],
                                       authorized_client_keys=None)
        ready["port"] = server.sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()),
                                              loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        _pin_box_at(laptop, "impostor", ready["port"])
        result = subprocess.run([LAGER, "python", "--list", "--box", "impostor"],
                                env=laptop.env, text=True, capture_output=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        _one_line_255(result)
        assert "HOST KEY CHANGED" in result.stderr
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
