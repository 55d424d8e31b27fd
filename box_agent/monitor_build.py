"""Which program monitors a run: the C monitor (box_agent/monitor/*.c), built once per
version of its sources, or the Python one in box_agent/monitor/ where no C compiler was ever
available.

Both speak the same protocol and keep the same files; the C one exists for memory (issue 11:
a paused run may cost at most 2 MiB more than a script alone, and a Python monitor is a whole
interpreter, ~8 MiB). The binary's name carries a digest of its sources, so an upgraded agent
never starts an old build, and monitors of an older build keep running unharmed.

`python -m box_agent.monitor_build` builds it (scripts/setup.sh, the box image); an agent that
finds no build for its source tries once at start, then falls back with a warning.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

log = logging.getLogger("lager-box.monitor")

SOURCE_DIR = Path(__file__).parent / "monitor"
# Shown in `ps` and matched by tests and tools that look for a run's monitor.
PROCESS_NAME = "box_agent.monitor"
# Set to 1 to run monitors in Python even where the C one is built (a comparison, a debug).
ENV_PYTHON_MONITOR = "LAGER_BOX_PYTHON_MONITOR"
_CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"]


def sources() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.c"))


def binary_path() -> Path:
    digest = hashlib.sha256(" ".join(_CFLAGS).encode())
    for path in [*sources(), SOURCE_DIR / "monitor.h"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return Path(sys.prefix) / "libexec" / f"lager-box-monitor-{digest.hexdigest()[:12]}"


def build(compiler: str | None = None) -> Path:
    """Compile the C monitor for this source if it is not built yet; returns its path."""
    target = binary_path()
    if target.exists():
        return target
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError("no C compiler (cc or gcc) on this box")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed: an agent starting meanwhile sees all or nothing.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-")
    os.close(fd)
    try:
        done = subprocess.run([cc, *_CFLAGS, "-o", tmp, *map(str, sources())],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise OSError(f"{cc} failed: {done.stderr.strip()[:2000]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@cache
def monitor_program() -> tuple[str, list[str]]:
    """(executable, argv before the monitor's own arguments) for starting a run's monitor."""
    # Python finds its venv through argv[0], so it keeps its own; `-m box_agent.monitor` names it.
    python = (sys.executable, [sys.executable, "-m", "box_agent.monitor"])
    if os.environ.get(ENV_PYTHON_MONITOR) == "1":
        return python
    try:
        return str(build()), [PROCESS_NAME]
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("runs are monitored in Python (about 8 MiB per run, not 0.3): the C "
                    "monitor cannot be built: %s", exc)
        return python


def main() -> int:
    try:
        print(build())
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"cannot build the run monitor: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
