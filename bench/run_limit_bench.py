"""What a smaller `lager-box serve --run-log-limit` costs a run that streams at full speed to
its client (issue 11). A run's window, how far its monitor may log ahead of the client, is at
most half its log limit (so the limit never drops what the client has not seen): a 1M limit
means a 512 KiB window, more round trips between monitor and agent. Prints one table; the
baseline is the default 64M limit, measured in the same invocation, both monitors.

Run: .venv/bin/python bench/run_limit_bench.py [--mib N] [--repeat N]
(--mib: output per run, default 64; --repeat: runs per row, median shown, default 3)
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import end_left_under
from table import print_table

BIN = Path(sys.executable).parent
LAGER, LAGER_BOX = str(BIN / "lager"), str(BIN / "lager-box")
MIB = int(sys.argv[sys.argv.index("--mib") + 1]) if "--mib" in sys.argv else 64
REPEAT = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3
LIMITS = ("64M", "4M", "1M")  # the first is the default: the baseline
FLOOD = ("import sys\nblock = b'x' * 65535 + b'\\n'\nw = sys.stdout.buffer.write\n"
         f"for _ in range({MIB} * 16):\n    w(block)\n")


def throughput(root: Path, limit: str, python_monitor: bool) -> float:
    """MB/s of a foreground run's stdout to its client, the median of REPEAT runs."""
    state, laptop = root / f"box-{limit}", root / f"laptop-{limit}"
    env = {**os.environ, "LAGER_BOX_PYTHON_MONITOR": "1" if python_monitor else "0"}
    agent = subprocess.Popen([LAGER_BOX, "serve", "--listen", "127.0.0.1:0", "--state-dir",
                              str(state), "--run-log-limit", limit], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = agent.stdout.readline()  # type: ignore[union-attr]
        port = re.search(r":(\d+) ", ready).group(1)  # type: ignore[union-attr]
        client_env = {**os.environ, "LAGER_CONFIG_DIR": str(laptop), "LAGER_BOX": "b"}
        client_env.pop("CI", None)
        subprocess.run([LAGER, "boxes", "add", "b", "--host", "127.0.0.1", "--port", port],
                       env=client_env, check=True, capture_output=True)
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(state),
                        str(laptop / "id_ed25519.pub")], check=True, capture_output=True)
        script = root / "flood.py"
        script.write_text(FLOOD)
        rates = []
        for _ in range(REPEAT):
            start = time.perf_counter()
            subprocess.run([LAGER, "python", str(script)], env=client_env, check=True,
                           stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            rates.append(MIB * (1 << 20) / (time.perf_counter() - start) / 1e6)
        return statistics.median(rates)
    finally:
        agent.kill()
        agent.wait()
        end_left_under(state)  # the runs' monitors, were any left


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="lager-limits-"))
    rows = []
    try:
        for python_monitor in (False, True):
            name = "Python" if python_monitor else "C"
            measured = {limit: throughput(root, limit, python_monitor) for limit in LIMITS}
            base = measured[LIMITS[0]]
            for limit in LIMITS:
                rows.append((f"{name} monitor, --run-log-limit {limit}: {MIB} MiB to the client",
                             f"{measured[limit]:.0f} MB/s",
                             f"{base:.0f} MB/s at {LIMITS[0]} ({measured[limit] / base:.2f}x)"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
