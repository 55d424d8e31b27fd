"""lager's client reads a big stream through its lean AES-GCM receive path (client/fast_recv.py)
while the box rekeys, and through paramiko's own path under another cipher (issue 13).

The box is the real agent (asyncssh); the stream is test_stream_exact's interleaved flood, read
back record by record. The client here is lager's own connection code (BoxConnection, or its
transport class with a cipher forced), in this process, so the test can see which path read
the packets.
"""
from __future__ import annotations

import socket
from pathlib import Path

import paramiko
from conftest import Client, laptop_on_a_new_box, start_run, write_script
from test_stream_exact import check_records, request

from client import ssh
from client.config import Config
from lager import protocol


def _run_stream(transport: paramiko.Transport, chan: paramiko.Channel) -> bytes:
    chan.sendall(request())
    received = bytearray()
    while data := chan.recv(1 << 20):
        received += data
    assert chan.recv_exit_status() == 0
    return bytes(received)


def test_the_box_rekeying_mid_stream_keeps_it_byte_exact(tmp_path: Path) -> None:
    """Three runs' streams on one lager connection, from a box that rekeys every 2 MiB
    (`--rekey-limit 2M`): each stream byte-exact, new inbound keys inside each, and the lean
    path reading again under every new key. lager's client never starts a key exchange itself
    (client/ssh.py; paramiko #822), so the box's are the ones that matter. One connection for
    all three: a run's channel closing during a key exchange once cost the whole connection
    1 time in 10 (paramiko's window adjust after its CLOSE; box_agent/late_adjust.py)."""
    with laptop_on_a_new_box(tmp_path, "--rekey-limit", "2M") as laptop:
        config = Config(laptop.config_dir)
        conn = ssh.BoxConnection(config, config.box(laptop.box))
        try:
            for _ in range(3):
                transport = conn.transport
                assert "gcm" in transport.remote_cipher
                reader = transport.lager_fast_recv
                keys_before, fast_keys_before = reader.key_sets, reader.fast_key_sets
                chan = conn.open("run")
                stdout = _run_stream(transport, chan)
                chan.close()
                check_records(stdout)
                # ~15 MiB at a new key every 2 MiB: several, and the lean path under each
                assert reader.key_sets - keys_before >= 3, "the box did not rekey mid-stream"
                assert reader.fast_key_sets - fast_keys_before >= reader.key_sets - keys_before
                assert reader.fast_packets > len(stdout) // protocol.MAX_PACKET
        finally:
            conn.close()


def test_another_cipher_forced_on_lagers_client_takes_paramikos_path(client: Client) -> None:
    sock = socket.create_connection((client.agent.host, client.agent.port), timeout=30)
    transport = ssh._transport_class()(sock)
    try:
        transport.get_security_options().ciphers = ("aes128-ctr",)
        transport.default_max_packet_size = ssh.MAX_PACKET
        transport.default_window_size = ssh.WINDOW
        transport.start_client(timeout=60)
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


def test_output_shows_while_the_script_waits_with_wakeups_batched(client: Client,
                                                                  tmp_path: Path) -> None:
    """lager's CLI shows a burst's last bytes while the script then waits: the receive path
    batches its channels' wakeups, and must flush them before its thread waits on the socket
    (the gate opens only once `ready` is seen, so a lost wakeup fails here, not hangs)."""
    gate = tmp_path / "go"
    script = write_script(tmp_path, "burst.py", "import os, sys, time\n"
                          "sys.stdout.write('x' * 99 + '\\n' * 1 + ('y' * 99 + '\\n') * 2000)\n"
                          "print('ready', flush=True)\n"
                          f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n"
                          "print('finished')\n")
    run = start_run(client, script)
    try:
        run.out.wait_for("ready\n", timeout=60)
    finally:
        gate.touch()
    assert run.finish(60) == 0
    assert run.out.text == "x" * 99 + "\n" + ("y" * 99 + "\n") * 2000 + "ready\nfinished\n"
