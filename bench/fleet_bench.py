"""Fleets (issue 18): one `lager python --box SET` against the ways people fan out today,
all in one run on loopback, with N real agents (default 50).

Rows, each with its baseline measured in the same run, alternated round by round so a busy
machine hits both; values are medians:
- laptop CPU per box: the fleet at N boxes, per box, against one `lager python` on one box
  (and against `xargs -P N lager python`, per box);
- wall time of one short script on N boxes: fleet against `xargs -P N lager python`;
- `--continue f-…` on N paused boxes against `xargs -P N ssh -s continue` (OpenSSH) and
  `xargs -P N lager python --continue`;
- laptop peak memory (every lager process and keeper of this laptop), per box beyond the first:
  the fleet at N against the fleet at 1, and xargs at N against one lager.

CPU is what the laptop's processes used (rusage of the children we wait for, plus the keepers
they leave behind, read from /proc before they are stopped). Memory is the sum of their RSS,
sampled every 10 ms. Nothing is asserted; the issue's targets are printed beside the ratios.

Run: .venv/bin/python bench/fleet_bench.py [--boxes 50] [--rounds 3]
The agents share one simulated bench (the first agent's) to keep the box side small.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from procs import end_left_under

BIN = Path(sys.executable).parent
LAGER, LAGER_BOX = str(BIN / "lager"), str(BIN / "lager-box")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "CIRCLECI")
SCRIPT = "import time\ntime.sleep(1)\nprint('done')\n"
PAUSE_SCRIPT = "from lager import pause\npause('bench', timeout=0)\nprint('resumed')\n"


class Agents:
    def __init__(self, root: Path, count: int) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[str]] = []
        self.ports: list[int] = []
        self.state_dirs: list[Path] = []
        bench_file: Path | None = None
        for i in range(count):
            state = root / f"box{i + 1:02d}"
            extra = ["--bench", str(bench_file)] if bench_file else []
            proc = subprocess.Popen([LAGER_BOX, "serve", "--listen", "127.0.0.1:0", "--state-dir",
                                     str(state), "--name", f"bench{i + 1:02d}", *extra],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("lager-box listening on "):
                raise SystemExit(f"agent {i + 1} did not start: {line!r}")
            self.procs.append(proc)
            self.ports.append(int(line.split()[3].rsplit(":", 1)[1]))
            self.state_dirs.append(state)
            if bench_file is None:
                bench_file = state / "bench-simulated.yaml"

    def close(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        # The first agent's simulated bench and any run monitors outlive their agent.
        end_left_under(self.root)


class Laptop:
    def __init__(self, root: Path, agents: Agents) -> None:
        self.dir = root / "laptop"
        # Generous: 50 clients starting at once on a loaded machine must not time out.
        self.env = {**os.environ, "LAGER_CONFIG_DIR": str(self.dir),
                    "LAGER_CONNECT_TIMEOUT": "120"}
        for name in ("LAGER_BOX", "LAGER_INVENTORY", *CI_VARIABLES):
            self.env.pop(name, None)
        self.names = [f"bench{i + 1:02d}" for i in range(len(agents.ports))]
        for name, port in zip(self.names, agents.ports, strict=True):
            subprocess.run([LAGER, "boxes", "add", name, "--host", "127.0.0.1", "--port",
                            str(port)], env=self.env, check=True, capture_output=True)
        pub = self.dir / "id_ed25519.pub"
        for state in agents.state_dirs:
            subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(state), str(pub)],
                           check=True, capture_output=True)
        self.script = root / "fleet_script.py"
        self.script.write_text(SCRIPT)
        self.pause_script = root / "pause_script.py"
        self.pause_script.write_text(PAUSE_SCRIPT)
        self.ports = dict(zip(self.names, agents.ports, strict=True))

    def set_of(self, n: int) -> str:
        return f"bench[01-{n:02d}]" if n > 1 else "bench[01]"

    def ours(self, pid: int) -> bool:
        try:
            return f"LAGER_CONFIG_DIR={self.dir}".encode() in \
                Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False

    def processes(self) -> list[int]:
        return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()
                and self.ours(int(e.name))]

    def stop_keepers(self) -> float:
        """Stop the keepers left behind; their CPU seconds, read before they go."""
        cpu = 0.0
        for pid in self.processes():
            try:
                if b"client.mux" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / TICK
                os.kill(pid, signal.SIGTERM)
            except (OSError, ProcessLookupError, IndexError):
                continue
        return cpu


class PeakMemory:
    """Sum of RSS of the laptop's processes, sampled until stopped; the peak."""

    def __init__(self, laptop: Laptop) -> None:
        self.laptop = laptop
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            total = 0
            for pid in self.laptop.processes():
                try:
                    total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
                except (OSError, IndexError):
                    continue
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def measure(laptop: Laptop, cmd: list[str], stdin: str | None = None) -> tuple[float, float, int]:
    """(wall s, laptop CPU s, peak RSS bytes) of one command and what it leaves behind."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    memory = PeakMemory(laptop)
    start = time.monotonic()
    done = subprocess.run(cmd, env=laptop.env, input=stdin, capture_output=True, text=True,
                          timeout=600)
    wall = time.monotonic() - start
    peak = memory.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({done.returncode}): "
                         f"{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu + laptop.stop_keepers(), peak


def fleet_run(laptop: Laptop, n: int) -> tuple[float, float, int]:
    return measure(laptop, [LAGER, "python", str(laptop.script), "--box", laptop.set_of(n)])


def single_run(laptop: Laptop) -> tuple[float, float, int]:
    return measure(laptop, [LAGER, "python", str(laptop.script), "--box", "bench01"])


def xargs_run(laptop: Laptop, n: int) -> tuple[float, float, int]:
    return measure(laptop, ["xargs", "-P", str(n), "-I{}", LAGER, "python", str(laptop.script),
                            "--box", "{}"], "\n".join(laptop.names[:n]) + "\n")


def pause_all(laptop: Laptop, n: int) -> tuple[str, dict[str, str]]:
    """A detached fleet paused on n boxes: its id and each box's run id."""
    done = subprocess.run([LAGER, "python", str(laptop.pause_script), "--box", laptop.set_of(n),
                           "--detach"], env=laptop.env, capture_output=True, text=True,
                          timeout=300, check=True)
    lines = done.stdout.splitlines()
    fleet = lines[0].split()[1]
    runs = {ln.split(":")[0]: ln.split()[-1] for ln in lines[1:]}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        listed = subprocess.run([LAGER, "python", "--list", "--json", "--box", laptop.set_of(n)],
                                env=laptop.env, capture_output=True, text=True, timeout=300)
        rows = json.loads(listed.stdout or "{}")
        paused = sum(1 for box, rid in runs.items() for r in rows.get(box, [])
                     if r["id"] == rid and r["state"] == "paused")
        if paused == n:
            return fleet, runs
        time.sleep(0.2)
    raise SystemExit("the paused fleet did not pause in time")


def continue_fleet(laptop: Laptop, n: int) -> float:
    fleet, _ = pause_all(laptop, n)
    return measure(laptop, [LAGER, "python", "--continue", fleet])[0]


def continue_ssh(laptop: Laptop, n: int) -> float:
    _, runs = pause_all(laptop, n)
    key = laptop.dir / "id_ed25519"
    lines = "".join(f"{laptop.ports[b]} {rid}\n" for b, rid in runs.items())
    cmd = ["xargs", "-P", str(n), "-L", "1", "sh", "-c",
           f"echo $1 | ssh -q -T -o BatchMode=yes -o IdentitiesOnly=yes -i {key} "
           f"-o UserKnownHostsFile={laptop.dir / 'known_hosts'} -o StrictHostKeyChecking=yes "
           "-p $0 -s lager@127.0.0.1 continue"]
    return measure(laptop, cmd, lines)[0]


def continue_xargs_lager(laptop: Laptop, n: int) -> float:
    _, runs = pause_all(laptop, n)
    lines = "".join(f"{b} {rid}\n" for b, rid in runs.items())
    cmd = ["xargs", "-P", str(n), "-L", "1", "sh", "-c",
           f"{LAGER} python --continue $1 --box $0"]
    return measure(laptop, cmd, lines)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description="fleet vs fan-out by hand, one table")
    parser.add_argument("--boxes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.boxes
    root = Path(tempfile.mkdtemp(prefix="lager-fleet-bench-"))
    agents = Agents(root, n)
    try:
        laptop = Laptop(root, agents)
        results: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            results.setdefault(name, []).append(value)

        for _ in range(args.rounds):
            wall, cpu, peak = fleet_run(laptop, n)
            add("fleet wall", wall), add("fleet cpu/box", cpu / n), add("fleet peak", peak)
            wall, cpu, peak = fleet_run(laptop, 1)
            add("fleet1 cpu", cpu), add("fleet1 peak", peak)
            wall, cpu, peak = single_run(laptop)
            add("single cpu", cpu), add("single peak", peak)
            wall, cpu, peak = xargs_run(laptop, n)
            add("xargs wall", wall), add("xargs cpu/box", cpu / n), add("xargs peak", peak)
            add("continue fleet", continue_fleet(laptop, n))
            add("continue ssh", continue_ssh(laptop, n))
            add("continue xargs lager", continue_xargs_lager(laptop, n))
        med = {k: statistics.median(v) for k, v in results.items()}
    finally:
        agents.close()
        shutil.rmtree(root, ignore_errors=True)
    mib = 1024 * 1024
    fleet_extra = (med["fleet peak"] - med["fleet1 peak"]) / (n - 1) / mib
    xargs_extra = (med["xargs peak"] - med["single peak"]) / (n - 1) / mib
    rows = [
        (f"laptop CPU per box, fleet at {n} / one lager at 1",
         f"{med['fleet cpu/box'] * 1000:.0f} ms", f"{med['single cpu'] * 1000:.0f} ms",
         med["fleet cpu/box"] / med["single cpu"], "<= 1.2x"),
        (f"laptop CPU per box, fleet at {n} / the fleet at 1",
         f"{med['fleet cpu/box'] * 1000:.0f} ms", f"{med['fleet1 cpu'] * 1000:.0f} ms",
         med["fleet cpu/box"] / med["fleet1 cpu"], "<= 1.2x"),
        (f"laptop CPU per extra box (fleet at {n} - at 1) / one lager at 1",
         f"{(med['fleet cpu/box'] * n - med['fleet1 cpu']) / (n - 1) * 1000:.1f} ms",
         f"{med['single cpu'] * 1000:.0f} ms",
         (med["fleet cpu/box"] * n - med["fleet1 cpu"]) / (n - 1) / med["single cpu"], "-"),
        (f"laptop CPU per box, fleet at {n} / xargs -P {n} lager",
         f"{med['fleet cpu/box'] * 1000:.0f} ms", f"{med['xargs cpu/box'] * 1000:.0f} ms",
         med["fleet cpu/box"] / med["xargs cpu/box"], "-"),
        (f"wall, 1 s script on {n}: fleet / xargs -P {n} lager",
         f"{med['fleet wall']:.2f} s", f"{med['xargs wall']:.2f} s",
         med["fleet wall"] / med["xargs wall"], "<= 1.0x"),
        (f"--continue f-… on {n} paused / xargs -P {n} ssh -s continue",
         f"{med['continue fleet']:.2f} s", f"{med['continue ssh']:.2f} s",
         med["continue fleet"] / med["continue ssh"], "<= 1.0x"),
        (f"--continue f-… on {n} paused / xargs -P {n} lager --continue",
         f"{med['continue fleet']:.2f} s", f"{med['continue xargs lager']:.2f} s",
         med["continue fleet"] / med["continue xargs lager"], "<= 1.0x"),
        ("laptop peak memory per box beyond the first: fleet / xargs",
         f"{fleet_extra:.2f} MiB", f"{xargs_extra:.2f} MiB",
         fleet_extra / xargs_extra if xargs_extra else float("nan"), "fleet <= 2 MiB"),
    ]
    print(f"fleet bench: {n} loopback agents, median of {args.rounds} rounds; "
          "ratio = lager fleet / baseline (same run)")
    width = max(len(r[0]) for r in rows)
    print(f"{'row':<{width}}  {'fleet':>10}  {'baseline':>10}  {'ratio':>6}  target")
    for what, ours, base, ratio, target in rows:
        print(f"{what:<{width}}  {ours:>10}  {base:>10}  {ratio:>5.2f}x  {target}")


if __name__ == "__main__":
    main()
