"""lager against OpenSSH, side by side in one run, on loopback and through a slow link.

Prints one table. Every row has its OpenSSH baseline measured in the same run, alternated with
it call by call so drift on a busy machine hits both; values are medians. Nothing is asserted:
the targets (issue 13) are printed beside the ratios.

- OpenSSH `ssh -s SUBSYSTEM` against the same agent is the baseline of the short requests;
  OpenSSH `ssh` + `sshd` running the same script is the baseline of streaming.
- "first call": no connection keeper (LAGER_MUX=0), so a whole connection per command, as
  `ssh` without ControlMaster. "with a keeper": one is up (client/mux.py).
- "second terminal": a `lager python` run is attached in one terminal and `--continue` comes
  from another that has no keeper of its own (any keeper process is stopped before each call).
- The slow link is bench/delay_proxy.py, which delays each direction (25 ms: a 50 ms RTT).
- lager's modules are compiled first (compileall), as pip does at install time.
- CPU per MB: the client's CPU (lager, or ssh) and the box's (agent plus the run's monitor, or
  sshd and its session processes), each without the script's own CPU.

Run: .venv/bin/python bench/run_bench.py [--quick] [--only GROUP ...] [--rtt-ms 50]
Groups: second, first, slow, stream, firstbyte, console, imports. Needs OpenSSH's ssh and sshd.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
LAGER, LAGER_BOX = str(BIN / "lager"), str(BIN / "lager-box")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PROXY = str(Path(__file__).resolve().parent / "delay_proxy.py")
PACKAGES = [str(Path(__file__).resolve().parent.parent / d) for d in ("client", "lager", "box_agent")]
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "CIRCLECI")
TICK = os.sysconf("SC_CLK_TCK")
GROUPS = ("second", "first", "slow", "stream", "firstbyte", "console", "imports")


@dataclass
class Row:
    what: str
    lager: str
    base: str
    ratio: float | None
    target: str


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _read_port(proc: subprocess.Popen[str], pattern: str) -> int:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    match = re.search(pattern, line)
    if not match:
        raise RuntimeError(f"unexpected start-up line: {line!r}")
    return int(match.group(1))


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


def _cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime: the process and every child it has reaped."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15])


def _pids_with(needle: str, also: str) -> list[int]:
    """Our own processes whose command line holds both strings (keepers, runs, the bench)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if needle in cmdline and (also in cmdline or also in environ):
            pids.append(int(entry))
    return pids


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _descendants(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        found += [child, *_descendants(child)]
    return found


def _kill(pids: list[int]) -> None:
    pids = [p for pid in pids for p in (pid, *_descendants(pid))]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        while os.path.exists(f"/proc/{pid}") and _state(pid) not in ("Z", "X", ""):
            time.sleep(0.005)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


class Bench:
    """An agent, an OpenSSH sshd, and a delay proxy in front of each; lager's config with
    two boxes: `bench` (direct) and `slow` (through the proxy)."""

    def __init__(self, root: Path, rtt_ms: float) -> None:
        # lager as installed: pip compiles a package's modules at install time. Without that
        # (an editable install under PYTHONDONTWRITEBYTECODE, as on the shared dev machine)
        # every call compiles them again, about a quarter of a short request's CPU.
        subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGES], check=True,
                       capture_output=True)
        self.root = root
        self.rtt_ms = rtt_ms
        self.rows: list[Row] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.laptop = root / "laptop"
        self.state = root / "box"
        env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
        self.env = {**env, "LAGER_CONFIG_DIR": str(self.laptop), "LAGER_BOX": "bench",
                    "LAGER_MUX": "0"}
        self.agent = self._start([LAGER_BOX, "serve", "--listen", "127.0.0.1:0",
                                  "--state-dir", str(self.state)], stderr=True)
        self.port = _read_port(self.agent, r":(\d+) ")
        self.slow_port = self._proxy(self.port)
        self.lager_ok("boxes", "add", "bench", "--host", "127.0.0.1", "--port", str(self.port))
        self.lager_ok("boxes", "add", "slow", "--host", "127.0.0.1", "--port",
                      str(self.slow_port))
        self.key = self.laptop / "id_ed25519"
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(self.state),
                        f"{self.key}.pub"], check=True, capture_output=True)
        self.known_hosts = self.laptop / "known_hosts"
        self.sshd_port = self._start_sshd()
        self.slow_sshd_port = self._proxy(self.sshd_port)
        hostkey = (root / "sshd" / "host.pub").read_text().split()
        with open(root / "sshd" / "known_hosts", "w") as f:
            for port in (self.sshd_port, self.slow_sshd_port):
                f.write(f"[127.0.0.1]:{port} {hostkey[0]} {hostkey[1]}\n")

    # --- processes ---

    def _start(self, argv: list[str], stderr: bool = False) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.DEVNULL if stderr else None)
        self.procs.append(proc)
        return proc

    def _proxy(self, port: int) -> int:
        proc = self._start([sys.executable, PROXY, "--to", f"127.0.0.1:{port}",
                            "--delay-ms", str(self.rtt_ms / 2)])
        return _read_port(proc, r":(\d+)\s*$")

    def _start_sshd(self) -> int:
        d = self.root / "sshd"
        d.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host")],
                       check=True)
        shutil.copy(f"{self.key}.pub", d / "authorized_keys")
        os.chmod(d / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (d / "config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
            "PermitRootLogin yes\nLogLevel ERROR\n")
        # Its log goes to a file: the readiness probe below is a connection it would complain of.
        self.sshd = subprocess.Popen([SSHD, "-D", "-E", str(d / "log"), "-f", str(d / "config")])
        for _ in range(500):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return port
            time.sleep(0.01)
        raise RuntimeError("sshd did not start")

    def close(self) -> None:
        self.agent.send_signal(signal.SIGTERM)
        self.agent.wait(30)
        self.stop_keepers()
        # Runs and the simulated bench outlive the agent by design: end ours.
        _kill(_pids_with("box_agent.", str(self.state)))
        for proc in self.procs[1:]:
            proc.kill()
            proc.wait()
        self.sshd.terminate()
        self.sshd.wait(10)

    def stop_keepers(self) -> None:
        """End every connection keeper of this bench's config (never a run: a run may serve
        the keeper socket too, issue 13), and leave no socket behind."""
        _kill(_pids_with("client.mux", str(self.laptop)))
        for sock in (self.laptop / "mux").glob("*.sock"):
            if not _answers(sock):
                sock.unlink(missing_ok=True)

    def warm_keeper(self, box: str) -> None:
        """A keeper for `box`, up and answering: a keeper process, or an attached run of
        this bench's serving as one (issue 13)."""
        from client import mux
        from client.config import Config

        config = Config(self.laptop)
        path = mux.socket_path(config, config.box(box))
        self.lager_ok("python", "--list", "--box", box, mux=True)
        for _ in range(1000):
            if _answers(path):
                return
            time.sleep(0.01)
        raise RuntimeError("no keeper came up")

    # --- commands ---

    def lager_env(self, mux: bool) -> dict[str, str]:
        return {**self.env, "LAGER_MUX": "1" if mux else "0"}

    def lager(self, *args: str, mux: bool = False,
              stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAGER, *args], env=self.lager_env(mux), capture_output=True,
                              text=True, input=stdin)

    def lager_ok(self, *args: str, mux: bool = False) -> str:
        done = self.lager(*args, mux=mux)
        if done.returncode != 0:
            raise RuntimeError(f"lager {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def ssh_argv(self, *args: str, slow: bool = False, sshd: bool = False) -> list[str]:
        if sshd:
            port = self.slow_sshd_port if slow else self.sshd_port
            known = self.root / "sshd" / "known_hosts"
        else:
            port, known = (self.slow_port if slow else self.port), self.known_hosts
        return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                "-i", str(self.key), "-p", str(port), *args]

    def ssh_sub(self, subsystem: str, line: str | None, slow: bool = False
                ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.ssh_argv("-s", "lab@127.0.0.1", subsystem, slow=slow),
                              input=None if line is None else line + "\n", text=True,
                              capture_output=True, stdin=subprocess.DEVNULL if line is None
                              else None)

    def ssh_script(self, script: Path, slow: bool) -> list[str]:
        return self.ssh_argv(f"{getpass.getuser()}@127.0.0.1", f"{sys.executable} {script}",
                             slow=slow, sshd=True)

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    # --- rows ---

    def add(self, what: str, lager_s: list[float], base_s: list[float], target: str,
            unit: str = "ms") -> None:
        lm, bm = median(lager_s), median(base_s)
        scale = 1000.0 if unit == "ms" else 1.0
        self.rows.append(Row(what, f"{lm * scale:.1f}", f"{bm * scale:.1f}", lm / bm, target))

    def add_rate(self, what: str, lager_v: float, base_v: float, target: str) -> None:
        self.rows.append(Row(what, f"{lager_v:.0f}", f"{base_v:.0f}", lager_v / base_v, target))

    def add_info(self, what: str, lager: str, base: str = "", ratio: float | None = None,
                 target: str = "") -> None:
        self.rows.append(Row(what, lager, base, ratio, target))


# --- runs used by the rows ---

def start_pauser(b: Bench, pauses: int, box: str = "bench", mux: bool = False,
                 interactive: bool = False) -> subprocess.Popen[str]:
    script = b.write("pauser.py", (
        "from lager import pause\n"
        f"for i in range({pauses}):\n"
        f"    pause('bench', timeout=0, interactive={interactive})\n"))
    return subprocess.Popen([LAGER, "python", str(script), "--box", box],
                            env=b.lager_env(mux), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_banner(proc: subprocess.Popen[str]) -> str:
    while True:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the run ended before its pause")
        match = re.search(r"\(id (\S+)\)", line)
        if match:
            return match.group(1)


def end_pauser(b: Bench, proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)  # the attached client stops its run
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[:300]}")


def continues(b: Bench, n: int, lager_call: Callable[[str], object],
              ssh_call: Callable[[str], object], box: str = "bench", mux: bool = False,
              cold: bool = False) -> tuple[list[float], list[float]]:
    """n resumes by each client, alternated, of one attached run that pauses 2n times. Only the
    command is timed; with cold, any keeper is stopped (untimed) before each call."""
    proc = start_pauser(b, 2 * n, box=box, mux=mux)
    lager_t, ssh_t = [], []
    try:
        for _ in range(n):
            for times, call in ((lager_t, lager_call), (ssh_t, ssh_call)):
                ident = wait_banner(proc)
                if cold:
                    b.stop_keepers()
                times.append(timed(lambda: call(ident)))  # noqa: B023
    finally:
        end_pauser(b, proc)
    return lager_t, ssh_t


# --- the rows ---

def rows_second_terminal(b: Bench, n: int) -> None:
    lager_t, ssh_t = continues(
        b, n, lambda i: _check(b.lager("python", "--continue", i, mux=True), "lager"),
        lambda i: _check(b.ssh_sub("continue", i), "ssh -s continue"), mux=True, cold=True)
    b.add("--continue, 2nd terminal while a run is attached, no keeper", lager_t, ssh_t,
          "<= 0.7")
    b.warm_keeper("bench")
    lager_t, ssh_t = continues(
        b, n, lambda i: _check(b.lager("python", "--continue", i, mux=True), "lager"),
        lambda i: _check(b.ssh_sub("continue", i), "ssh"), mux=True)
    b.add("--continue, with a keeper", lager_t, ssh_t, "")
    b.stop_keepers()


def rows_first_call(b: Bench, n: int) -> None:
    lager_t, ssh_t = continues(
        b, n, lambda i: _check(b.lager("python", "--continue", i), "lager --continue"),
        lambda i: _check(b.ssh_sub("continue", i), "ssh -s continue"))
    b.add("--continue, first call (no keeper)", lager_t, ssh_t, "<= 1.0")
    sleeper = b.write("sleeper.py", "import time\ntime.sleep(600)\n")
    lager_t, ssh_t = [], []
    for _ in range(n):
        for times, kill in ((lager_t, lambda i: b.lager("python", "--kill", i)),
                            (ssh_t, lambda i: b.ssh_sub("kill", i))):
            out = b.lager_ok("python", str(sleeper), "--detach")
            ident = re.search(r"started run (\S+)", out).group(1)  # type: ignore[union-attr]
            times.append(timed(lambda: _check(kill(ident), "kill")))  # noqa: B023
    b.add("--kill, first call", lager_t, ssh_t, "<= 1.0")
    requests = [
        ("--list", ["python", "--list"], "list", None),
        ("supply supply2 state", ["supply", "supply2", "state"], "nets",
         {"command": "supply", "net": "supply2", "action": "state"}),
        ("battery battery1 state", ["battery", "battery1", "state"], "nets",
         {"command": "battery", "net": "battery1", "action": "state"}),
        ("adc adc1", ["adc", "adc1"], "nets", {"command": "adc", "net": "adc1",
                                               "action": "read"}),
        ("nets", ["nets"], "nets", {"command": "nets"}),
    ]
    for what, argv, subsystem, body in requests:
        line = None if body is None else json.dumps(body)
        _check(b.lager(*argv), f"lager {what}")
        _check(b.ssh_sub(subsystem, line), f"ssh {what}")
        lager_t, ssh_t = [], []
        for _ in range(n):
            lager_t.append(timed(lambda: _check(b.lager(*argv), what)))  # noqa: B023
            ssh_t.append(timed(lambda: _check(b.ssh_sub(subsystem, line), what)))  # noqa: B023
        b.add(f"{what}, first call", lager_t, ssh_t, "<= 1.0")


def rows_slow(b: Bench, n: int) -> None:
    rtt = f"{b.rtt_ms:g} ms RTT"

    def ssh(ident: str) -> None:
        _check(b.ssh_sub("continue", ident, slow=True), "ssh -s continue")

    lager_t, ssh_t = continues(
        b, n, lambda i: _check(b.lager("python", "--continue", i, "--box", "slow"), "lager"),
        ssh, box="slow")
    b.add(f"--continue at {rtt}, first call", lager_t, ssh_t, "<= 0.8")
    lager_t, ssh_t = continues(
        b, n, lambda i: _check(b.lager("python", "--continue", i, "--box", "slow", mux=True),
                               "lager"), ssh, box="slow", mux=True, cold=True)
    b.add(f"--continue at {rtt}, 2nd terminal while a run is attached", lager_t, ssh_t,
          "<= 0.3")
    b.warm_keeper("slow")
    lager_t, ssh_t = continues(
        b, n, lambda i: _check(b.lager("python", "--continue", i, "--box", "slow", mux=True),
                               "lager"), ssh, box="slow", mux=True)
    b.add(f"--continue at {rtt}, with a keeper", lager_t, ssh_t, "<= 0.3")
    b.stop_keepers()


def _settled_ticks(pid: int, children: set[int]) -> int:
    """The CPU ticks of `pid` once it has reaped every child beyond `children`."""
    for _ in range(3000):
        if not (_children(pid) - children):
            return _cpu_ticks(pid)
        time.sleep(0.005)
    raise RuntimeError(f"process {pid} did not reap its children")


def _script_cpu(stderr: bytes) -> float:
    match = re.search(rb"SCRIPT-CPU ([0-9.]+)", stderr)
    if not match:
        raise RuntimeError(f"no script CPU line in {stderr[-300:]!r}")
    return float(match.group(1))


def _stream_once(b: Bench, argv: list[str], env: dict[str, str] | None, server: int
                 ) -> tuple[float, float, float]:
    """(seconds, client CPU, server CPU), both CPUs without the script's own."""
    base = _children(server)
    before_server = _settled_ticks(server, base)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"stream failed: {done.stderr[-300:]!r}")
    script = _script_cpu(done.stderr)
    server_cpu = (_settled_ticks(server, base) - before_server) / TICK - script
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, client_cpu, server_cpu


def rows_stream(b: Bench, size_mb: int, rounds: int) -> None:
    script = b.write("flood.py", (
        "import os, sys\nchunk = b'x' * (1 << 20)\nout = sys.stdout.buffer\n"
        f"for _ in range({size_mb}):\n    out.write(chunk)\nout.flush()\n"
        "t = os.times()\nsys.stderr.write(f'SCRIPT-CPU {t.user + t.system}\\n')\n"))
    for slow, name in ((False, "loopback"), (True, f"{b.rtt_ms:g} ms RTT")):
        lager_runs, ssh_runs = [], []
        box = "slow" if slow else "bench"
        for _ in range(rounds):
            lager_runs.append(_stream_once(b, [LAGER, "python", str(script), "--box", box],
                                           b.lager_env(False), b.agent.pid))
            ssh_runs.append(_stream_once(b, b.ssh_script(script, slow), None, b.sshd.pid))
        lm = median([r[0] for r in lager_runs])
        sm = median([r[0] for r in ssh_runs])
        b.add_rate(f"{size_mb} MB of script stdout at {name}, MB/s", size_mb / lm, size_mb / sm,
                   ">= 2.0")
        if not slow:
            rows_stream_floor(b, script, size_mb, rounds, sm)
        for i, side in ((1, "client"), (2, "box")):
            lc = median([r[i] for r in lager_runs]) / size_mb * 1000
            sc = median([r[i] for r in ssh_runs]) / size_mb * 1000
            b.add_info(f"  CPU ms per MB, {side} side ({name})", f"{lc:.2f}", f"{sc:.2f}",
                       lc / sc if sc else None, "lower is better")


def rows_stream_floor(b: Bench, script: Path, size_mb: int, rounds: int, ssh_s: float) -> None:
    """The same bytes with no SSH at all (bench/stream_floor.py), against OpenSSH's time from
    the rows above: the ratio no SSH client and server could beat on this machine."""
    floor = Path(__file__).with_name("stream_floor.py")
    for what, extra in (("pipe -> TCP loopback", []),
                        ("pipe -> log file -> TCP loopback", ["--log", str(b.root / "floor.log")])):
        runs = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, str(floor), *extra, str(script)], check=True)
            runs.append(time.perf_counter() - start)
        b.add_info(f"  the same bytes with no SSH at all: {what}, MB/s",
                   f"{size_mb / median(runs):.0f}", f"{size_mb / ssh_s:.0f}",
                   ssh_s / median(runs), "the ceiling")


def _first_byte(argv: list[str], env: dict[str, str] | None) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.read(1)  # type: ignore[union-attr]
    took = time.perf_counter() - start
    proc.stdout.read()  # type: ignore[union-attr]
    proc.wait()
    return took


def rows_first_byte(b: Bench, n: int) -> None:
    script = b.write("hello.py", "print('x', flush=True)\n")
    for slow, name in ((False, "loopback"), (True, f"{b.rtt_ms:g} ms RTT")):
        box = "slow" if slow else "bench"
        lager_t, ssh_t = [], []
        for _ in range(n):
            lager_t.append(_first_byte([LAGER, "python", str(script), "--box", box],
                                       b.lager_env(False)))
            ssh_t.append(_first_byte(b.ssh_script(script, slow), None))
        b.add(f"first output byte of a run at {name}", lager_t, ssh_t, "")


def _console_open(argv: list[str], env: dict[str, str], first_line: str | None) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if first_line is not None:
        proc.stdin.write(first_line + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    while "paused at" not in proc.stdout.readline():  # type: ignore[union-attr]
        if proc.poll() is not None:
            raise RuntimeError(f"console failed: {proc.stderr.read()}")  # type: ignore[union-attr]
    took = time.perf_counter() - start
    proc.stdin.close()  # type: ignore[union-attr]
    proc.wait(10)
    return took


def rows_console(b: Bench, n: int) -> None:
    for box, mux, name in (("bench", False, "first call"), ("bench", True, "with a keeper"),
                           ("slow", False, f"first call at {b.rtt_ms:g} ms RTT")):
        proc = start_pauser(b, 1, box=box, mux=mux, interactive=True)
        ident = wait_banner(proc)
        if mux:
            b.warm_keeper(box)
        opens, lists = [], []
        for _ in range(n):
            opens.append(_console_open([LAGER, "python", "--console", ident, "--box", box],
                                       b.lager_env(mux), None))
            lists.append(timed(lambda: _check(b.lager("python", "--list", "--box", box,  # noqa: B023
                                                      mux=mux), "--list")))  # noqa: B023
        b.add(f"console open vs a --list ({name})", opens, lists, "<= 1.0")
        if not mux:
            ssh_t = [_console_open(b.ssh_argv("-s", "lab@127.0.0.1", "console",
                                              slow=box == "slow"), b.env, ident)
                     for _ in range(n)]
            b.add(f"  console open vs OpenSSH ssh -s console ({name})", opens, ssh_t, "")
        b.stop_keepers()
        end_pauser(b, proc)


# What the keeper's path must not load: click and paramiko (issue 13), and the start-up cost
# of typing, dataclasses (with inspect), hashlib (OpenSSL) a short command does without.
KEEPER_PATH_NEVER = ("click", "paramiko", "typing", "dataclasses", "inspect", "hashlib")
FIRST_CALL_NEVER = ("click", "paramiko", "dataclasses", "inspect", "hashlib")


def _heavy_loaded(b: Bench, argv: list[str], never: tuple[str, ...], mux: bool) -> str:
    done = subprocess.run([sys.executable, "-X", "importtime", LAGER, *argv],
                          env=b.lager_env(mux), capture_output=True, text=True)
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
             if line.startswith("import time:")}
    heavy = sorted({n.split(".")[0] for n in names} & set(never))
    return f"{argv[0]}: {', '.join(heavy) or 'none'}"


_NAMED_BY_IMPORTS = (["python", "--list"], ["nets"], ["supply", "supply2", "state"],
                     ["battery", "battery1", "state"], ["adc", "adc1"])


def row_keeper_imports(b: Bench) -> None:
    """What the keeper's path and a first call load, of the modules issue 13 keeps off them."""
    b.stop_keepers()
    first = [_heavy_loaded(b, argv, FIRST_CALL_NEVER, mux=False) for argv in _NAMED_BY_IMPORTS]
    b.add_info(f"first call loads any of {', '.join(FIRST_CALL_NEVER)}", "; ".join(first), "",
               None, "none")
    b.warm_keeper("bench")
    loaded = [_heavy_loaded(b, argv, KEEPER_PATH_NEVER, mux=True) for argv in _NAMED_BY_IMPORTS]
    b.add_info(f"keeper path loads any of {', '.join(KEEPER_PATH_NEVER)}", "; ".join(loaded),
               "", None, "none")
    b.stop_keepers()


def print_table(rows: list[Row]) -> None:
    header = Row("what (medians)", "lager", "OpenSSH", None, "target")
    cells = [(r.what, r.lager, r.base, "" if r.ratio is None else f"{r.ratio:.2f}x", r.target)
             for r in [header, *rows]]
    cells[0] = (header.what, "lager", "OpenSSH", "ratio", "target")
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    for c in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(c, widths, strict=True))).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description="lager vs OpenSSH, one table")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 50 MB streams")
    parser.add_argument("--only", nargs="+", choices=(*GROUPS, "fleet"), default=list(GROUPS))
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="the slow link's RTT")
    parser.add_argument("--repeat", type=int, default=0, help="calls per row and client")
    args = parser.parse_args()
    n = args.repeat or (5 if args.quick else 10)
    if "fleet" in args.only:  # issue 18, opt-in (50 agents): its own table, bench/fleet_bench.py
        subprocess.run([sys.executable, str(Path(__file__).with_name("fleet_bench.py")),
                        "--rounds", "1" if args.quick else "3"], check=True)
        args.only.remove("fleet")
        if not args.only:
            return
    root = Path(tempfile.mkdtemp(prefix="lager-bench-"))
    b = Bench(root, args.rtt_ms)
    steps: dict[str, Callable[[], None]] = {
        "second": lambda: rows_second_terminal(b, n),
        "first": lambda: rows_first_call(b, n),
        "slow": lambda: rows_slow(b, n),
        "stream": lambda: rows_stream(b, 50 if args.quick else 200, 3 if args.quick else 5),
        "firstbyte": lambda: rows_first_byte(b, n),
        "console": lambda: rows_console(b, n),
        "imports": lambda: row_keeper_imports(b),
    }
    try:
        for name in GROUPS:
            if name in args.only:
                steps[name]()
    finally:
        b.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"lager vs OpenSSH {subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr.strip()}"
          f"; ms unless noted; {n} calls per client per row; ratio = lager / OpenSSH")
    print_table(b.rows)


if __name__ == "__main__":
    main()
