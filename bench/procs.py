"""The benches' own leftovers: runs and the simulated bench outlive an agent by design (#11), so
a bench that stops its agents ends what it started, found by the temp root in their command
lines (the Python monitor's and simulator's, the C monitor's monitor dir, a keeper's config)."""
from __future__ import annotations

import os
import signal
from pathlib import Path


def pids_with(*needles: str) -> list[int]:
    """Processes whose command line holds every needle."""
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


def end_left_under(root: Path, sig: int = signal.SIGKILL) -> None:
    """Signal every process that names `root` in its command line (this bench's own)."""
    for pid in pids_with(str(root)):
        if pid != os.getpid():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
