"""Soak: does the agent hold steady over a long session of ordinary use?

Starts a real agent on loopback with the simulated bench and a laptop config (as
scripts/demo.sh does), then loops for --minutes: a run that pauses, a console on it (`x`
piped in), `lager supply supply2 state|voltage 3.3|enable|disable`, `lager adc adc1`,
`lager nets`, then `lager python --continue`. Rounds alternate between going direct
(LAGER_MUX=0) and going through the connection keeper, so both paths are covered.

Before the baseline: one round of each kind (imports, caches, the keeper's connection), then
--prefill quick pause/continue runs that fill the agent's finished-run history: it is bounded
(the agent's --keep-finished-runs, 100 by default), but while it fills it reads as growth.

A sampler reads, every --interval seconds, the agent's RSS, private memory (USS) and open fd
count, and the PSS and USS of its simulator child (PSS moves when other processes that map the
same libraries come and go; USS does not). The table gives the baseline, the end (after the
last run has ended and the box is idle) and the least-squares slope over the second half.
Nothing is asserted; issue 10's target is an RSS slope under 50 KiB/min and fds back at the
baseline. At the end the keeper is stopped, to show the fd count of an agent with no client.

Run: .venv/bin/python bench/soak.py [--minutes 30] [--interval 5] [--samples FILE.tsv]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
LAGER, LAGER_BOX = str(BIN / "lager"), str(BIN / "lager-box")
STEP_TIMEOUT = 60.0
TARGET_KIB_PER_MIN = 50.0
# The agent's default --keep-finished-runs, not imported: the bench must not depend on where
# it lives.
AGENT_KEEPS_FINISHED = 100

INSTRUMENT_USE = """\
from lager import Net, NetType

# The script uses its own instrument, so the commands from other terminals find theirs free.
with Net.get("supply1", type=NetType.PowerSupply) as supply:
    supply.state()
"""
PAUSING = """\
from lager import pause

x = 42
pause("soak", interactive=True)
print("soak run done")
"""

INSTRUMENT_COMMANDS = [
    ["supply", "supply2", "state"], ["supply", "supply2", "voltage", "3.3"],
    ["supply", "supply2", "enable"], ["supply", "supply2", "disable"],
    ["adc", "adc1"], ["nets"],
]


class SoakError(RuntimeError):
    """A step of the soak loop failed: the figures would not mean what they say."""


@dataclass
class Sample:
    t: float
    rss_kib: int
    private_kib: int
    fds: int
    sim_pss_kib: int
    sim_private_kib: int
    sim_fds: int


@dataclass
class Counts:
    rounds: int = 0
    direct: int = 0
    keeper: int = 0
    instrument: int = 0
    consoles: int = 0
    errors: list[str] = field(default_factory=list)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _rollup_kib(pid: int) -> tuple[int, int]:
    """(PSS, private) in KiB. PSS shares out the pages mapped by others too (the Python
    binary and libraries), so it moves when other processes start and end; private does not."""
    pss = private = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Pss":
                pss = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                private += int(rest.split()[0])
    except OSError:  # gone, or smaps_rollup not offered by this kernel
        pass
    return pss, private


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Box:
    """One agent with the simulated bench, and a laptop config that reaches it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "LAGER_CONFIG_DIR": str(root / "laptop"), "LAGER_BOX": "soak"}
        self.log_path = root / "box.log"
        ready_path = root / "ready"
        with open(ready_path, "w") as ready, open(self.log_path, "w") as log:
            self.agent = subprocess.Popen(
                [LAGER_BOX, "serve", "--listen", "127.0.0.1:0", "--state-dir", str(root / "box")],
                stdout=ready, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + STEP_TIMEOUT
        while "listening" not in ready_path.read_text():
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise SoakError(f"the agent did not start: {self.log_path.read_text()[-500:]}")
            time.sleep(0.05)
        match = re.search(r":(\d+) ", ready_path.read_text())
        assert match is not None
        self.port = int(match.group(1))
        self.first_fds = _fd_count(self.agent.pid)
        self.lager("boxes", "add", "soak", "--host", "127.0.0.1", "--port", str(self.port))
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(root / "box"),
                        str(root / "laptop" / "id_ed25519.pub")], check=True, capture_output=True)
        self.sim_pid = next((p for p in _children(self.agent.pid)
                             if "box_agent.simbench" in _cmdline(p)), None)

    def lager(self, *args: str, mux: bool = False, stdin: str | None = None) -> str:
        env = {**self.env, "LAGER_MUX": "1" if mux else "0"}
        try:
            done = subprocess.run([LAGER, *args], env=env, input=stdin, capture_output=True,
                                  text=True, timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise SoakError(f"lager {' '.join(args)}: no answer in {STEP_TIMEOUT:.0f}s") from None
        if done.returncode != 0:
            raise SoakError(f"lager {' '.join(args)} exited {done.returncode}: "
                            f"{done.stderr.strip()[-300:]}")
        return done.stdout

    def sample(self) -> Sample:
        pid, sim = self.agent.pid, self.sim_pid
        sim_pss, sim_private = _rollup_kib(sim) if sim else (0, 0)
        return Sample(time.monotonic(), _status_kib(pid, "VmRSS"), _rollup_kib(pid)[1],
                      _fd_count(pid), sim_pss, sim_private, _fd_count(sim) if sim else 0)

    def run_children(self) -> list[int]:
        return [p for p in _children(self.agent.pid) if p != self.sim_pid]

    def close(self) -> None:
        self.agent.send_signal(signal.SIGTERM)
        try:
            self.agent.wait(30)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            self.agent.wait()


def one_round(box: Box, script: Path, mux: bool, counts: Counts | None) -> None:
    """A run that pauses; a console, instrument commands and a continue while it waits.

    Without counts, only the pause and the continue (the finished-run history prefill).
    """
    env = {**box.env, "LAGER_MUX": "1" if mux else "0"}
    run = subprocess.Popen([LAGER, "python", str(script)], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(STEP_TIMEOUT * 3, run.kill)  # a hung run fails the round, not the soak
    killer.start()
    try:
        ident = None
        assert run.stderr is not None
        for line in run.stderr:
            match = re.search(r"\(id (\S+)\)", line)
            if match:
                ident = match.group(1)
                break
        if ident is None:
            raise SoakError("the run ended without pausing")
        if counts is not None:
            out = box.lager("python", "--console", ident, mux=mux, stdin="x\n")
            if "42" not in out:
                raise SoakError(f"the console did not answer x: {out[-200:]!r}")
            counts.consoles += 1
            for args in INSTRUMENT_COMMANDS:
                box.lager(*args, mux=mux)
                counts.instrument += 1
        box.lager("python", "--continue", ident, mux=mux)
        stdout, stderr = run.communicate(timeout=STEP_TIMEOUT)
        if run.returncode != 0 or "soak run done" not in stdout:
            raise SoakError(f"the run exited {run.returncode}: {stderr.strip()[-300:]}")
    finally:
        killer.cancel()
        if run.poll() is None:
            run.kill()
            run.wait()
    if counts is None:
        return
    counts.rounds += 1
    if mux:
        counts.keeper += 1
    else:
        counts.direct += 1


def prefill(box: Box, script: Path, runs: int, workers: int = 4) -> None:
    """Fill the agent's finished-run history (it keeps the last AGENT_KEEPS_FINISHED).

    Until it is full every run adds a record; after that each new one replaces the oldest.
    Without this, the first 100 rounds of a short soak show that bounded fill as growth. The
    prefill runs print what the soak's runs print, so a record replaced weighs what it did.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(one_round, box, script, True, None) for _ in range(runs)]:
            done.result()


def stop_keeper(box: Box) -> bool:
    """End the connection keeper this soak's commands left behind (it holds one connection)."""
    marker = f"LAGER_CONFIG_DIR={box.root / 'laptop'}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or "client.mux" not in _cmdline(int(entry.name)):
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            os.kill(int(entry.name), signal.SIGTERM)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        return True
    return False


def wait_idle(box: Box, timeout: float = STEP_TIMEOUT) -> None:
    """Until no run process is left and the fd count has stopped moving."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        fds = _fd_count(box.agent.pid)
        if not box.run_children() and fds == last:
            return
        last = fds
        time.sleep(0.5)


def slope_per_min(samples: list[Sample], attr: str) -> float:
    """Least-squares slope of attr over time, in units per minute."""
    if len(samples) < 2:
        return float("nan")
    xs = [s.t / 60 for s in samples]
    ys = [float(getattr(s, attr)) for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


class Sampler(threading.Thread):
    def __init__(self, box: Box, interval: float) -> None:
        super().__init__(daemon=True)
        self.box, self.interval = box, interval
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.box.sample())
            self.stop.wait(self.interval)


def report(box: Box, samples: list[Sample], baseline: Sample, end: Sample, counts: Counts,
           minutes: float, alone_fds: int | None) -> None:
    second_half = [s for s in samples if s.t >= (samples[0].t + samples[-1].t) / 2]
    rss_slope = slope_per_min(second_half, "rss_kib")
    whole_slope = slope_per_min(samples, "rss_kib")
    per_min = counts.instrument / minutes if minutes else 0
    rows = [(label, f"{getattr(baseline, attr)}", f"{getattr(end, attr)}",
             f"{slope_per_min(second_half, attr):+.1f}")
            for label, attr in (("agent RSS, KiB", "rss_kib"),
                                ("agent private (USS), KiB", "private_kib"),
                                ("simulator PSS, KiB", "sim_pss_kib"),
                                ("simulator private (USS), KiB", "sim_private_kib"))]
    rows += [
        ("agent open fds", f"{baseline.fds} (at start {box.first_fds})", f"{end.fds}",
         f"max {max(s.fds for s in samples)}"),
        ("simulator open fds", f"{baseline.sim_fds}", f"{end.sim_fds}",
         f"max {max(s.sim_fds for s in samples)}"),
    ]
    widths = [max(len(r[i]) for r in [*rows, ("", "baseline", "end", "slope")]) for i in range(4)]
    print(f"\nsoak: {minutes:.1f} min, {counts.rounds} rounds ({counts.direct} direct, "
          f"{counts.keeper} through the keeper), {counts.instrument} instrument commands "
          f"({per_min:.0f}/min), {counts.consoles} consoles, {len(samples)} samples")
    header = ("", "baseline", "end", "KiB/min, 2nd half")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    per_cmd = rss_slope / per_min * 1024 if per_min else float("nan")
    print(f"agent RSS slope over the whole run {whole_slope:+.1f} KiB/min; second half "
          f"{per_cmd:+.0f} bytes per instrument command")
    if alone_fds is not None:
        print(f"agent open fds once the keeper has gone: {alone_fds} "
              f"(before any client: {box.first_fds})")
    fds_back = "yes" if end.fds <= baseline.fds else "NO"
    flat = "yes" if rss_slope < TARGET_KIB_PER_MIN else "NO"
    print(f"target: RSS slope < {TARGET_KIB_PER_MIN:.0f} KiB/min: {flat}; "
          f"fds back at baseline: {fds_back}")
    tracebacks = box.log_path.read_text(errors="replace").count("Traceback")
    print(f"agent log: {tracebacks} tracebacks; round failures: {len(counts.errors)}")
    for err in counts.errors[:5]:
        print(f"  {err}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--prefill", type=int, default=AGENT_KEEPS_FINISHED,
                        help="runs that fill the finished-run history before the baseline")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (agent log)")
    parser.add_argument("--samples", type=Path, help="write every sample here as TSV")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lager-soak-"))
    script, filler = root / "soak_run.py", root / "soak_fill.py"
    script.write_text(INSTRUMENT_USE + PAUSING)
    filler.write_text(PAUSING)  # no instrument: the prefill runs go in parallel
    box = Box(root)
    print(f"agent pid {box.agent.pid} on port {box.port}, simulator pid {box.sim_pid}, "
          f"dir {root}", flush=True)
    counts = Counts()
    try:
        one_round(box, script, mux=False, counts=counts)  # warm-up: imports, caches, keeper
        one_round(box, script, mux=True, counts=counts)
        if args.prefill:
            prefill(box, filler, args.prefill)
        wait_idle(box)
        counts = Counts()
        sampler = Sampler(box, args.interval)
        sampler.start()
        start = time.monotonic()
        stop_at = start + args.minutes * 60
        last_note = start
        while time.monotonic() < stop_at:
            try:
                one_round(box, script, mux=counts.rounds % 2 == 1, counts=counts)
            except SoakError as exc:
                counts.errors.append(str(exc))
                if len(counts.errors) > 20:
                    raise
            if time.monotonic() - last_note >= 60:
                last_note = time.monotonic()
                s = sampler.samples[-1]
                print(f"  {(last_note - start) / 60:5.1f} min: {counts.rounds} rounds, "
                      f"RSS {s.rss_kib} KiB, fds {s.fds}", flush=True)
        elapsed = (time.monotonic() - start) / 60
        wait_idle(box)
        sampler.stop.set()
        sampler.join()
        samples = sampler.samples
        end = box.sample()
        samples.append(end)
        if args.samples:
            args.samples.write_text(
                "t_s\trss_kib\tprivate_kib\tfds\tsim_pss_kib\tsim_private_kib\tsim_fds\n"
                + "".join(f"{s.t - samples[0].t:.1f}\t{s.rss_kib}\t{s.private_kib}\t{s.fds}\t"
                          f"{s.sim_pss_kib}\t{s.sim_private_kib}\t{s.sim_fds}\n"
                          for s in samples))
        alone_fds = None
        if stop_keeper(box):
            # The keeper's connection is the one fd the baseline has over a fresh agent.
            deadline = time.monotonic() + STEP_TIMEOUT
            while _fd_count(box.agent.pid) > box.first_fds and time.monotonic() < deadline:
                time.sleep(0.2)
            alone_fds = _fd_count(box.agent.pid)
        report(box, samples, samples[0], end, counts, elapsed, alone_fds)
    finally:
        box.close()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
