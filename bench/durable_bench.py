"""Runs that outlive their agent (issue 11): what a paused run costs, how long a restart takes
with many paused runs, and how soon a client goes on after its link comes back. Prints one
table; each row names its baseline, measured in the same invocation.

Run: .venv/bin/python bench/durable_bench.py [--runs N] [--only memory|restart|reconnect]
(--runs: paused runs for the restart rows, default 200)

Memory, for N paused runs (N = 1, 10, 50, a fresh box each): the PSS of every box-side
process (agent, monitors, scripts) minus the agent's own before the runs (after one warm-up
run), minus the scripts' own, divided by N: what each paused run costs beyond its script.
The agent's own growth per run counts against the monitor, so this over-states it a little.
Before the monitor existed the agent was the script's parent, so the script alone is "today".
The Python monitor (the fallback where no C compiler was ever available) is measured too.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from procs import pids_with
from table import print_table

BIN = Path(sys.executable).parent
LAGER, LAGER_BOX = str(BIN / "lager"), str(BIN / "lager-box")
RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 200
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
MEMORY_NS = (1, 10, 50)
PAUSER = "from lager import pause\npause('bench', timeout=0)\n"
QUICK = "print('warm')\n"
# A line every 20 ms, numbered: the client's first line after the link is back is timed.
TICKER = ("import sys, time\nfor i in range(100000):\n    print(i, flush=True)\n"
          "    time.sleep(0.02)\n")
Row = tuple[str, str, str]


def smaps(pid: int) -> dict[str, int]:
    """KiB: Pss; Private (clean + dirty: what only this process holds); Private_Dirty (its
    heap and stacks); PTE (its page tables, kernel memory that no smaps line counts)."""
    out = {"Pss": 0, "Private": 0, "Private_Dirty": 0, "PTE": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Pss":
                out["Pss"] = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                out["Private"] += int(rest.split()[0])
                if key == "Private_Dirty":
                    out["Private_Dirty"] = int(rest.split()[0])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmPTE:"):
                out["PTE"] = int(line.split()[1])
    except OSError:
        pass
    return out




def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Box:
    """An agent on a state dir of its own, and a laptop config that reaches it (optionally
    through a port of our choosing, such as a proxy's)."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.agent_env = {**os.environ, **(env or {})}
        self.env = {**os.environ, "LAGER_CONFIG_DIR": str(root / "laptop"), "LAGER_BOX": "b",
                    "LAGER_MUX": "1"}
        self.env.pop("CI", None)  # CI=true would stop runs on a lost connection
        self.port = 0
        self.agent = self.start()
        self.add_box(self.port)
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(root / "box"),
                        str(root / "laptop" / "id_ed25519.pub")], check=True,
                       capture_output=True)

    def add_box(self, port: int) -> None:
        subprocess.run([LAGER, "boxes", "add", "b", "--host", "127.0.0.1", "--port",
                        str(port)], env=self.env, check=True, capture_output=True)

    def start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen([LAGER_BOX, "serve", "--listen", f"127.0.0.1:{self.port}",
                                 "--state-dir", str(self.root / "box")], env=self.agent_env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready = proc.stdout.readline()  # type: ignore[union-attr]
        self.port = int(re.search(r":(\d+) ", ready).group(1))  # type: ignore[union-attr]
        return proc

    def lager(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAGER, *args], env=self.env, capture_output=True, text=True)

    def paused(self) -> int:
        rows = json.loads(self.lager("python", "--list", "--json").stdout or "[]")
        return sum(1 for r in rows if r["state"] == "paused")

    def start_paused(self, script: Path, count: int) -> None:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: self.lager("python", str(script), "--detach"),
                          range(count)))
        while self.paused() < count:
            time.sleep(0.2)

    def box_side(self) -> list[int]:
        """The agent and every process started for this box's runs."""
        found = set([self.agent.pid, *pids_with(str(self.root / "box"))])
        todo = list(found)
        while todo:
            for child in children(todo.pop()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return sorted(found)

    def end(self) -> None:
        if self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()
        for pid in pids_with(str(self.root / "box")):
            for child in [*children(pid), pid]:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# -- memory ------------------------------------------------------------------------------------

def memory_rows(root: Path) -> list[Row]:
    """Per paused run: the monitor's PSS and page tables, plus the agent's own heap growth,
    over N. Both ways of counting are shown: the sum of every box-side process's PSS minus the
    agent's before and the scripts' own moves with how pages are shared between the agent and
    N scripts (at N=1 a script takes half the agent's shared pages and the result goes
    negative), so the heap-and-monitor count, which sharing does not move, is the headline."""
    pauser, quick = root / "pauser.py", root / "quick.py"
    pauser.write_text(PAUSER)
    quick.write_text(QUICK)
    rows: list[Row] = []
    for kind, env in (("C", {}), ("Python", {"LAGER_BOX_PYTHON_MONITOR": "1"})):
        for n in MEMORY_NS:
            box = Box(root / f"mem-{kind}-{n}", env)
            try:
                box.lager("python", str(quick))  # the agent's lazy imports, once
                time.sleep(1.0)
                agent_before = smaps(box.agent.pid)
                pss_before = sum(smaps(p)["Pss"] for p in box.box_side())
                box.start_paused(pauser, n)
                time.sleep(1.0)
                monitors = pids_with("box_agent.monitor", str(box.root / "box"))
                scripts = [s for m in monitors for s in children(m)]
                pss_total = sum(smaps(p)["Pss"] for p in box.box_side())
                script_pss = sum(smaps(p)["Pss"] for p in scripts)
                own = [smaps(p) for p in monitors]
                mon_pss = sum(m["Pss"] for m in own)
                mon_pte = sum(m["PTE"] for m in own)
                agent_growth = smaps(box.agent.pid)["Private_Dirty"] - \
                    agent_before["Private_Dirty"]
                per_run = (mon_pss + mon_pte + agent_growth) / n
                by_pss = (pss_total - pss_before - script_pss) / n
                rows.append((f"memory per paused run beyond its script, {kind} monitor, N={n}",
                             f"{per_run / 1024:.2f} MiB",
                             f"script alone {script_pss / max(1, len(scripts)) / 1024:.2f} MiB"
                             f"; monitor PSS {mon_pss / max(1, n) / 1024:.2f} + page tables "
                             f"{mon_pte / max(1, n) / 1024:.2f}, agent heap "
                             f"{agent_growth / n / 1024:+.2f}; total-PSS count "
                             f"{by_pss / 1024:.2f} MiB"))
            finally:
                box.end()
    return rows


# -- restart -----------------------------------------------------------------------------------

def restart_time(box: Box, count: int) -> tuple[float, float]:
    """SIGKILL the agent, start it: seconds to its ready line, and to all runs listed paused."""
    box.agent.kill()
    box.agent.wait()
    t0 = time.monotonic()
    box.agent = box.start()
    ready = time.monotonic() - t0
    while box.paused() < count:
        time.sleep(0.05)
    return ready, time.monotonic() - t0


def restart_rows(root: Path) -> list[Row]:
    pauser = root / "pauser.py"
    pauser.write_text(PAUSER)
    empty = Box(root / "restart-0")
    try:
        base_ready, base_listed = restart_time(empty, 0)
    finally:
        empty.end()
    box = Box(root / "restart-n")
    try:
        box.start_paused(pauser, RUNS)
        ready, listed = restart_time(box, RUNS)
    finally:
        box.end()
    return [(f"agent SIGKILLed and restarted, {RUNS} paused runs: ready line", f"{ready:.2f} s",
             f"no runs: {base_ready:.2f} s"),
            (f"... and all {RUNS} listed paused (a --list answered)", f"{listed:.2f} s",
             f"no runs: {base_listed:.2f} s")]


# -- reconnect ---------------------------------------------------------------------------------

class CuttableProxy:
    """A loopback TCP relay whose link can be cut (every connection reset, new ones refused)
    and restored on the same port: a Wi-Fi drop, as the client sees it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self._serve(self.listener)

    def _listen(self, port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(16)
        return s

    def _serve(self, listener: socket.socket) -> None:
        def accept() -> None:
            while True:
                try:
                    a, _ = listener.accept()
                except OSError:
                    return
                b = socket.create_connection(("127.0.0.1", self.target))
                with self.lock:
                    self.conns += [a, b]
                for src, dst in ((a, b), (b, a)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        # shutdown() first: a thread blocked in accept() or recv() keeps a closed socket open.
        for s in [self.listener, *self.conns]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.lock:
            self.conns = []

    def restore(self) -> None:
        self.listener = self._listen(self.port)
        self._serve(self.listener)


def _first_line_after(lines: list[tuple[float, str]], t: float, lock: threading.Lock,
                      limit: float = 60.0) -> float:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with lock:
            later = [at for at, _ in lines if at > t]
        if later:
            return later[0] - t
        time.sleep(0.005)
    raise RuntimeError("no output after the link came back")


def reconnect_rows(root: Path) -> list[Row]:
    ticker = root / "ticker.py"
    ticker.write_text(TICKER)
    box = Box(root / "reconnect")
    proxy = CuttableProxy(box.port)
    box.add_box(proxy.port)
    rows: list[Row] = []
    client = subprocess.Popen([LAGER, "python", str(ticker)], env={**box.env, "LAGER_MUX": "0"},
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: list[tuple[float, str]] = []
    lock = threading.Lock()

    def read() -> None:
        assert client.stdout is not None
        for raw in client.stdout:
            with lock:
                lines.append((time.monotonic(), raw.decode().strip()))
    threading.Thread(target=read, daemon=True).start()
    try:
        _first_line_after(lines, time.monotonic(), lock)
        for outage in (1.0, 10.0):
            samples = []
            for _ in range(3):
                proxy.cut()
                time.sleep(outage)
                restored = time.monotonic()
                proxy.restore()
                samples.append(_first_line_after(lines, restored, lock))
                time.sleep(0.5)
            rows.append((f"reconnect: link restored -> first new byte, after a {outage:g} s "
                         "outage", f"{sorted(samples)[1]:.2f} s", "median of 3; see the "
                         "fresh --reattach row"))
        # The baseline: a fresh client, ready to attach, from its start to its first byte.
        run_id = _run_id(box)
        fresh = []
        for _ in range(3):
            t0 = time.monotonic()
            att = subprocess.Popen([LAGER, "python", "--reattach", run_id],
                                   env={**box.env, "LAGER_MUX": "0"}, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
            assert att.stdout is not None
            att.stdout.read(1)
            fresh.append(time.monotonic() - t0)
            att.kill()
            att.wait()
        rows.append(("baseline: a fresh `lager python --reattach` to its first byte", "-",
                     f"{sorted(fresh)[1]:.2f} s (median of 3)"))
    finally:
        client.kill()
        client.wait()
        proxy.cut()
        box.end()
    return rows


def _run_id(box: Box) -> str:
    rows = json.loads(box.lager("python", "--list", "--json").stdout or "[]")
    return str(next(r["id"] for r in rows if r["state"] == "running"))


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="lager-durable-"))
    rows: list[Row] = []
    try:
        if ONLY in (None, "memory"):
            rows += memory_rows(root)
        if ONLY in (None, "reconnect"):
            rows += reconnect_rows(root)
        if ONLY in (None, "restart"):
            rows += restart_rows(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
