"""A client's window adjust for a channel it has just closed costs the box nothing: the
connection and its other channels go on, as they do against OpenSSH's sshd
(box_agent/late_adjust.py says where such an adjust comes from: paramiko under a key exchange).

The other side is not ours: paramiko sends each message, and OpenSSH's sshd, given the same
sequence, is the baseline that says what a server does with it.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest
from conftest import Client, wait_for
from openssh_rig import Sshd, keygen
from sshclients import paramiko_connect

from lager import protocol

Open = Callable[[paramiko.Transport], paramiko.Channel]


def _send_window_adjust(transport: paramiko.Transport, chan: paramiko.Channel) -> None:
    message = paramiko.Message()
    message.add_byte(paramiko.common.cMSG_CHANNEL_WINDOW_ADJUST)
    message.add_int(chan.remote_chanid)
    message.add_int(1 << 16)
    transport._send_user_message(message)  # what paramiko's reading thread sends


def _finish(chan: paramiko.Channel) -> tuple[int, bytes]:
    out = chan.makefile("rb").read()
    return chan.recv_exit_status(), out


def _late_adjusts(transport: paramiko.Transport, start: Open, stay_open: Open) -> None:
    """Both ways a late adjust reaches a server, each followed by a channel that must work."""
    # After the server has let the channel go: its close and ours done, a round trip since.
    done = start(transport)
    _finish(done)
    wait_for(lambda: done.closed, 15, what="the channel's close")
    status, _ = _finish(start(transport))  # a round trip: the server has dropped the first
    assert status == 0
    _send_window_adjust(transport, done)
    status, _ = _finish(start(transport))
    assert status == 0 and transport.is_active()
    # In the same flight as our CLOSE, while the server is still closing the channel.
    waiting = stay_open(transport)
    waiting.close()
    _send_window_adjust(transport, waiting)
    status, _ = _finish(start(transport))
    assert status == 0 and transport.is_active()


def _subsystem(name: str, line: bytes | None) -> Open:
    def open_it(transport: paramiko.Transport) -> paramiko.Channel:
        chan = transport.open_session()
        chan.invoke_subsystem(name)
        if line is not None:
            chan.sendall(line)
            chan.shutdown_write()
        return chan
    return open_it


def _command(command: str) -> Open:
    def open_it(transport: paramiko.Transport) -> paramiko.Channel:
        chan = transport.open_session()
        chan.exec_command(command)
        return chan
    return open_it


def test_sshd_keeps_the_connection_after_a_late_window_adjust(tmp_path: Path) -> None:
    """The baseline: OpenSSH's sshd ignores an adjust for a channel it has closed."""
    key = keygen(tmp_path / "key")
    sshd = Sshd(tmp_path / "sshd", [key])
    try:
        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        ssh.connect("127.0.0.1", sshd.port, username="root", key_filename=str(key),
                    look_for_keys=False, allow_agent=False)
        try:
            transport = ssh.get_transport()
            assert transport is not None
            _late_adjusts(transport, _command("true"), _command("sleep 30"))
        finally:
            ssh.close()
    finally:
        sshd.stop()


@pytest.mark.parametrize("waiting", ["run", "console"])
def test_the_box_keeps_the_connection_after_a_late_window_adjust(client: Client,
                                                                 waiting: str) -> None:
    """The same sequence against the box: a short request that ends (`list`), and one that
    waits for its request line when we close it (`run`, `console`)."""
    ssh = paramiko_connect(client)
    try:
        transport = ssh.get_transport()
        assert transport is not None
        _late_adjusts(transport, _subsystem(protocol.SUB_LIST, b""),
                      _subsystem(waiting, None))
    finally:
        ssh.close()
    assert "Invalid channel" not in client.agent.log()
    assert "Channel not open" not in client.agent.log()
