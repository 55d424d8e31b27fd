"""The monitor's one loop: the script's pipes to the log, the script's link to the agent."""
from __future__ import annotations

import array
import fcntl
import json
import os
import select
import signal
import socket
import termios
import time
from pathlib import Path

from lager import protocol
from lager.protocol.codec import Message, ProtocolError
from lager.protocol.link import (
    BannerAt,
    BannerPlaced,
    FromScript,
    LinkClosed,
    MonitorExit,
    MonitorFailed,
    MonitorHello,
    MonitorOutput,
    PauseMsg,
    ResumedMsg,
    SignalScript,
    ToScript,
    Window,
    decode_from_agent,
    decode_from_script,
)

from ..runlog import DEFAULT_LIMIT, STDERR, STDOUT, LogWriter
from .process import IGNORED, PR_SET_CHILD_SUBREAPER, ScriptProcess, prctl

# Bytes the monitor may log ahead of the slowest attached viewer before it stops reading the
# script's pipes: a slow client slows the script, as a pipe would, instead of losing output.
WINDOW = 4 * 1024 * 1024
# The script's pipes hold this much (the kernel's default is 64 KiB, the most an unprivileged
# process may ask is usually 1 MiB), and a read takes all of it: each handoff between the script
# and us costs a wakeup, and on a busy box wakeups, not bytes, set the pace.
PIPE_BYTES = 1 << 20
_CHUNK = PIPE_BYTES

STATUS_FILE = "status.json"
# After the run's end, how long the monitor waits for the agent to take its last messages (the
# agent may first be feeding a slow client the last window of output).
LINGER = 120.0
SOCKET_NAME = "sock"
# When the agent goes, its last window stands this long before the script may log freely: a
# graceful restart's next agent takes the run back sooner, with a hold for its client.
AGENTLESS_GRACE = 5.0


def _available(fd: int | None) -> int:
    """Bytes waiting in a pipe (0 when it cannot say)."""
    if fd is None:
        return 0
    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count, True)
    except OSError:
        return 0
    return count[0]


def window_for(log_limit: int) -> int:
    """The window of a run with this log limit (monitor.c: the same): at most half the limit,
    so what a viewer has not taken yet is never what the limit drops."""
    return min(WINDOW, log_limit // 2)


class Monitor:
    def __init__(self, ctl: socket.socket, monitor_dir: Path, workdir: Path, identity: str,
                 argv: list[str], log_limit: int = DEFAULT_LIMIT) -> None:
        self.agent: socket.socket | None = ctl
        self.monitor_dir = monitor_dir
        self.workdir = workdir
        self.identity = identity
        self.argv = argv
        self.log = LogWriter(monitor_dir, log_limit)
        self.window: int | None = window_for(log_limit)
        self.agentless_until: float | None = None  # when the window lapses with no agent
        self.outstanding = False  # an `output` sent that no `window` has answered yet
        self.acked_end = 0  # the log offset the agent has taken in
        self.pause: PauseMsg | None = None  # the script's current pause, for a new agent
        self.paused_at = 0.0
        self.banner_at: BannerAt | None = None  # where its banner lies in the run's stderr
        self.resumed = 0  # the highest pause number resumed, for a new agent (MonitorHello)
        self.pipes: dict[int, int] = {}  # read end -> stream
        self.wake_r, self.wake_w = os.pipe()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.link: socket.socket | None = None
        self.script: ScriptProcess | None = None

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        for sig in IGNORED:
            signal.signal(sig, signal.SIG_IGN)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes poll() through wake_w
        # Relative to our cwd: a socket path must fit in 108 bytes, the monitor dir may not.
        os.chdir(self.monitor_dir)
        self.listener.bind(SOCKET_NAME)
        self.listener.listen(4)
        self.link, script_link = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (out_r, err_r):
            _grow_pipe(fd)
        # A second fd on the script's stderr: pytest's capture takes fd 2 over, and a banner
        # written there would wait in its capture file, unseen, while the script pauses.
        err_copy = os.dup(err_w)
        env = dict(os.environ)
        env[protocol.ENV_AGENT_PID] = str(os.getpid())  # the script's parent is us
        env[protocol.ENV_AGENT_FD] = str(script_link.fileno())
        env[protocol.ENV_STDERR_FD] = str(err_copy)
        try:
            self.script = ScriptProcess(self.argv, env, [script_link.fileno(), err_copy],
                                        out_w, err_w, self.identity, self.workdir)
        except OSError as exc:
            self._tell(MonitorFailed(error=f"cannot start the script: {exc}"))
            raise SystemExit(127) from None
        finally:
            for fd in (out_w, err_w, err_copy):
                os.close(fd)
            script_link.close()
        self.pipes = {out_r: STDOUT, err_r: STDERR}
        self._hello()

    def _hello(self) -> None:
        assert self.script is not None
        self.outstanding, self.acked_end = False, self.log.end
        self._tell(MonitorHello(pid=self.script.pid, end=self.log.end, pause=self.pause,
                                paused_at=self.paused_at, banner_at=self.banner_at,
                                resumed=self.resumed))

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        assert self.script is not None
        while self.pipes or not self.script.swept():
            self._poll_once()
        self.log.close()
        status = self.script.status
        assert status is not None
        _write_atomically(self.monitor_dir / STATUS_FILE,
                          json.dumps({"status": status, "ended_at": time.time(),
                                      "end": self.log.end}))
        self._tell(MonitorExit(status=status, end=self.log.end))
        self._linger()
        return status

    def _linger(self) -> None:
        """Stay until the agent has read our last messages and closed its end.

        Closing a unix socket that still holds unread messages resets the peer's: the agent's
        next read fails with ECONNRESET and loses our final `output` and `exit`, which are
        still queued for it (a `window` it sent for our last `output` arrives after we stop
        reading). Seen as a run whose client got the exit code but not the output's tail.
        So: no more agents (a new one finds status.json), say we are done, and read, dropping
        it, whatever the agent still sends until it closes, goes away, or LINGER passes.
        """
        self.listener.close()
        agent = self.agent
        if agent is None:
            return
        try:
            agent.shutdown(socket.SHUT_WR)
        except OSError:
            return
        until = time.monotonic() + LINGER
        while (left := until - time.monotonic()) > 0:
            try:
                readable, _, _ = select.select([agent], [], [], left)
                if not readable:
                    return
                data, ancdata, _, _ = agent.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
            except OSError:
                return
            for fd in _fds(ancdata):
                os.close(fd)
            if not data:
                return

    def _poll_once(self) -> None:
        assert self.script is not None
        poller = select.poll()
        watched = [self.wake_r, self.listener.fileno()]
        if self.agent is not None:
            watched.append(self.agent.fileno())
        if self.link is not None:
            watched.append(self.link.fileno())
        if self.agentless_until is not None and time.monotonic() >= self.agentless_until:
            self.window, self.agentless_until = None, None
        if self.window is None or self.log.end < self.window:
            watched.extend(self.pipes)
        for fd in watched:
            poller.register(fd, select.POLLIN)
        deadline = min((d for d in (self.script.next_deadline(), self.agentless_until)
                        if d is not None), default=None)
        timeout = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        events = dict(poller.poll(timeout))
        ready = set(events)
        if self.wake_r in ready:
            os.read(self.wake_r, 4096)
        self.script.reap()
        if self.listener.fileno() in ready:
            self._accept()
        if self.agent is not None and self.agent.fileno() in ready:
            self._from_agent()
        if self.link is not None and self.link.fileno() in ready:
            self._from_script(bool(events[self.link.fileno()] & (select.POLLHUP |
                                                                  select.POLLERR)))
        self._drain_in_order(ready)
        self._notify()
        self.script.tick()

    def _notify(self) -> None:
        """At most one `output` is outstanding: the agent's window answers it. So a busy
        script cannot fill the agent's socket, and a slow agent never blocks us."""
        if self.agent is not None and not self.outstanding and self.log.end > self.acked_end:
            self.outstanding = True
            self._tell(MonitorOutput(end=self.log.end))

    def _drain_in_order(self, ready: set[int]) -> None:
        """What the script wrote to stdout before a stderr line is logged before that line:
        stderr's bytes are counted first and only those taken, after stdout (monitor.c's
        drain_in_order says why)."""
        fd_of = {stream: fd for fd, stream in self.pipes.items()}
        out, err = fd_of.get(STDOUT), fd_of.get(STDERR)
        err_avail = _available(err) if err in ready else 0
        if out is not None and (out in ready or (err_avail and _available(out))):
            self._drain(out)
        if err is not None and err in ready:
            self._drain(err, err_avail or _CHUNK)

    def _drain(self, fd: int, most: int = _CHUNK) -> bool:
        try:
            data = os.read(fd, most)
        except BlockingIOError:
            return False
        if not data:
            os.close(fd)
            del self.pipes[fd]
            return False
        try:
            self.log.append(self.pipes[fd], data)
        except OSError:
            pass  # a full disk loses this output, never the run; the agent logs the gap
        return True

    # -- the agent -----------------------------------------------------------------------

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        if self.agent is not None:
            self.agent.close()  # a new agent (a restart, or --replace) takes over
        self.agent = conn
        self.agentless_until = None
        self._hello()

    def _from_agent(self) -> None:
        assert self.agent is not None
        try:
            data, ancdata, _, _ = self.agent.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
        except OSError:
            data, ancdata = b"", []
        fds = _fds(ancdata)
        if not data:
            self._agent_gone()
            return
        try:
            self._agent_says(decode_from_agent(data), fds)
        except (ProtocolError, ValueError):
            pass  # only an agent reaches this socket; what we don't know changes nothing
        finally:
            for fd in fds:
                os.close(fd)

    def _agent_says(self, msg: Message, fds: list[int]) -> None:
        if isinstance(msg, SignalScript) and self.script is not None:
            self.script.signal(signal.Signals(msg.sig))
        elif isinstance(msg, Window):  # also the answer to our last `output`
            self.window = msg.until
            self.acked_end = max(self.acked_end, msg.seen if msg.seen is not None
                                 else self.acked_end)
            self.outstanding = False
        elif isinstance(msg, ToScript) and self.link is not None:
            body = msg.body
            self._note_resumed(body)
            if body.get("op") == "resume" and self.pause and body.get("seq") == self.pause.seq:
                self.pause, self.banner_at = None, None
            try:
                self.link.sendmsg([ToScript.encode_body(body)],
                                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", fds))] if fds else [])
            except OSError:
                pass  # the script is gone; its exit is on its way

    def _note_resumed(self, body: dict[str, object]) -> None:
        """The agent resumed a pause (the body relayed to the script): remember its number."""
        seq = body.get("seq")
        if body.get("op") == "resume" and isinstance(seq, int) and not isinstance(seq, bool):
            self.resumed = max(self.resumed, seq)

    def _agent_gone(self) -> None:
        """The agent went away. The run goes on; a new agent reconnects through our socket."""
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        if self.window is not None:  # nobody to wait for, after the grace: the log's own
            self.agentless_until = time.monotonic() + AGENTLESS_GRACE  # limit bounds the disk

    def _tell(self, msg: Message) -> None:
        if self.agent is None:
            return
        try:
            self.agent.send(msg.encode())
        except OSError:
            self._agent_gone()

    # -- the script's link ---------------------------------------------------------------

    def _from_script(self, hung_up: bool) -> None:
        assert self.link is not None
        try:
            data = self.link.recv(65536)
        except OSError:
            data = b""
        if not data and not hung_up:
            return  # an empty datagram, not the end of the link
        if not data:
            self.link.close()
            self.link = None
            self.pause, self.banner_at = None, None
            self._tell(LinkClosed())
            return
        try:
            body = decode_from_script(data)
        except ProtocolError:
            return
        banner_at = self._put_banner(body.banner) if body.banner else None
        if body.banner:
            try:
                self.link.send(BannerPlaced(seq=body.seq).encode())
            except OSError:
                pass  # the script is gone; its exit is on its way
        if isinstance(body, PauseMsg):
            self.pause, self.paused_at, self.banner_at = body, time.time(), banner_at
        elif isinstance(body, ResumedMsg):
            self.resumed = max(self.resumed, body.seq)
            if self.pause and self.pause.seq == body.seq:
                self.pause, self.banner_at = None, None
        self._tell(FromScript(body=body.to_dict(), at=self.paused_at, banner_at=banner_at))

    def _put_banner(self, text: str) -> BannerAt | None:
        """The script's banner on its stderr, after everything it wrote before sending it
        (already in our pipes: a pipe write is done when it returns). Returns its range."""
        for fd in list(self.pipes):
            # Non-blocking from now on: the loop's poll result, taken before this drain, may
            # still call a pipe ready that we have just emptied (_drain takes EAGAIN).
            os.set_blocking(fd, False)
            for _ in range(4):  # bounded: a thread that never stops printing can't hold us
                if not self._drain(fd):
                    break
        data = text.encode("utf-8", "replace")
        start = self.log.totals[STDERR]
        try:
            self.log.append(STDERR, data)
        except OSError:
            return None  # a full disk loses the banner as it would the script's own line
        return [start, start + len(data)]


def _fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(array.array("i", payload[:usable]))
    return fds


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # over this user's pipe quota: the default size works, only slower


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
