"""Keep glibc's malloc from handing big buffers back to the kernel after every packet.

A stream moves output through buffers of 256 KiB to 16 MiB (SSH packets, log records, what
paramiko holds). By default glibc serves allocations that size with mmap, or trims the heap's
top once they are freed, so the next one page-faults every page in again: on the agent that
was 60 % of its CPU per MB of a run's stream (issue 13: 5.0-5.7 ms/MB, 1.3-1.5 with this), and
the reason its CPU per MB swung with how the packets happened to be sized. Raising both
thresholds keeps the freed memory for the next buffer. The cost is memory the process keeps
after a burst: at most `trim` bytes of free heap top, which the next burst reuses.

glibc only (mallopt); elsewhere (musl, macOS) nothing changes.
"""
from __future__ import annotations

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold over 32 MiB on 64-bit (HEAP_MAX_SIZE / 2).
MMAP_MAX = 32 * 1024 * 1024
_done: set[tuple[int, int]] = set()


def keep_freed_memory(mmap_threshold: int, trim_threshold: int) -> bool:
    """Allocations under mmap_threshold come from the heap, and up to trim_threshold bytes of
    free heap top stay with the process. True when the C library took both."""
    key = (mmap_threshold, trim_threshold)
    if key in _done:
        return True
    # Imported here, not with the module: ctypes is ~1.5 ms, and a run's client imports this
    # module before its key exchange but needs it only once the stream starts (issue 13).
    import ctypes

    try:
        # The process's own symbols: the C library it runs on (no find_library, which forks).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # no glibc: its allocator has its own policy
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    took = bool(mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold, MMAP_MAX))) and \
        bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    if took:
        _done.add(key)
    return took
