"""A run's monitor, in Python:
`python -m box_agent.monitor [--log-limit=BYTES] CTL_FD MONITOR_DIR WORKDIR IDENTITY -- ARGV...`

--log-limit is the run's own (runlog.py); without it, runlog.DEFAULT_LIMIT."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from ..runlog import DEFAULT_LIMIT, MAX_LIMIT, MIN_LIMIT
from .loop import Monitor

_LIMIT_FLAG = "--log-limit="
USAGE = ("usage: python -m box_agent.monitor [--log-limit=BYTES] CTL_FD MONITOR_DIR WORKDIR "
         "IDENTITY -- ARGV")


def main(argv: list[str]) -> int:
    log_limit = DEFAULT_LIMIT
    if argv and argv[0].startswith(_LIMIT_FLAG):
        text = argv.pop(0)[len(_LIMIT_FLAG):]
        if not text.isascii() or not text.isdigit() or not MIN_LIMIT <= int(text) <= MAX_LIMIT:
            print(f"monitor: bad log limit {text[:40]!r} (bytes, {MIN_LIMIT} to {MAX_LIMIT})",
                  file=sys.stderr)
            return 2
        log_limit = int(text)
    if len(argv) < 6 or argv[4] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    ctl = socket.socket(fileno=int(argv[0]))
    monitor = Monitor(ctl, Path(argv[1]), Path(argv[2]), argv[3], argv[5:], log_limit)
    monitor.start()
    return monitor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
