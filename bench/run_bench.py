"""Benchmarks, side by side in one run: lager against OpenSSH on the same machine.

Prints one table. Every row names its baseline measured in the same run; nothing is asserted.
Run: .venv/bin/python bench/run_bench.py [--quick]   (needs OpenSSH's sshd; see README)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
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
REPEAT = 5 if QUICK else 15


def median_p(values: list[float], pct: float = 0.9) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * pct))]


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: list[tuple[str, str, str, str]] = []
        self.env = {**os.environ, "LAGER_CONFIG_DIR": str(root / "laptop"), "LAGER_BOX": "bench"}
        self.agent = subprocess.Popen([LAGER_BOX, "serve", "--listen", "127.0.0.1:0",
                                       "--state-dir", str(root / "box")],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready = self.agent.stdout.readline()  # type: ignore[union-attr]
        self.port = int(re.search(r":(\d+) ", ready).group(1))  # type: ignore[union-attr]
        self.lager("boxes", "add", "bench", "--host", "127.0.0.1", "--port", str(self.port))
        self.key = root / "laptop" / "id_ed25519"
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(root / "box"),
                        f"{self.key}.pub"], check=True, capture_output=True)
        self.known_hosts = root / "laptop" / "known_hosts"
        self.sshd_port, self.sshd = self._start_sshd()

    def lager(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAGER, *args], env=self.env, capture_output=True, text=True,
                              check=True, **kw)  # type: ignore[call-overload]

    def _start_sshd(self) -> tuple[int, subprocess.Popen[bytes]]:
        d = self.root / "sshd"
        d.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host")],
                       check=True)
        shutil.copy(f"{self.key}.pub", d / "authorized_keys")
        os.chmod(d / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (d / "config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
            "PermitRootLogin yes\nLogLevel ERROR\n")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "config")])
        time.sleep(0.5)
        hostkey = (d / "host.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {hostkey[0]} {hostkey[1]}\n")
        return port, proc

    def ssh_cmd(self, port: int, known_hosts: Path, *args: str) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-i", str(self.key), "-p", str(port), *args]

    def add(self, what: str, lager_s: list[float], base_s: list[float], base_name: str) -> None:
        lm, lp = median_p(lager_s)
        bm, bp = median_p(base_s)
        self.rows.append((what, f"{lm * 1000:.1f} (p90 {lp * 1000:.1f})",
                          f"{bm * 1000:.1f} (p90 {bp * 1000:.1f}) {base_name}",
                          f"{lm / bm:.2f}"))

    def add_single(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note, ""))

    def close(self) -> None:
        self.agent.send_signal(signal.SIGTERM)
        self.agent.wait(30)
        self.sshd.terminate()
        self.sshd.wait(10)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_trivial_run(b: Bench) -> None:
    script = b.root / "trivial.py"
    script.write_text("print('ok')\n")
    ssh = b.ssh_cmd(b.sshd_port, b.root / "sshd" / "known_hosts", "root@127.0.0.1",
                    f"{sys.executable} {script}")
    lager_t, ssh_t = [], []
    for _ in range(REPEAT):
        lager_t.append(timed(lambda: b.lager("python", str(script))))
        ssh_t.append(timed(lambda: subprocess.run(ssh, check=True, capture_output=True)))
    b.add("connect+auth+trivial run, ms", lager_t, ssh_t, "ssh+sshd")


def bench_throughput(b: Bench) -> None:
    size_mb = 50 if QUICK else 200
    script = b.root / "flood.py"
    script.write_text("import sys\nchunk = b'x' * (1 << 20)\n"
                      f"for _ in range({size_mb}):\n    sys.stdout.buffer.write(chunk)\n")
    ssh = b.ssh_cmd(b.sshd_port, b.root / "sshd" / "known_hosts", "root@127.0.0.1",
                    f"{sys.executable} {script}")
    lager_t, ssh_t = [], []
    for _ in range(3 if QUICK else 7):  # alternated, so drift on a busy machine hits both
        lager_t.append(timed(lambda: subprocess.run([LAGER, "python", str(script)], env=b.env,
                                                    stdout=subprocess.DEVNULL, check=True)))
        ssh_t.append(timed(lambda: subprocess.run(ssh, stdout=subprocess.DEVNULL, check=True)))
    lm, sm = statistics.median(lager_t), statistics.median(ssh_t)
    b.rows.append((f"{size_mb} MB of script stdout, MB/s", f"{size_mb / lm:.0f}",
                   f"{size_mb / sm:.0f} ssh+sshd", f"{(size_mb / lm) / (size_mb / sm):.2f}"))


def start_pauser(b: Bench, n: int, marks: Path, interactive: bool = False) -> subprocess.Popen[str]:
    script = b.root / "pauser.py"
    script.write_text(
        "import time\nfrom lager import pause\n"
        f"for i in range({n}):\n"
        f"    pause('bench', timeout=0, interactive={interactive})\n"
        f"    with open({str(marks)!r}, 'a') as f:\n"
        "        f.write(f'{time.time()}\\n')\n")
    return subprocess.Popen([LAGER, "python", str(script)], env=b.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_banner(proc: subprocess.Popen[str]) -> str:
    while True:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("run ended")
        match = re.search(r"\(id (\S+)\)", line)
        if match:
            return match.group(1)


def wait_marks(marks: Path, count: int) -> float:
    while True:
        lines = marks.read_text().splitlines() if marks.exists() else []
        if len(lines) >= count:
            return float(lines[count - 1])
        time.sleep(0.0005)


def bench_resume(b: Bench) -> None:
    n = REPEAT * 2
    marks = b.root / "marks.txt"
    proc = start_pauser(b, n, marks)
    ssh = b.ssh_cmd(b.port, b.known_hosts, "-s", "lab@127.0.0.1", "continue")
    lager_t, ssh_t, agent_t = [], [], []
    for i in range(n):
        ident = wait_banner(proc)
        start = time.time()
        if i % 2 == 0:
            subprocess.run([LAGER, "python", "--continue", ident], env=b.env, check=True,
                           capture_output=True)
        else:
            subprocess.run(ssh, input=ident + "\n", text=True, check=True, capture_output=True)
        resumed = wait_marks(marks, i + 1)
        (lager_t if i % 2 == 0 else ssh_t).append(resumed - start)
        rows = json.loads(b.lager("python", "--list", "--json").stdout)
        last = next(r for r in rows if r["short_id"] == ident)["last_resume"]
        agent_t.append(resumed - last["at"])
    proc.wait(30)
    b.add("resume: command start -> next statement, ms", lager_t, ssh_t, "ssh -s continue")
    am, ap = median_p(agent_t)
    b.add_single("resume inside the agent (request -> pause() returns), ms",
                 f"{am * 1000:.2f} (p90 {ap * 1000:.2f})", "target <= 2 ms")


def bench_console(b: Bench) -> None:
    import paramiko

    marks = b.root / "cmarks.txt"
    proc = start_pauser(b, 1, marks, interactive=True)
    ident = wait_banner(proc)
    opens, continues = [], []
    for _ in range(REPEAT):
        start = time.perf_counter()
        con = subprocess.Popen([LAGER, "python", "--console", ident], env=b.env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        con.stdout.readline()  # type: ignore[union-attr]
        opens.append(time.perf_counter() - start)
        con.stdin.close()  # type: ignore[union-attr]
        con.wait(10)
        # --continue on a run that is not paused any more is the same client path, for scale
        continues.append(timed(lambda: subprocess.run(
            [LAGER, "python", "--list"], env=b.env, capture_output=True)))
    b.add("console open: start -> first line, ms", opens, continues, "lager --list")

    ssh = paramiko.SSHClient()
    ssh.load_host_keys(str(b.known_hosts))
    ssh.connect("127.0.0.1", b.port, username="lab", key_filename=str(b.key),
                look_for_keys=False, allow_agent=False)
    chan = ssh.get_transport().open_session()  # type: ignore[union-attr]
    chan.invoke_subsystem("console")
    chan.sendall(f"{ident}\n".encode())
    buf = b""
    while b"paused at" not in buf or not buf.endswith(b"\n"):
        buf += chan.recv(4096)
    trips = []
    for _ in range(50 if QUICK else 300):
        start = time.perf_counter()
        chan.sendall(b"1+1\n")
        got = b""
        while not got.endswith(b"2\n"):
            got += chan.recv(4096)
        trips.append(time.perf_counter() - start)
    chan.close()
    ssh.close()
    med, p99 = median_p(trips, 0.99)
    b.add_single("console round trip of 1+1, ms", f"{med * 1000:.2f} (p99 {p99 * 1000:.2f})")
    b.lager("python", "--continue", ident)
    proc.wait(30)


def bench_instruments(b: Bench) -> None:
    import pyvisa

    config = b.root / "box" / "bench-simulated.yaml"
    resource = re.search(r'"(TCPIP0::127\.0\.0\.1::\d+::SOCKET)"',
                         next(l for l in config.read_text().splitlines() if "dp821:" in l)).group(1)
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(resource, read_termination="\n", write_termination="\n")
    trips = [timed(lambda: inst.query(":SOUR1:VOLT?")) for _ in range(500)]
    inst.close()
    med, p99 = median_p(trips, 0.99)
    b.add_single("SCPI query via pyvisa-py to the simulator, ms",
                 f"{med * 1000:.3f} (p99 {p99 * 1000:.3f})")
    supply_t, cont_t = [], []
    for _ in range(REPEAT):
        supply_t.append(timed(lambda: b.lager("supply", "supply2", "state")))
        cont_t.append(timed(lambda: subprocess.run([LAGER, "python", "--continue", "ffff"],
                                                   env=b.env, capture_output=True)))
    b.add("lager supply supply2 state, ms", supply_t, cont_t, "lager --continue (refused)")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="lager-bench-"))
    b = Bench(root)
    try:
        for step in (bench_trivial_run, bench_throughput, bench_resume, bench_console,
                     bench_instruments):
            step(b)
    finally:
        b.close()
        shutil.rmtree(root, ignore_errors=True)
    widths = [max(len(r[i]) for r in [*b.rows, ("what", "lager", "baseline", "ratio")])
              for i in range(4)]
    header = ("what", "lager", "baseline (same run)", "ratio")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)))
    for row in b.rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)))


if __name__ == "__main__":
    main()
