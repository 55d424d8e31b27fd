"""`lager python --continue` through one ProxyJump hop, next to OpenSSH `ssh -J` doing the same.

One run, side by side: a lager box and an OpenSSH sshd as the jump host, both on loopback, an
ssh_config alias `labbox` with `ProxyJump jump`. Each row times "command start -> the paused
script's next statement", alternating lager and ssh so drift on a busy machine hits both.
Medians and p90 in ms; nothing is asserted.

Rows:
- lager --continue (keeper): the usual case, the second and later resumes through one hop
  (the connection keeper holds the hop and the box; tests/test_openssh.py shows it).
- lager --continue (LAGER_MUX=0): every resume logs in to the jump host and the box afresh.
- ssh -J jump -s labbox continue: OpenSSH, also two logins every time.

Run: .venv/bin/python bench/proxyjump_bench.py [--quick]   (needs OpenSSH's sshd)
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
LAGER, LAGER_BOX = str(BIN / "lager"), str(BIN / "lager-box")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
QUICK = "--quick" in sys.argv
REPEAT = 6 if QUICK else 20


def median_p(values: list[float], pct: float = 0.9) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * pct))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def pub(path: Path) -> str:
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


class Rig:
    def __init__(self, root: Path) -> None:
        self.root = root
        home = root / "home"
        (home / ".ssh").mkdir(parents=True)
        self.key = keygen(home / ".ssh" / "id_ed25519")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SSH_AUTH_SOCK", "LAGER_BOX", "LAGER_SSH_CONFIG", "CI")}
        self.env.update(HOME=str(home), LAGER_CONFIG_DIR=str(root / "lager"))
        self.agent = subprocess.Popen([LAGER_BOX, "serve", "--listen", "127.0.0.1:0",
                                       "--state-dir", str(root / "box")],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready = self.agent.stdout.readline()  # type: ignore[union-attr]
        self.box_port = int(re.search(r":(\d+) ", ready).group(1))  # type: ignore[union-attr]
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(root / "box"),
                        f"{self.key}.pub"], check=True, capture_output=True)
        self.sshd_port, self.sshd = self._start_sshd()
        box_key = pub(root / "box" / "ssh_host_ed25519_key")
        jump_key = pub(root / "sshd" / "host")
        (home / ".ssh" / "known_hosts").write_text(
            f"[127.0.0.1]:{self.sshd_port} {jump_key}\nlabbox {box_key}\n")
        self.config = home / ".ssh" / "config"
        self.config.write_text(
            f"Host jump\n  HostName 127.0.0.1\n  Port {self.sshd_port}\n  User root\n"
            f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
            f"Host labbox\n  HostName 127.0.0.1\n  Port {self.box_port}\n  User lab\n"
            f"  HostKeyAlias labbox\n  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
            "  ProxyJump jump\n"
            # OpenSSH reads ~ from the password database, not $HOME: name the file for both.
            f"Host *\n  UserKnownHostsFile {home / '.ssh' / 'known_hosts'}\n")

    def _start_sshd(self) -> tuple[int, subprocess.Popen[bytes]]:
        d = self.root / "sshd"
        d.mkdir()
        keygen(d / "host")
        (d / "authorized_keys").write_text(pub(self.key) + "\n")
        os.chmod(d / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)
        port = free_port()
        (d / "config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
            "PermitRootLogin yes\nLogLevel ERROR\n")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "config")],
                                stderr=subprocess.DEVNULL)
        for _ in range(200):  # until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        return port, proc

    def ssh_continue(self) -> list[str]:
        # The user's own ssh_config and known_hosts, as they would type it.
        return ["ssh", "-F", str(self.config), "-o", "BatchMode=yes",
                "-J", "jump", "-s", "labbox", "continue"]

    def close(self) -> None:
        self.agent.send_signal(signal.SIGTERM)
        self.agent.wait(30)
        self.sshd.terminate()
        self.sshd.wait(10)


def start_pauser(rig: Rig, pauses: int, marks: Path) -> subprocess.Popen[str]:
    script = rig.root / "pauser.py"
    script.write_text(
        "import time\nfrom lager import pause\n"
        f"for i in range({pauses}):\n"
        "    pause('bench', timeout=0)\n"
        f"    with open({str(marks)!r}, 'a') as f:\n"
        "        f.write(f'{time.time()}\\n')\n")
    return subprocess.Popen([LAGER, "python", str(script), "--box", "labbox"], env=rig.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_banner(proc: subprocess.Popen[str]) -> str:
    while True:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the paused run ended")
        match = re.search(r"\(id (\S+)\)", line)
        if match:
            return match.group(1)


def wait_marks(marks: Path, count: int) -> float:
    while True:
        lines = marks.read_text().splitlines() if marks.exists() else []
        if len(lines) >= count:
            return float(lines[count - 1])
        time.sleep(0.0005)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="lager-pj-bench-"))
    rig = Rig(root)
    try:
        def lager(ident: str) -> tuple[list[str], str | None]:
            return [LAGER, "python", "--continue", ident, "--box", "labbox"], None

        def ssh(ident: str) -> tuple[list[str], str | None]:
            return rig.ssh_continue(), ident + "\n"  # the subsystem's first line is the id

        kinds: list[tuple[str, Callable[[str], tuple[list[str], str | None]],
                          dict[str, str]]] = [
            ("lager --continue (keeper)", lager, rig.env),
            ("lager --continue (LAGER_MUX=0)", lager, {**rig.env, "LAGER_MUX": "0"}),
            ("ssh -J jump -s labbox continue", ssh, rig.env),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
        marks = root / "marks"
        warmup = 1  # the first resume leaves the keeper behind and fills the resolution cache
        total = warmup + REPEAT * len(kinds)
        proc = start_pauser(rig, total, marks)
        for n in range(total):
            ident = wait_banner(proc)
            name, command, env = kinds[0] if n < warmup else kinds[(n - warmup) % len(kinds)]
            argv, stdin = command(ident)
            started = time.time()
            done = subprocess.run(argv, env=env, capture_output=True, text=True, input=stdin)
            if done.returncode != 0:
                raise RuntimeError(f"{name}: {done.stderr.strip()}")
            resumed = wait_marks(marks, n + 1)
            if n >= warmup:
                times[name].append(resumed - started)
        proc.wait(30)
        base_m, _ = median_p(times[kinds[2][0]])
        print(f"--continue through one ProxyJump hop (loopback), command start -> next "
              f"statement, {REPEAT} each, ms")
        print(f"{'':34} {'median':>8} {'p90':>8} {'x ssh -J':>9}")
        for name, _, _ in kinds:
            m, p = median_p(times[name])
            print(f"{name:34} {m * 1000:8.1f} {p * 1000:8.1f} {m / base_m:9.2f}")
    finally:
        rig.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
