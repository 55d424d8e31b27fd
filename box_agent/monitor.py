"""The per-run monitor: the script's parent, one small single-threaded process per run.

Why a process of its own (as podman's conmon is): the agent is multi-threaded, and the kernel
sends a parent-death signal once per dying *thread* of the parent, so a script parented by the
agent got SIGINT up to four times when the agent was killed. The monitor has one thread and
exists for its run alone, so every event reaches the script at most once. It also:

- is a child subreaper, so descendants the script starts (forked, `setsid`'d, daemonised) stay
  reachable: a signal from the agent reaches them all, and when the script exits they are swept
  (SIGTERM, then SIGKILL after SWEEP_GRACE) before the run counts as ended;
- owns the script's stdout and stderr pipes and relays them to the agent's pipes with splice(2),
  stopping when the agent stops reading, so a slow client still slows the script (no loss, no
  unbounded memory). If the agent dies, output goes to files in the monitor dir instead, so the
  script's `finally` blocks never meet a broken pipe;
- reports the script's pid once it runs, and exits with the script's code (128+N for signal N).

Run as `python -m box_agent.monitor CTL_FD MONITOR_DIR PASS_FDS IDENTITY -- ARGV...` with the
script's env; PASS_FDS (comma-separated, maybe empty) are handed on to the script, the others
are not. IDENTITY is `UID:GID:GROUP,...` to drop to (box_agent/privsep.py), or `-` to stay.
The control socket (SOCK_SEQPACKET) carries one JSON message per datagram (`lager.protocol`):
monitor -> agent {"op": "started", "pid": N} or {"op": "failed", "error": TEXT};
agent -> monitor {"op": "signal", "sig": N}. Its EOF means the agent is gone.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lager import protocol

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
SWEEP_GRACE = 0.5  # seconds between SIGTERM and SIGKILL for what the script left behind
# With the agent gone, the script gets the agent's gentle stop, starting with exactly one SIGINT.
ORPHAN_STOP = ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0))
SCAN_EVERY = 0.05  # seconds between looks for leftovers once the script has exited
SPILL_LIMIT = 64 * 1024 * 1024  # bytes kept per stream on disk while no agent reads
_CHUNK = 1024 * 1024
# The monitor outlives terminal hang-ups and Ctrl-C; the agent's requests are what stop a run.
IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE)

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _prepare_script() -> None:
    """Runs in the forked child before exec."""
    # An ignored signal stays ignored across exec; the script gets the defaults back.
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_DFL)
    # The monitor has one thread, so this fires once, and only if the monitor itself dies.
    _prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def descendants(root: int) -> list[int]:
    """Every live process below root, found through /proc (setsid does not hide one)."""
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


class Stream:
    """One of the script's output pipes and where its bytes go now."""

    def __init__(self, source: int, sink: int, spill: Path) -> None:
        self.source = source
        self.sink: int | None = sink
        self.spill = spill
        self.spilled = 0
        self.blocked = False  # the sink is full; wait for it to drain before reading more
        os.set_blocking(source, False)
        os.set_blocking(sink, False)

    def pump(self) -> bool:
        """Move what is there; False once the source is at EOF."""
        while True:
            try:
                if self.sink is not None:
                    moved = os.splice(self.source, self.sink, _CHUNK,
                                      flags=os.SPLICE_F_NONBLOCK | os.SPLICE_F_MOVE)
                else:
                    moved = self._spill_once()
            except BlockingIOError:
                # EAGAIN from splice may mean either end; only a full sink needs a POLLOUT wait.
                self.blocked = self.sink is not None and not _writable(self.sink)
                return True
            except BrokenPipeError:
                self.agent_gone()
                continue
            except OSError as exc:
                if exc.errno == errno.EINVAL and self.sink is not None:
                    self.agent_gone()  # the sink is no pipe any more
                    continue
                raise
            if moved == 0:
                return False

    def _spill_once(self) -> int:
        data = os.read(self.source, _CHUNK)
        if data and self.spilled < SPILL_LIMIT:
            with open(self.spill, "ab") as f:
                f.write(data[: SPILL_LIMIT - self.spilled])
            self.spilled += len(data)
        return len(data)

    def agent_gone(self) -> None:
        if self.sink is not None:
            os.close(self.sink)
            self.sink = None
            self.blocked = False


def _writable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(0))


class Monitor:
    def __init__(self, ctl: socket.socket, monitor_dir: Path, pass_fds: list[int],
                 identity: str, argv: list[str]) -> None:
        self.ctl: socket.socket | None = ctl
        self.pass_fds = pass_fds
        self.identity = identity
        self.monitor_dir = monitor_dir
        self.argv = argv
        self.script: subprocess.Popen[bytes] | None = None
        self.status: int | None = None
        self.streams: dict[int, Stream] = {}
        self.wake_r, self.wake_w = os.pipe()
        self.orphan_steps: list[tuple[signal.Signals, float]] = []
        self.next_step_at: float | None = None
        self.sweep_at: float | None = None  # when leftovers get SIGKILL after their SIGTERM
        self.next_scan = 0.0  # /proc walks are not free: at most one per SCAN_EVERY

    def start(self) -> None:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        for sig in IGNORED:
            signal.signal(sig, signal.SIG_IGN)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes poll() through wake_w
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        env = dict(os.environ)
        env[protocol.ENV_AGENT_PID] = str(os.getpid())  # the script's parent is us now
        drop: dict[str, object] = {}
        if self.identity != "-":
            uid, gid, groups = self.identity.split(":")
            drop = {"user": int(uid), "group": int(gid), "umask": 0o077,
                    "extra_groups": [int(g) for g in groups.split(",") if g]}
        try:
            self.script = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, env=env,
                start_new_session=True, pass_fds=self.pass_fds, preexec_fn=_prepare_script,
                **drop)  # type: ignore[call-overload]
        except OSError as exc:
            self._tell({"op": "failed", "error": f"cannot start the script: {exc}"})
            raise SystemExit(127) from None
        finally:
            os.close(out_w)
            os.close(err_w)
            for fd in self.pass_fds:
                os.close(fd)
        self.streams = {out_r: Stream(out_r, 1, self.monitor_dir / "stdout.spill"),
                        err_r: Stream(err_r, 2, self.monitor_dir / "stderr.spill")}
        self._tell({"op": "started", "pid": self.script.pid})

    def run(self) -> int:
        while self.streams or not self._finished():
            self._poll_once()
        assert self.status is not None
        return self.status

    def _finished(self) -> bool:
        return self.status is not None and self.sweep_at is None and not self._leftovers()

    def _leftovers(self) -> list[int]:
        return descendants(os.getpid())

    def _poll_once(self) -> None:
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        if self.ctl is not None:
            poller.register(self.ctl.fileno(), select.POLLIN)
        for stream in self.streams.values():
            if stream.blocked and stream.sink is not None:
                poller.register(stream.sink, select.POLLOUT)
            else:
                poller.register(stream.source, select.POLLIN)
        events = poller.poll(self._poll_timeout())
        ready = {fd for fd, _ in events}
        if self.wake_r in ready:
            os.read(self.wake_r, 4096)
        self._reap()
        if self.ctl is not None and self.ctl.fileno() in ready:
            self._control()
        for fd, stream in list(self.streams.items()):
            if fd in ready or (stream.sink is not None and stream.sink in ready):
                stream.blocked = False
                if not stream.pump():
                    os.close(fd)
                    del self.streams[fd]
        self._timers()

    def _poll_timeout(self) -> int:
        deadlines = [t for t in (self.next_step_at, self.sweep_at) if t is not None]
        if self.status is not None and not self.streams:
            # leftovers that hold no pipe: look again
            deadlines.append(time.monotonic() + SCAN_EVERY)
        if not deadlines:
            return -1
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.script is not None and pid == self.script.pid:
                self.script.returncode = os.waitstatus_to_exitcode(status)
                code = self.script.returncode
                self.status = 128 - code if code < 0 else code
                self.orphan_steps = []
                self.next_step_at = None
                self._sweep_start()

    def _sweep_start(self) -> None:
        left = self._leftovers()
        if left:
            self._signal_all(left, signal.SIGTERM)
            self.sweep_at = time.monotonic() + SWEEP_GRACE

    def _timers(self) -> None:
        now = time.monotonic()
        if self.sweep_at is not None and now >= self.sweep_at:
            self.sweep_at = None
            self._signal_all(self._leftovers(), signal.SIGKILL)
        elif self.status is not None and self.sweep_at is None and now >= self.next_scan:
            self.next_scan = now + SCAN_EVERY
            if self._leftovers():
                self._sweep_start()  # one appeared after the sweep began (forked by a dying one)
        if self.next_step_at is not None and now >= self.next_step_at:
            self._orphan_step()

    def _control(self) -> None:
        assert self.ctl is not None
        try:
            data = self.ctl.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._agent_gone()
            return
        try:
            msg = protocol.decode_msg(data)
            if msg.get("op") == "signal":
                self.signal_run(signal.Signals(int(msg["sig"])))
        except (ValueError, KeyError, TypeError):
            pass  # only the agent holds this socket; a message we don't know changes nothing

    def signal_run(self, sig: signal.Signals) -> None:
        """The script's process group and every other descendant, each signalled once."""
        if self.script is None or self.status is not None:
            return
        try:
            os.killpg(self.script.pid, sig)
        except ProcessLookupError:
            pass
        group = {self.script.pid}
        self._signal_all([p for p in self._leftovers() if _pgid(p) not in group], sig)

    @staticmethod
    def _signal_all(pids: list[int], sig: signal.Signals) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _agent_gone(self) -> None:
        """The agent died without stopping us: stop the run the way the agent would have."""
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        for stream in self.streams.values():
            stream.agent_gone()
        if self.status is None:
            self.orphan_steps = list(ORPHAN_STOP)
            self._orphan_step()

    def _orphan_step(self) -> None:
        if not self.orphan_steps or self.status is not None:
            self.next_step_at = None
            return
        sig, grace = self.orphan_steps.pop(0)
        self.signal_run(sig)
        self.next_step_at = time.monotonic() + grace if self.orphan_steps else None

    def _tell(self, msg: dict[str, object]) -> None:
        if self.ctl is None:
            return
        try:
            self.ctl.send(protocol.encode_msg(msg))
        except OSError:
            self._agent_gone()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def main(argv: list[str]) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print("usage: python -m box_agent.monitor CTL_FD MONITOR_DIR PASS_FDS IDENTITY -- ARGV",
              file=sys.stderr)
        return 2
    ctl = socket.socket(fileno=int(argv[0]))
    pass_fds = [int(fd) for fd in argv[2].split(",") if fd]
    monitor = Monitor(ctl, Path(argv[1]), pass_fds, argv[3], argv[5:])
    monitor.start()
    return monitor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
