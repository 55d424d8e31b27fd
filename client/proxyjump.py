"""The way to a box that is not reached directly: a ProxyCommand, direct-tcpip channels through
OpenSSH jump hosts (ProxyJump), and ServerAlive keepalives on each hop.

Each hop is its own paramiko transport whose socket is a channel of the one before, so every
hop's host key is checked and every hop authenticates, as `ssh -J` does.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import IO, TYPE_CHECKING

from lager.errors import ConnectionFailed

from .config import Box

if TYPE_CHECKING:
    import subprocess

    import paramiko

    from .ssh import Deadline


class ProxyProcess:
    """ProxyCommand through `sh -c`, as ssh runs it, on one end of a socketpair: paramiko gets a
    real socket, and the command's stderr is kept for the one-line failure."""

    def __init__(self, box: Box) -> None:
        # Imported here: only a ProxyCommand needs them, and the two (with shutil, bz2, lzma,
        # random) were ~3 ms of every run's start before its key exchange (issue 13).
        import subprocess
        import tempfile

        assert box.proxy_command is not None
        ours, theirs = socket.socketpair()
        # Lives as long as the proxy: read for the failure line, closed with the connection.
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                ["/bin/sh", "-c", box.proxy_command], stdin=theirs.fileno(),
                stdout=theirs.fileno(), stderr=self.stderr, start_new_session=True)
        except OSError as exc:
            ours.close()
            raise ConnectionFailed(f"{box.label}: cannot run ProxyCommand: {exc}") from None
        finally:
            theirs.close()
        self.sock = ours

    def last_words(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1].strip() if lines else ""

    def close(self) -> None:
        import subprocess

        self.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def keepalive(node: Box, transport: paramiko.Transport) -> None:
    """ServerAliveInterval / ServerAliveCountMax: a peer silent for interval x count is gone."""
    interval = node.server_alive_interval
    if interval <= 0:
        return
    patience = interval * max(1, node.server_alive_count_max)

    def ask(answered: threading.Event) -> None:
        transport.global_request("keepalive@openssh.com", wait=True)  # a refusal answers too
        answered.set()

    def watch() -> None:
        while transport.is_active():
            time.sleep(interval)
            answered = threading.Event()
            threading.Thread(target=ask, args=(answered,), daemon=True).start()
            if not answered.wait(patience) and transport.is_active():
                transport.close()  # as ssh: "Timeout, server not responding"
                return

    threading.Thread(target=watch, daemon=True, name="lager-keepalive").start()


def forward(hop: Box, transport: paramiko.Transport, node: Box,
            deadline: Deadline) -> paramiko.Channel:
    """A direct-tcpip channel from a jump host to the next host on the path."""
    from .ssh import _paramiko

    paramiko = _paramiko()
    try:
        return transport.open_channel("direct-tcpip", (node.host, node.port), ("127.0.0.1", 0),
                                      timeout=deadline.left())
    except paramiko.ssh_exception.ChannelException as exc:
        raise ConnectionFailed(f"{hop.label} cannot reach {node.label}: "
                               f"{exc.text or f'refused (code {exc.code})'}") from None
    except (paramiko.ssh_exception.SSHException, OSError, EOFError) as exc:
        if deadline.expired():
            raise deadline.too_slow(node, f"was not reached through {hop.label}") from None
        raise ConnectionFailed(f"{hop.label} cannot reach {node.label}: "
                               f"{exc or 'the connection dropped'}") from None
