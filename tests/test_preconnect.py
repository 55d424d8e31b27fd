"""client/preconnect.py: a run connects, and sends its SSH version line, while it still
imports (issue 13); paramiko's transport then goes on from there without sending the line
again. The other side is a plain socket (what arrives, and when), OpenSSH's sshd (which
checks the key exchange's hash, our version line part of it, and rejects a second line as a
broken packet) and the lager agent (asyncssh) under a whole run."""
from __future__ import annotations

import importlib.metadata
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from conftest import cannot_run, laptop_on_a_new_box, write_script
from openssh_rig import SSHD, Sshd, keygen

from client import preconnect, ssh
from client.config import Box

VERSION_LINE = f"SSH-2.0-paramiko_{importlib.metadata.version('paramiko')}\r\n".encode()


def test_the_version_line_goes_out_before_paramiko_is_imported() -> None:
    """A box that says nothing yet gets our version line from a process that has not
    imported paramiko: the line does not wait for the import, nor for the box."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        probe = subprocess.Popen([sys.executable, "-c", (
            "import sys\n"
            "from client import preconnect\n"
            "from client.config import Box\n"
            f"preconnect.start(Box(name='b', host='127.0.0.1', port={port}))\n"
            f"sock = preconnect.take('127.0.0.1', {port}, 60)\n"
            "print('paramiko' in sys.modules, flush=True)\n"
            "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            listener.settimeout(60)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(60)
                got = b""
                while not got.endswith(b"\n"):
                    chunk = conn.recv(256)
                    assert chunk, got
                    got += chunk
                assert got == VERSION_LINE
                assert probe.stdout is not None
                assert probe.stdout.readline() == "False\n"
        finally:
            probe.communicate("", timeout=60)


def test_sshd_takes_the_early_line_and_the_key_exchange_hashes_it(tmp_path: Path) -> None:
    """OpenSSH's sshd, directly: the key exchange completes (its hash covers our version
    line, so a transport that hashed another line fails), and sshd saw one version line,
    paramiko's, never a second one."""
    if not shutil.which(SSHD):
        cannot_run("no OpenSSH sshd")
    sshd = Sshd(tmp_path / "sshd", [keygen(tmp_path / "key")])
    try:
        box = Box(name="plain", host="127.0.0.1", port=sshd.port)
        preconnect.start(box)
        transport = ssh.start_transport(box)
        try:
            assert transport.is_active()
            assert transport.remote_version.startswith("SSH-2.0-OpenSSH")
            assert transport.local_version.encode() + b"\r\n" == VERSION_LINE
            assert transport.get_remote_server_key().get_name() == "ssh-ed25519"
        finally:
            transport.close()
        # The socket was the early one: none is left waiting for this box.
        assert preconnect.take(box.host, box.port, 1) is None
    finally:
        sshd.stop()
    log = (tmp_path / "sshd" / "sshd.log").read_text()
    software = VERSION_LINE.decode().strip().removeprefix("SSH-2.0-")
    assert log.count(f"remote software version {software}") == 1, log


def test_a_run_starts_from_the_early_connection(tmp_path: Path) -> None:
    """The agent (asyncssh) under a whole run reached directly, its arguments as given; a
    script that is not there is refused in one line."""
    with laptop_on_a_new_box(tmp_path) as laptop:
        script = write_script(tmp_path, "hi.py", "import sys\nprint('hi', sys.argv[1:])\n")
        done = laptop.run("python", str(script), "--box", laptop.box, "a", "--", "-b", box=False)
        assert (done.returncode, done.stdout) == (0, "hi ['a', '-b']\n"), done.stderr
        missing = laptop.run("python", str(tmp_path / "nope.py"), "--box", laptop.box)
        assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
        assert "nope.py" in missing.stderr
