"""`python -m box_agent.monitor CTL_FD MONITOR_DIR WORKDIR IDENTITY -- ARGV...`"""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from .loop import Monitor


def main(argv: list[str]) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print("usage: python -m box_agent.monitor CTL_FD MONITOR_DIR WORKDIR IDENTITY -- ARGV",
              file=sys.stderr)
        return 2
    ctl = socket.socket(fileno=int(argv[0]))
    monitor = Monitor(ctl, Path(argv[1]), Path(argv[2]), argv[3], argv[5:])
    monitor.start()
    return monitor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
