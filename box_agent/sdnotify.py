"""systemd's readiness protocol (sd_notify), for `Type=notify` units, without libsystemd.

The unit in deploy/ansible runs the agent with `Type=notify`, `NotifyAccess=main` and
`KillMode=process` (runs outlive the agent). Two moments matter to systemd:
- the agent listens: `READY=1`, so `systemctl start` returns when logins work;
- an upgrade (`serve --replace`, started by `systemctl reload`): the running agent, which is the
  unit's main process and the only one systemd listens to, names its successor the new main
  process (`MAINPID=`) the moment it hands its socket over, before it exits. Otherwise systemd
  would take the old agent's exit for the service's end.
Outside systemd (no NOTIFY_SOCKET) every call does nothing.
"""
from __future__ import annotations

import logging
import os
import socket
import struct

log = logging.getLogger("lager-box.sdnotify")

# The manager's channel to the agent: scripts must not inherit it (they are not the main process,
# and a script's READY=1 or MAINPID= is never its word to say).
AGENT_ONLY_ENV = frozenset({"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"})


def notify(*fields: str) -> bool:
    """Send `KEY=VALUE` fields to the service manager; False when there is none to tell."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        # The manager's bookkeeping is not worth failing the agent over; say it once, go on.
        log.warning("cannot tell systemd %s: %s", " ".join(fields), exc.strerror or exc)
        return False
    return True


def ready(status: str) -> bool:
    """The agent listens. MAINPID as well, so a successor started outside the unit's main
    process is tracked even if its predecessor's word was lost."""
    return notify("READY=1", f"MAINPID={os.getpid()}", f"STATUS={status}")


def main_pid_moves_to(peer: socket.socket) -> bool:
    """The running agent hands over to the process at the other end of `peer` (a Unix
    stream socket): that process becomes the unit's main process."""
    creds = peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", creds)[0]
    return notify(f"MAINPID={pid}", "STATUS=handed over to a new agent (--replace)")
