"""lager's client reads a big stream through its lean AES-GCM receive path (client/fast_recv.py)
while it rekeys, and through paramiko's own path under another cipher (issue 13).

The box is the real agent (asyncssh); the stream is test_stream_exact's interleaved flood, read
back record by record. The client here is lager's own connection code (BoxConnection, or its
transport class with a cipher forced), in this process, so the test can see which path read
the packets.
"""
from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import paramiko
from conftest import Client, wait_for
from test_stream_exact import SCRIPT, check_records, expected, request

from client import ssh
from client.config import Config
from lager import protocol

REKEY_EVERY = 1 << 20  # client-side rekeys in the ~15 MiB stream
NEVER = 1 << 62


def _run_stream(transport: paramiko.Transport, chan: paramiko.Channel) -> bytes:
    chan.sendall(request())
    received = bytearray()
    while data := chan.recv(1 << 20):
        received += data
    assert chan.recv_exit_status() == 0
    return bytes(received)


def _gated_request(gate: Path) -> bytes:
    """test_stream_exact's flood, then the script waits for `gate` before it ends."""
    body = (SCRIPT + f"\nimport os, time\nwhile not os.path.exists({str(gate)!r}):\n"
            "    time.sleep(0.01)\n").encode()
    head = {"main": "t.py", "script": "t.py", "files": [{"path": "t.py", "size": len(body)}],
            "v": 2, "events": True}
    return json.dumps(head).encode() + b"\n" + body


def _stdout_and_stderr_bytes(data: bytes) -> tuple[int, int]:
    """How many stdout and stderr bytes the complete records at the front of `data` hold."""
    pos, counts = 0, {1: 0, 2: 0}
    while pos + 5 <= len(data):
        stream, length = struct.unpack(">BI", data[pos:pos + 5])
        if pos + 5 + length > len(data):
            break
        counts[stream] = counts.get(stream, 0) + length
        pos += 5 + length
    return counts[1], counts[2]


def _stream_rekeying(transport: paramiko.Transport, chan: paramiko.Channel,
                     gate: Path) -> bytes:
    """The flood read while the client rekeys every MiB. Once all of it is in, client-side
    rekeys stop and the script is let go only with no key exchange in progress: paramiko's
    transport thread, answering the box's channel close during a key exchange it began,
    waits for that exchange's end, which only it can read (paramiko #822; the same with
    paramiko's own read path, which is why lager's client leaves rekeys to the box)."""
    out, err, _ = expected()
    transport.packetizer.REKEY_BYTES = REKEY_EVERY
    chan.sendall(_gated_request(gate))
    received = bytearray()
    while _stdout_and_stderr_bytes(bytes(received)) != (len(out), len(err)):
        data = chan.recv(1 << 20)
        assert data, "the stream ended early"
        received += data
    transport.packetizer.REKEY_BYTES = NEVER
    wait_for(lambda: not transport.in_kex and not transport.packetizer.need_rekey(),
             what="the last client rekey to end")
    gate.touch()
    while data := chan.recv(1 << 20):
        received += data
    assert chan.recv_exit_status() == 0
    return bytes(received)


def test_lagers_client_rekeying_mid_stream_keeps_it_byte_exact(client: Client,
                                                              tmp_path: Path) -> None:
    """Three runs' streams on one connection whose client rekeys every MiB: each stream
    byte-exact, rekeys inside each, and the lean path reading again under new keys."""
    config = Config(client.config_dir)
    conn = ssh.BoxConnection(config, config.box(client.box))
    try:
        transport = conn.transport
        assert transport.remote_cipher.startswith("aes") and "gcm" in transport.remote_cipher
        reader = transport.lager_fast_recv
        fast_keys_before = reader.fast_key_sets
        for i in range(3):
            keys_before = reader.key_sets
            stdout = _stream_rekeying(transport, conn.open("run"), tmp_path / f"gate{i}")
            check_records(stdout)
            assert reader.key_sets > keys_before, "the client did not rekey mid-stream"
    finally:
        conn.close()
    assert reader.fast_key_sets - fast_keys_before >= 2, "the lean path did not take up again"
    assert reader.fast_packets > len(stdout) // protocol.MAX_PACKET


def test_another_cipher_forced_on_lagers_client_takes_paramikos_path(client: Client) -> None:
    sock = socket.create_connection((client.agent.host, client.agent.port), timeout=30)
    transport = ssh._transport_class()(sock)
    try:
        transport.get_security_options().ciphers = ("aes128-ctr",)
        transport.default_max_packet_size = ssh.MAX_PACKET
        transport.default_window_size = ssh.WINDOW
        transport.start_client(timeout=60)
        transport.packetizer.REKEY_BYTES = REKEY_EVERY
        key = paramiko.Ed25519Key.from_private_key_file(str(client.key_path))
        transport.auth_publickey("lab", key)
        assert transport.remote_cipher == "aes128-ctr"
        chan = transport.open_session(window_size=ssh.WINDOW, max_packet_size=ssh.MAX_PACKET)
        chan.invoke_subsystem("run")
        stdout = _run_stream(transport, chan)
    finally:
        transport.close()
    check_records(stdout)
    reader = transport.lager_fast_recv
    assert reader.fast_packets == 0
    assert reader.other_packets > len(stdout) // protocol.MAX_PACKET
