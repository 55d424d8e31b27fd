"""`lager-box reload`: an upgrade that returns when the new agent serves, and fails when not.

`serve --replace` alone is the new agent itself: it runs for good, so a caller that wants to
know whether the upgrade worked (systemd's ExecReload, whose exit `systemctl reload` reports)
cannot wait for it. `reload` starts `SERVE_COMMAND --replace` as a child in a new session and
waits on a pipe that only the child writes to:
- `took` once it has the running agent's listening sockets (from then on it is the agent, and
  the old one is leaving);
- `ready PID` once it has adopted the runs, listens and has told systemd MAINPID/READY=1.
Then `reload` exits 0 and the child goes on (under systemd, in the unit's cgroup: it is the
control process's child, and systemd made it the main process on the old agent's word).
If the pipe closes first, the child died; if the timeout passes before `took`, the child is
killed. In both cases the running agent was never asked for its socket, or kept it, and goes
on serving: one line says so and the exit status is 1.
"""
from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from lager.errors import LagerError

from .handover import SOCKET_NAME

TOOK, READY = "took", "ready"


class ReloadFailed(LagerError):
    """The new agent did not take over; the running one goes on serving."""


class ReadyPipe:
    """The new agent's end: say `took`, then `ready PID` (`serve --ready-fd N`)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        if fd is not None:
            # Scripts the agent starts must not hold it open (their parent would never see
            # EOF if the agent died).
            os.set_inheritable(fd, False)

    def say(self, word: str) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, f"{word}\n".encode())
        except OSError:
            # `reload` gave up waiting (timeout) or was killed: nobody listens; the agent
            # serves all the same.
            self.close()

    def ready(self) -> None:
        self.say(f"{READY} {os.getpid()}")
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def reload_agent(state_root: Path, serve_command: Sequence[str], timeout: float) -> int:
    """Start `serve_command --replace` and wait until it serves: its pid, or ReloadFailed."""
    if not serve_command:
        raise ReloadFailed("give the new agent's command after --, e.g. "
                           "-- /opt/lager/bin/lager-box serve --state-dir DIR ...")
    if not (state_root / SOCKET_NAME).exists():
        raise ReloadFailed(f"no agent runs on {state_root} (no {SOCKET_NAME}): nothing to "
                           "reload; start one with `lager-box serve`")
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen([*serve_command, "--replace", "--ready-fd", str(write_end)],
                                 pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    except OSError as exc:
        os.close(read_end)
        raise ReloadFailed(f"cannot start the new agent {serve_command[0]}: "
                           f"{exc.strerror or exc}; the running agent keeps serving") from None
    finally:
        os.close(write_end)
    try:
        return _wait_for_ready(child, read_end, timeout)
    finally:
        os.close(read_end)


def _wait_for_ready(child: subprocess.Popen[bytes], read_end: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    words: list[str] = []
    buffer = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return _timed_out(child, read_end, TOOK in words, timeout)
        readable, _, _ = select.select([read_end], [], [], left)
        if not readable:
            continue
        chunk = os.read(read_end, 4096)
        if not chunk:  # every copy of the write end is closed: the child is gone
            status = _exit_status(child)
            if TOOK in words:
                raise ReloadFailed(f"the new agent (pid {child.pid}) took over and then exited "
                                   f"({status}) before it was ready; systemd restarts the unit")
            raise ReloadFailed(f"the new agent exited ({status}) before it took over; the "
                               "running agent keeps serving")
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            word, _, rest = line.decode(errors="replace").partition(" ")
            words.append(word)
            if word == READY and rest.isdigit():
                return int(rest)


def _timed_out(child: subprocess.Popen[bytes], read_end: int, took: bool,
               timeout: float) -> int:
    if took:
        # It is the agent now (the old one has let go): killing it would leave none.
        raise ReloadFailed(f"the new agent (pid {child.pid}) took over but did not say it was "
                           f"ready within {timeout:g} s")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    # It may have taken over in the instant before the kill (the sockets received, `took` not
    # yet written, or written since the last read). Then the old agent has gone too, and,
    # under systemd, the unit's main process (the killed one) failed: Restart=on-failure
    # starts a new agent, which adopts the runs. Say which happened.
    if TOOK.encode() in _rest_of(read_end):
        raise ReloadFailed(f"the new agent took over as the {timeout:g} s ran out and was "
                           "killed; under systemd the unit restarts (the runs are kept)")
    raise ReloadFailed(f"the new agent did not take over within {timeout:g} s and was "
                       "killed; the running agent keeps serving")


def _rest_of(read_end: int) -> bytes:
    """What is in the pipe now (without blocking: something the child started in a session of
    its own might still hold the write end)."""
    os.set_blocking(read_end, False)
    rest = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(read_end, 4096):
            rest += chunk
    return rest


def _exit_status(child: subprocess.Popen[bytes]) -> str:
    try:
        code = child.wait(10)
    except subprocess.TimeoutExpired:
        return "still running, but it closed its ready pipe"
    return f"killed by signal {-code}" if code < 0 else f"status {code}"
