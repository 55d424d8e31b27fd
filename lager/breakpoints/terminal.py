"""Where lager's own lines (banners, `=== resumed`) go: the script's original stderr.

The run's monitor hands the script a second fd on its stderr pipe (LAGER_STDERR_FD). pytest's
output capture replaces fd 2 and sys.stderr while a test runs, so a banner written there would
sit in a capture file, unseen, while the script waits to be resumed (ISSUE-NOTES 11).
"""
from __future__ import annotations

import os
import stat
import sys
import threading

from .. import protocol

_lock = threading.Lock()
_fd: int | None = None
_looked = False


def _copy_fd() -> int | None:
    """The monitor's copy of our stderr, in the process the monitor started (a child of the
    script inherits the env, not the fd: the number may be anything there)."""
    global _fd, _looked
    with _lock:
        if not _looked:
            _looked = True
            raw = os.environ.get(protocol.ENV_STDERR_FD, "")
            if raw.isdigit() and os.environ.get(protocol.ENV_AGENT_PID) == str(os.getppid()):
                try:
                    if stat.S_ISFIFO(os.fstat(int(raw)).st_mode):
                        os.set_inheritable(int(raw), False)
                        _fd = int(raw)
                except OSError:
                    _fd = None
        return _fd


def say(text: str) -> None:
    """One or more lines of lager's own, after whatever the script has written so far."""
    data = (text + "\n").encode("utf-8", "replace")
    # A console's own threads write to that console: sys.stderr routes them there.
    fd = None if threading.current_thread().name.startswith("lager-console") else _copy_fd()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # what the script printed before comes first
        except (OSError, ValueError, AttributeError):
            pass  # a closed or odd stream: nothing of the script's is waiting in it
    if fd is not None:
        try:
            while data:
                data = data[os.write(fd, data):]
            return
        except OSError:
            pass  # fall back to whatever sys.stderr is
    try:
        sys.stderr.write(data.decode("utf-8", "replace"))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
