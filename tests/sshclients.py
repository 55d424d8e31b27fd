"""The two outside clients the subsystems must serve: OpenSSH `ssh -s` and plain paramiko."""
from __future__ import annotations

import subprocess
from typing import Any

import paramiko
from conftest import Client


def openssh(client: Client, subsystem: str, stdin: bytes | str = b"", *options: str,
            tty: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    if isinstance(stdin, str):
        stdin = stdin.encode()
    cmd = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
           "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={client.known_hosts}",
           "-i", str(client.key_path), "-p", str(client.agent.port), *options,
           *(["-tt"] if tty else ["-T"]), "-s", f"lab@{client.agent.host}", subsystem]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)


def paramiko_connect(client: Client, **options: Any) -> paramiko.SSHClient:
    """A plain paramiko client: the box's pinned key, a box key, nothing else (options: more
    of SSHClient.connect's arguments)."""
    ssh = paramiko.SSHClient()
    ssh.load_host_keys(str(client.known_hosts))
    ssh.connect(client.agent.host, client.agent.port, username="lab",
                key_filename=str(client.key_path), look_for_keys=False, allow_agent=False,
                **options)
    return ssh


def paramiko_subsystem(client: Client, subsystem: str, first_line: str | bytes | None,
                       env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """The '10-line paramiko script' the README documents, as a test helper."""
    ssh = paramiko_connect(client)
    try:
        chan = ssh.get_transport().open_session()  # type: ignore[union-attr]
        for name, value in (env or {}).items():
            chan.set_environment_variable(name, value)
        chan.invoke_subsystem(subsystem)
        try:
            if first_line is not None:
                chan.sendall(first_line if isinstance(first_line, bytes) else
                             (first_line + "\n").encode())
            chan.shutdown_write()
        except OSError:
            pass  # the box may refuse an oversized request before it has all been sent
        out = chan.makefile("rb").read()
        err = chan.makefile_stderr("rb").read()
        return chan.recv_exit_status(), out, err
    finally:
        ssh.close()
