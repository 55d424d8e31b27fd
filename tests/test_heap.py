"""lager/heap.py: with the thresholds raised, a burst of 1 MiB buffers reuses freed heap instead
of page-faulting it in again (the agent's stream CPU, issue 13). Counted in page faults, not
time: each burst's pages come back from the kernel only when the heap was handed back."""
from __future__ import annotations

import platform
import subprocess
import sys

from conftest import cannot_run

_BURSTS = """
import resource, sys
from lager import heap
if sys.argv[1] == "kept":
    assert heap.keep_freed_memory(4 << 20, 32 << 20)
    assert heap.keep_freed_memory(4 << 20, 32 << 20)  # twice is harmless
def burst():
    held = [bytes(1 << 20) for _ in range(8)]
    del held
burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    burst()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _BURSTS, mode], capture_output=True, text=True,
                          timeout=60, check=True)
    return int(done.stdout)


def test_freed_buffers_are_reused_not_faulted_in_again() -> None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        cannot_run("mallopt is glibc's")
    default, kept = _faults("default"), _faults("kept")
    # 50 bursts of 8 MiB: about 2048 faults each when the heap is trimmed after every one.
    assert kept * 3 < default, (kept, default)
