"""Real OpenSSH parts on loopback for tests/test_openssh.py: sshd jump hosts, ssh-agent,
ssh-keygen keys and certificates, and a laptop with its own HOME (~/.ssh/config, known_hosts).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from conftest import LAGER, Agent, wait_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "", comment: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", comment or path.name,
                    "-f", str(path)], check=True, capture_output=True)
    return path


def sign(ca: Path, pub: Path, key_id: str, principals: str, *extra: str) -> Path:
    """ssh-keygen -s: a certificate for pub, written next to it as NAME-cert.pub."""
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", key_id, "-n", principals, *extra,
                    str(pub)], check=True, capture_output=True)
    return pub.with_name(pub.name.removesuffix(".pub") + "-cert.pub")


def public_line(key: Path) -> str:
    return " ".join(key.with_name(key.name + ".pub").read_text().split()[:2])


class Sshd:
    """An OpenSSH sshd with its own config on a free port: a jump host."""

    def __init__(self, root: Path, authorized: list[Path], host_cert_ca: Path | None = None,
                 principal: str = "") -> None:
        root.mkdir(parents=True)
        self.root = root
        self.host_key = keygen(root / "host")
        auth = root / "authorized_keys"
        auth.write_text("".join(public_line(k) + "\n" for k in authorized))
        os.chmod(auth, 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation dir sshd insists on
        self.port = free_port()
        self.log_path = root / "sshd.log"
        lines = [f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
                 f"AuthorizedKeysFile {auth}", "PasswordAuthentication no",
                 "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
                 "PidFile none", "PermitRootLogin yes", "AllowTcpForwarding yes",
                 "LogLevel DEBUG1"]
        if host_cert_ca is not None:
            cert = sign(host_cert_ca, self.host_key.with_suffix(".pub"), f"{root.name}-host",
                        principal, "-h")
            lines.append(f"HostCertificate {cert}")
        (root / "config").write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(root / "config"), "-E",
                                      str(self.log_path)])
        wait_for(self._listening, 15, what=f"sshd on port {self.port}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"sshd exited: {self.log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    @property
    def public_key(self) -> str:
        return public_line(self.host_key)

    def forwarded_to(self, port: int) -> bool:
        """sshd logged a direct-tcpip channel to 127.0.0.1:port (a ProxyJump through it)."""
        return f"direct_tcpip: originator 127.0.0.1 port 0, target 127.0.0.1 port {port}\n" \
            in self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class SshAgent:
    """A real ssh-agent (`ssh-agent -s`), keys added with ssh-add."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.sock = root / "agent.sock"
        out = subprocess.run(["ssh-agent", "-s", "-a", str(self.sock)], check=True,
                             capture_output=True, text=True).stdout
        self.pid = int(out.split("SSH_AGENT_PID=")[1].split(";")[0])

    def add(self, key: Path, passphrase: str = "") -> None:
        env = {**os.environ, "SSH_AUTH_SOCK": str(self.sock)}
        if passphrase:
            # ssh-add asks through SSH_ASKPASS when there is no terminal.
            askpass = key.with_name("askpass.sh")
            askpass.write_text(f"#!/bin/sh\necho '{passphrase}'\n")
            askpass.chmod(0o700)
            env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        subprocess.run(["ssh-add", str(key)], env=env, check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)


@dataclass
class Laptop:
    """A developer's machine: HOME with ~/.ssh, lager's config dir, no ssh-agent unless given."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.ssh_dir = self.home / ".ssh"
        self.ssh_dir.mkdir(parents=True)
        self.config_dir = self.root / "lager"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SSH_AUTH_SOCK", "LAGER_BOX", "LAGER_SSH_CONFIG", "CI")}
        self.env.update(HOME=str(self.home), LAGER_CONFIG_DIR=str(self.config_dir))

    def ssh_config(self, text: str) -> None:
        (self.ssh_dir / "config").write_text(text)

    def known_host(self, line: str, hashed: bool = False) -> None:
        path = self.ssh_dir / "known_hosts"
        with path.open("a") as f:
            f.write(line + "\n")
        if hashed:
            subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
            path.with_name("known_hosts.old").unlink()

    def use_agent(self, agent: SshAgent | None) -> None:
        if agent is None:
            self.env.pop("SSH_AUTH_SOCK", None)
        else:
            self.env["SSH_AUTH_SOCK"] = str(agent.sock)

    def lager(self, *args: str, input: str | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAGER, *args], env=self.env, input=input, capture_output=True,
                              text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([LAGER, *args], env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def box_host_key(agent: Agent) -> str:
    return public_line(agent.state_dir / "ssh_host_ed25519_key")


def authorize(box: Agent | Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lager-box authorize` on a box (or on a state dir, which it creates)."""
    from conftest import LAGER_BOX

    state = box if isinstance(box, Path) else box.state_dir
    return subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(state), *args],
                          capture_output=True, text=True)


def one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The failure contract: exit code, a single line on stderr, no traceback."""
    err = result.stderr.strip()
    assert result.returncode == code, (result.returncode, result.stderr, result.stdout)
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err
