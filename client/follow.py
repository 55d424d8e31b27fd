"""Follow a run channel: stream its output live, forward Enter, and turn Ctrl-C into a stop.

Signal handlers here only count. What a signal causes (a message to the box, a line on the
terminal) is done by the loop, which the signal wakes at once through a self-pipe
(signal.set_wakeup_fd). A handler that wrote to the terminal itself waited on a lock the code it
interrupted was holding: `lager python` hung when Ctrl-C came while output streamed.

What Ctrl-C means (ISSUE-NOTES 1):
- Following a run this command started (`lager python SCRIPT`): stop the run, wait for its end
  and exit with its code. The first Ctrl-C sends the script SIGINT (its finally blocks run, and
  Python's default makes the code 130), the second SIGTERM, the third leaves: the box then stops
  the run itself (SIGINT, SIGTERM, SIGKILL) since no client is left. SIGTERM to lager counts as
  a Ctrl-C, so a cancelled CI job stops its run the same way.
- Only watching (`--reattach`): leave at once with 130; the run goes on.

A lost connection is not the run's end (issue 11): with a `reconnect` function, the follower
says so in one line and reconnects with backoff, for up to RECONNECT_FOR seconds, going on at
the byte where each stream stopped. Enter typed meanwhile is delivered once the link is back.
Ctrl-C while it waits stops waiting (130); giving up says how to reattach.

Events (v2): the follower asks the box for the framed form (client/run_stream.py). The pause
and resume notices draw the countdown, and reach the caller through `on_event`, in order with
the output; `show_banners=False` leaves the banners' bytes out of what is shown.
"""
from __future__ import annotations

import gc
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, BinaryIO

from lager import heap, protocol
from lager.errors import ConnectionFailed
from lager.protocol.channel import Enter, Signal, Stop
from lager.protocol.codec import Message
from lager.protocol.events import Event, Hello

from . import EXIT_INTERRUPTED
from .chan_buffer import fewer_window_adjusts, packet_read_size, take_views
from .run_stream import OnEvent, Piece, RunStream
from .terminal_out import RunOutput

# Take all that paramiko holds at once: its buffer is an array that a partial read shifts down
# (a memmove of the rest), which with an 8 MiB window cost more CPU than the decryption.
_CHUNK = 1 << 26
_DRAIN_ROUNDS = 16
# After a stop, how long the output reader gets to take what is left before lager exits anyway
# (`lager python x | less` must not keep lager waiting on a reader that never reads).
FLUSH_AFTER_STOP = 2.0
_STOP_STEPS = (
    ("INT", "sent Ctrl-C (SIGINT) to the script; waiting for the run to end "
            "(Ctrl-C again sends SIGTERM)"),
    ("TERM", "sent SIGTERM to the script; waiting for the run to end "
             "(Ctrl-C again leaves, and the box stops the run)"),
)


def _send(chan: Any, msg: Message) -> bool:
    """False when the link took it badly. paramiko raises EOFError, not an OSError, when the
    socket write fails (a laptop waking into a connection the box already dropped); that
    escaped here once, killed the Enter thread and lost the Enter."""
    try:
        chan.sendall(msg.encode())
    except (OSError, EOFError):
        return False  # the channel is gone; the loop sees it close and says so
    return True


RECONNECT_FOR = float(os.environ.get("LAGER_RECONNECT_FOR", "600"))
_BACKOFF_FIRST, _BACKOFF_MAX = 0.25, 5.0
# Given the bytes of stdout and stderr already shown, a new channel that goes on from there;
# raises ConnectionFailed while the box cannot be reached.
Reconnect = Callable[[int, int], Any]


def _poke(fd: int) -> None:
    try:
        os.write(fd, b"w")
    except OSError:
        pass  # the pipe is full, so the loop is already due to wake


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def for_each_enter(fd: int, on_enter: Callable[[], object]) -> None:
    """Call on_enter for every line typed on fd, until EOF. Raw os.read, not sys.stdin: a
    daemon thread blocked inside a buffered reader aborts the interpreter at exit."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        for _ in range(data.count(b"\n")):
            on_enter()


class Follower:
    """Follows one run channel to the run's end.

    events: the channel was asked for the framed form (run header `events`, or an attach
    with LAGER_PROTOCOL=2; `reconnect` must ask for it too). on_event: called on the
    follower's thread with each Hello, PauseNotice and ResumeNotice, in order with the
    output; after a reconnect, Hello and the current PauseNotice (same seq) come again.
    show_banners=False: the banners' bytes are not shown (a fleet's live view
    draws its own line; the notice carries the banner's text). stdout/stderr: where the
    output goes (default: this process's). read_stdin=False: Enter is not read from stdin.
    """

    def __init__(self, chan: Any, box_name: str, stops_run: bool, leave_hint: str = "",
                 reconnect: Reconnect | None = None, *, events: bool = True,
                 on_event: OnEvent | None = None, show_banners: bool = True,
                 stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 read_stdin: bool = True) -> None:
        self.chan = chan
        self.reconnect = reconnect
        self.received = {1: 0, 2: 0}  # bytes of each stream taken from the box
        self.events = events
        self.on_event = on_event
        self.show_banners = show_banners
        self._noted_old_box = False
        self.read_stdin = read_stdin
        self.enters = 0  # Enter presses typed while the link was down, sent once it is back
        self._sent_enters: list[float] = []  # when each Enter went out on the current link
        self._heard_at = time.monotonic()  # when the box last sent us anything
        self._enter_lock = threading.Lock()
        self.box_name = box_name
        self.run_id: str | None = None  # from the box's Hello: what to reattach, if we give up
        self.stops_run = stops_run
        self.leave_hint = leave_hint
        self.signals = 0  # Ctrl-C (and SIGTERM) counted by the handler; the loop acts on them
        self._handled = 0
        self._stopping = False  # a stop was sent: read on, and drop what the reader can't take
        self._left = False
        # Never closed: the writer thread may still poke it while the process exits.
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self.out = RunOutput(stdout, stderr, wake=lambda: _poke(self._wake_w))
        self.stream = self._new_stream()

    def _new_stream(self) -> RunStream:
        return RunStream(self.events, self.show_banners, received=self.received)

    def _event(self, event: Event) -> None:
        if isinstance(event, Hello):
            self.run_id = event.run_id
        self.out.event(event)
        if self.on_event is not None:
            self.on_event(event)

    @property
    def left(self) -> bool:
        """True when we stopped following before the run ended (Ctrl-C to leave)."""
        return self._left

    def _on_signal(self, _sig: int, _frame: FrameType | None) -> None:
        self.signals += 1

    def _forward_enter(self, fd: int) -> None:
        """Every line typed goes to the box; it counts only if the run is paused when it lands."""
        for_each_enter(fd, self._enter)

    def _enter(self) -> None:
        with self._enter_lock:
            self._send_enter()

    def _send_enter(self) -> None:
        """Under _enter_lock: send one Enter, or keep it for the next link."""
        if self.chan.closed or not _send(self.chan, Enter()):
            self.enters += 1
        else:
            self._sent_enters.append(time.monotonic())

    def _reconnect(self) -> bool:
        """Reattach after a lost link; False when Ctrl-C stopped the wait or time ran out."""
        assert self.reconnect is not None
        self.out.notice(f"connection to {self.box_name} lost; reconnecting\u2026 "
                        "(Ctrl-C to stop waiting)")
        deadline = time.monotonic() + RECONNECT_FOR
        delay = _BACKOFF_FIRST
        seen = self.signals
        while time.monotonic() < deadline and self.signals == seen:
            try:
                chan = self.reconnect(self.received[1], self.received[2])
            except ConnectionFailed:
                try:
                    select.select([self._wake_r], [], [],
                                  min(delay, max(0.0, deadline - time.monotonic())))
                except InterruptedError:
                    pass
                _drain_pipe(self._wake_r)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            with self._enter_lock:
                # An Enter sent after the box last said anything may have died with the link
                # (a laptop waking sends into a connection the box already dropped): send it
                # again. One the box did take would have brought "=== resumed" back first.
                unheard = sum(1 for t in self._sent_enters if t > self._heard_at)
                self.chan = chan
                self.stream = self._new_stream()
                pending, self.enters, self._sent_enters = self.enters + unheard, 0, []
                for _ in range(pending):
                    self._send_enter()
            self.out.notice(f"reconnected to {self.box_name}")
            return True
        return False

    def run(self) -> int:
        # What is loaded now (paramiko, click, crypto) lives as long as we do: out of the
        # collector's way, so its full passes while output streams don't walk all of it.
        gc.freeze()
        # The read path's buffers (up to the 16 MiB window at once) stay in the heap instead of
        # being page-faulted in again for every read (lager/heap.py).
        heap.keep_freed_memory(heap.MMAP_MAX, 2 * protocol.CLIENT_WINDOW)
        if self.read_stdin and sys.stdin is not None and not sys.stdin.closed:
            threading.Thread(target=self._forward_enter, args=(sys.stdin.fileno(),),
                             daemon=True, name="lager-enter").start()
        caught = (signal.SIGINT, signal.SIGTERM) if self.stops_run else (signal.SIGINT,)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in caught}
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            status = self._follow()
            while status is not None and status < 0 and self.reconnect is not None \
                    and RECONNECT_FOR > 0:
                if self._reconnect():
                    status = self._follow()
                    continue
                if self.signals > self._handled:  # Ctrl-C while waiting: only waiting stops
                    self._handled = self.signals
                    self.out.notice(f"stopped waiting; the run goes on on the box. "
                                    f"{self.leave_hint}".rstrip())
                    status = None
                break  # gave up: the error below says the run may still be going
            self._flush()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.out.close()
        if status is None:
            return EXIT_INTERRUPTED
        if status < 0:
            waited = (f" (gave up reconnecting after {RECONNECT_FOR:g}s)"
                      if self.reconnect and RECONNECT_FOR > 0 else "")
            again = (f": lager python --reattach {self.run_id} --box {self.box_name}"
                     if self.run_id else " (see `lager python --list`, then --reattach)")
            raise ConnectionFailed(f"lost the connection to box {self.box_name} before the run "
                                   f"ended{waited}; it goes on there{again}")
        return status

    def _follow(self) -> int | None:
        """The run's exit status (-1: the connection died first), or None when we left."""
        chan = self.chan
        # Its data as views of the decrypted packets: passed on to the writers, never copied.
        take_views(chan)
        fewer_window_adjusts(chan)
        while True:
            if not self._act_on_signals():
                return None
            if self.out.broken and not self._stopping:
                # Whoever read our output is gone (`| head`): stop the run as Ctrl-C would.
                self._stop_step(0, "the output reader went away; stopping the run")
            buffered = chan.recv_ready() or chan.recv_stderr_ready()
            at_end = chan.eof_received or chan.closed
            if at_end and not buffered and chan.exit_status_ready():
                status = int(chan.recv_exit_status())
                # paramiko reports -1 when the channel closed with no exit status: the
                # connection died, so a record cut in half is the link's loss, not the box's
                # protocol error (the caller reconnects or says the link was lost).
                if status != -1:
                    self._show(self.stream.at_end())
                return status
            # While the queue is full we stop reading, and the box's window closes: that is
            # the backpressure. After a stop we read on (and drop what the reader can't take)
            # so the run's end and exit status are never stuck behind unread output.
            reading = (self.out.has_room() or self._stopping) and (buffered or not at_end)
            try:
                select.select([self._wake_r, chan] if reading else [self._wake_r], [], [],
                              0.5 if reading or not at_end else 0.05)
            except InterruptedError:
                pass
            _drain_pipe(self._wake_r)
            if reading:
                self._drain()

    def _act_on_signals(self) -> bool:
        """Apply the Ctrl-Cs counted so far, in order; False once the user chose to leave."""
        while self._handled < self.signals:
            self._handled += 1
            step = self._handled - 1
            if not self.stops_run or step >= len(_STOP_STEPS):
                self._left = True
                if self.stops_run:
                    # Runs outlive their clients; this one was asked to stop, so the box
                    # finishes the job itself (SIGINT, SIGTERM, SIGKILL) once we are gone.
                    _send(self.chan, Stop())
                self.out.lossy()
                self.out.notice(
                    "left the run; the box stops it now that no client is left" if self.stops_run
                    else f"detached; the run goes on on the box. {self.leave_hint}")
                return False
            self._stop_step(step, _STOP_STEPS[step][1])
        return True

    def _stop_step(self, step: int, text: str) -> None:
        self._stopping = True
        self.out.lossy()
        _send(self.chan, Signal(name=_STOP_STEPS[step][0]))
        self.out.notice(text)

    def _drain(self) -> None:
        chan = self.chan
        # Bounded, so a flood that arrives as fast as it is read still lets the loop look at
        # signals and the run's end.
        for _ in range(_DRAIN_ROUNDS):
            if not ((self.out.has_room() or self._stopping) and
                    (chan.recv_stderr_ready() or chan.recv_ready())):
                return
            self._heard_at = time.monotonic()
            # stdout first: a box's hello comes before anything it writes on stderr.
            if chan.recv_ready():
                # A packet at a time, as it came: no join of the packets into new bytes.
                size = packet_read_size(getattr(chan, "in_buffer", None), _CHUNK)
                self._show(self.stream.stdout_data(chan.recv(size)))
            if chan.recv_stderr_ready():
                self._show(self.stream.stderr_data(chan.recv_stderr(_CHUNK)))

    def _show(self, pieces: list[Piece]) -> None:
        if not self._noted_old_box:
            note = self.stream.older_box_note(self.box_name)
            if note:
                self._noted_old_box = True
                self.out.notice(note)
        for stream, data in pieces:
            if isinstance(data, (bytes, memoryview)):
                self.out.write(stream, data)
            else:
                self._event(data)

    def _flush(self) -> None:
        """Let the writers finish: all of it after a normal end, a bounded wait after a stop
        or when leaving. A Ctrl-C while waiting gives up on the rest."""
        if self.out.dropped:
            self.out.notice(f"{self.out.dropped} bytes of output after Ctrl-C were dropped: "
                            "the output reader was not keeping up")
        bounded = self._stopping or self._left
        until = time.monotonic() + FLUSH_AFTER_STOP if bounded else None
        seen = self.signals
        while not self.out.idle() and self.signals == seen:
            left = 0.5 if until is None else min(0.5, until - time.monotonic())
            if left <= 0:
                return
            try:
                select.select([self._wake_r], [], [], left)
            except InterruptedError:
                pass
            _drain_pipe(self._wake_r)
