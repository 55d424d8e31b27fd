"""Privilege separation: each run's script runs under a uid of its own, never as the agent.

As OpenSSH separates its privileged monitor from the session, the agent (root, or holding
CAP_SETUID, CAP_SETGID and CAP_KILL) keeps the host key, `authorized_keys` and the audit to
itself, and every run gets a fresh uid from a reserved range, as systemd's DynamicUser does.
So a script cannot read the host key, cannot leave a key behind in `authorized_keys`, and
cannot reach another run's files, not even through `/proc/PID/cwd` (a different uid fails the
kernel's ptrace-access check). `--run-as USER` names the account whose primary group every
run shares: that group alone may use the claims dir, so runs see each other's claims (the
busy rule) and nothing else. `--run-groups` adds groups for instrument access (dialout,
plugdev).
"""
from __future__ import annotations

import grp
import logging
import os
import pwd
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lager.errors import LagerError

log = logging.getLogger("lager-box.privsep")

# Far above login accounts and systemd's DynamicUser range (61184-65519); no passwd entries.
RUN_UID_FIRST = 2_000_000
RUN_UID_COUNT = 1_000_000


@dataclass(frozen=True)
class Identity:
    """Who one run's script runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    user: str  # the account name the script sees in USER and LOGNAME


class RunIdentities:
    """Hands each run a uid of its own; None of this applies when separation is off."""

    def __init__(self, user: str, groups: Sequence[str]) -> None:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise LagerError(f"--run-as: no user {user!r} on this box "
                             "(create it: useradd --system --no-create-home lager-run)") from None
        self.user = user
        self.gid = entry.pw_gid
        self.groups = tuple(_group_id(name) for name in groups)
        self._live: set[int] = set()
        _check_can_switch(self.gid)

    def allocate(self) -> Identity:
        while True:
            uid = RUN_UID_FIRST + random.randrange(RUN_UID_COUNT)
            if uid not in self._live:
                self._live.add(uid)
                return Identity(uid, self.gid, self.groups, self.user)

    def adopt(self, uid: int) -> Identity:
        """The identity of a run an earlier agent started (it keeps its uid)."""
        self._live.add(uid)
        return Identity(uid, self.gid, self.groups, self.user)

    def release(self, identity: Identity) -> None:
        self._live.discard(identity.uid)

    def give(self, identity: Identity, workdir: Path) -> None:
        """The run dir becomes the run's own: 0700, owned by its uid, files and all."""
        for path in _tree(workdir):
            os.lchown(path, identity.uid, identity.gid)
        os.chmod(workdir, 0o700)

    def open_up(self, state_root: Path, runs_dir: Path, claims_dir: Path,
                readable: Iterable[Path]) -> None:
        """Let scripts reach what they need and nothing else of the state dir.

        The root and the runs dir may be passed through (0711), not listed; the host key and
        `authorized_keys` stay 0600. The claims dir belongs to the runs' shared group.
        """
        os.chmod(state_root, 0o711)
        os.chmod(runs_dir, 0o711)
        os.chown(claims_dir, 0, self.gid)
        # Sticky: a run may use every claim file but delete or replace none but its own.
        os.chmod(claims_dir, 0o3770)
        for path in claims_dir.iterdir():
            if path.name.startswith("run-"):
                continue  # a run's own record of the nets it claimed stays its own
            os.chown(path, 0, self.gid)
            os.chmod(path, 0o660)
        for path in readable:
            os.chmod(path, 0o644)

    def share_dir(self, path: Path) -> None:
        """A dir every run may change (the saved nets): the runs' group may create and replace
        files in it (not sticky: a save replaces another run's file), nobody else may."""
        path.mkdir(mode=0o770, exist_ok=True)
        os.chown(path, 0, self.gid)
        os.chmod(path, 0o2770)
        for entry in path.iterdir():
            if entry.is_file() and not entry.is_symlink():
                os.chown(entry, 0, self.gid)
                os.chmod(entry, 0o644)


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise LagerError(f"--run-groups: no group {name!r} on this box") from None


def _tree(root: Path) -> Iterable[Path]:
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            yield Path(dirpath) / name


def _check_can_switch(gid: int) -> None:
    """Prove, in a throwaway child, that this agent can drop to a run's identity and that
    the dropped identity can still start Python and import lager."""
    import lager

    needed = (sys.executable, lager.__file__)
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(RUN_UID_FIRST)
        except OSError:
            os._exit(1)
        os._exit(0 if all(os.access(p, os.R_OK) for p in needed) else 2)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 1:
        raise LagerError("--run-as: this agent cannot switch users; run it as root, or with "
                         "CAP_SETUID, CAP_SETGID and CAP_KILL")
    if code != 0:
        raise LagerError(f"--run-as: a run's uid cannot reach {os.path.realpath(sys.executable)}"
                         " or the lager package; install the agent where every user can read "
                         "it (a venv under /opt, as the box image does)")


def separation_off_reason() -> str:
    why = ("the agent is not root, so it cannot switch users" if os.geteuid() != 0
           else "no --run-as USER was given")
    return (f"privilege separation is off: {why}; scripts run as "
            f"{pwd.getpwuid(os.geteuid()).pw_name} and can read this box's host key")
