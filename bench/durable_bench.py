"""Runs that outlive their agent (issue 11): what a paused run costs, and how long a restart
takes with many paused runs. Prints one table; each row names its baseline from the same run.
Run: .venv/bin/python bench/durable_bench.py [--runs N]   (default 200)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
LAGER, LAGER_BOX = str(BIN / "lager"), str(BIN / "lager-box")
RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 200
PAUSER = "from lager import pause\npause('bench', timeout=0)\n"


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pids_with(*needles: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if all(n.encode() in cmd for n in needles):
                found.append(int(entry.name))
    return found


class Box:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "LAGER_CONFIG_DIR": str(root / "laptop"), "LAGER_BOX": "b",
                    "LAGER_MUX": "1"}
        self.port = 0
        self.agent = self.start()
        subprocess.run([LAGER, "boxes", "add", "b", "--host", "127.0.0.1", "--port",
                        str(self.port)], env=self.env, check=True, capture_output=True)
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(root / "box"),
                        str(root / "laptop" / "id_ed25519.pub")], check=True,
                       capture_output=True)

    def start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen([LAGER_BOX, "serve", "--listen", f"127.0.0.1:{self.port}",
                                 "--state-dir", str(self.root / "box")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready = proc.stdout.readline()  # type: ignore[union-attr]
        self.port = int(re.search(r":(\d+) ", ready).group(1))  # type: ignore[union-attr]
        return proc

    def lager(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAGER, *args], env=self.env, capture_output=True, text=True)

    def paused(self) -> int:
        rows = json.loads(self.lager("python", "--list", "--json").stdout or "[]")
        return sum(1 for r in rows if r["state"] == "paused")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="lager-durable-"))
    script = root / "pauser.py"
    script.write_text(PAUSER)
    box = Box(root)
    rows: list[tuple[str, str, str]] = []
    try:
        for _ in range(RUNS):
            box.lager("python", str(script), "--detach")
        while box.paused() < RUNS:
            time.sleep(0.2)
        monitors = pids_with("box_agent.monitor", str(root))
        scripts = [int(p) for m in monitors for p in
                   Path(f"/proc/{m}/task/{m}/children").read_text().split()]
        monitor_kib = sum(pss_kib(p) for p in monitors) / len(monitors)
        script_kib = sum(pss_kib(p) for p in scripts) / len(scripts)
        rows.append(("PSS per paused run: its monitor", f"{monitor_kib / 1024:.2f} MiB",
                     f"the paused script itself: {script_kib / 1024:.2f} MiB "
                     f"(x{monitor_kib / script_kib:.2f})"))
        # A restart with every run paused: SIGKILL, start, and every pause listed again.
        box.agent.kill()
        box.agent.wait()
        t0 = time.monotonic()
        box.agent = box.start()
        ready = time.monotonic() - t0
        while box.paused() < RUNS:
            time.sleep(0.05)
        listed = time.monotonic() - t0
        rows.append((f"restart with {RUNS} paused runs: ready line", f"{ready:.2f} s",
                     "-"))
        rows.append((f"restart with {RUNS} paused runs: all {RUNS} listed paused",
                     f"{listed:.2f} s", "-"))
        t0 = time.monotonic()
        box.agent.kill()
        box.agent.wait()
        empty = Box(root / "empty")
        rows.append(("agent start with no runs (baseline)", "-",
                     f"{time.monotonic() - t0:.2f} s incl. pinning"))
        empty.agent.send_signal(signal.SIGTERM)
        empty.agent.wait()
    finally:
        for pid in pids_with("box_agent", str(root)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids_with("pauser.py"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if box.agent.poll() is None:
            box.agent.kill()
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'what'.ljust(width)}  {'measured':>10}  baseline (same run)")
    for what, value, base in rows:
        print(f"{what.ljust(width)}  {value:>10}  {base}")


if __name__ == "__main__":
    main()
