"""The script process under its monitor: start it, signal it and its tree, reap, sweep."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
SWEEP_GRACE = 0.5  # seconds between SIGTERM and SIGKILL for what the script left behind
SCAN_EVERY = 0.05  # seconds between looks for leftovers once the script has exited
# The monitor outlives terminal hang-ups and Ctrl-C; the agent's requests are what stop a run.
IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGTERM)

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _prepare_script() -> None:
    """Runs in the forked child before exec."""
    # An ignored signal stays ignored across exec; the script gets the defaults back.
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_DFL)
    # The monitor has one thread, so this fires once, and only if the monitor itself dies.
    prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def _has_children() -> bool:
    """Whether we have a child, live or not yet reaped. We are a subreaper: whatever the script
    left behind is our child as soon as its parent dies, so with none, nothing is below us."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def descendants(root: int) -> list[int]:
    """Every live process below root, found through /proc (setsid does not hide one)."""
    if root == os.getpid() and not _has_children():
        return []  # the common end of a run: a scan of every process would find nothing
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after its last ')' don't.
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def parse_identity(text: str) -> dict[str, object]:
    """`UID:GID:G1,G2` (box_agent/privsep.py) as Popen's arguments; `-` keeps ours."""
    if text == "-":
        return {}
    uid, gid, groups = text.split(":")
    # extra_groups is always given, so root's own supplementary groups never follow the script.
    return {"user": int(uid), "group": int(gid), "umask": 0o077,
            "extra_groups": [int(g) for g in groups.split(",") if g]}


class ScriptProcess:
    """The script, and everything it starts, as one unit the monitor signals and sweeps."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], pass_fds: Sequence[int],
                 stdout: int, stderr: int, identity: str, cwd: Path) -> None:
        self.popen = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env, cwd=cwd,
            start_new_session=True, pass_fds=tuple(pass_fds), preexec_fn=_prepare_script,
            **parse_identity(identity))  # type: ignore[call-overload]
        self.pid = self.popen.pid
        self.status: int | None = None  # the exit code: N, or 128+N for signal N
        self.sweep_at: float | None = None  # when leftovers get SIGKILL after their SIGTERM
        self._next_scan = 0.0

    def reap(self) -> None:
        """Collect every exited child (we are a subreaper: orphans come to us too)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                code = os.waitstatus_to_exitcode(status)
                self.popen.returncode = code
                self.status = 128 - code if code < 0 else code
                self._sweep_start()

    def signal(self, sig: signal.Signals) -> None:
        """The script's process group and every other descendant, each signalled once."""
        if self.status is not None:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        _signal_all([p for p in descendants(os.getpid()) if _pgid(p) != self.pid], sig)

    def _sweep_start(self) -> None:
        left = descendants(os.getpid())
        if left:
            _signal_all(left, signal.SIGTERM)
            self.sweep_at = time.monotonic() + SWEEP_GRACE

    def tick(self) -> None:
        """After the script's exit: SIGKILL what ignored the sweep's SIGTERM, look again."""
        if self.status is None:
            return
        now = time.monotonic()
        if self.sweep_at is not None and now >= self.sweep_at:
            self.sweep_at = None
            _signal_all(descendants(os.getpid()), signal.SIGKILL)
        elif self.sweep_at is None and now >= self._next_scan:
            self._next_scan = now + SCAN_EVERY
            self._sweep_start()  # one appeared after the sweep began (forked by a dying one)

    def swept(self) -> bool:
        return self.status is not None and self.sweep_at is None and \
            not descendants(os.getpid())

    def next_deadline(self) -> float | None:
        if self.status is None:
            return None
        return self.sweep_at if self.sweep_at is not None else time.monotonic() + SCAN_EVERY


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
