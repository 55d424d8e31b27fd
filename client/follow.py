"""Follow a run channel: stream its output live, forward Enter and Ctrl-C, return its status."""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
from types import FrameType
from typing import Any

from lager.errors import ConnectionFailed

from .terminal_out import RunOutput

EXIT_INTERRUPTED = 130


def _send(chan: Any, msg: dict[str, str]) -> None:
    try:
        chan.sendall((json.dumps(msg) + "\n").encode())
    except OSError:
        pass


def _forward_enter(chan: Any, fd: int) -> None:
    """Every line typed goes to the box; it counts only if the run is paused when it lands.

    Raw os.read, not sys.stdin: a daemon thread blocked inside a buffered reader aborts the
    interpreter at exit.
    """
    while not chan.closed:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        for _ in range(data.count(b"\n")):
            _send(chan, {"op": "enter"})


class Follower:
    def __init__(self, chan: Any, out: RunOutput, ctrl_c_detaches: bool, detach_hint: str = ""
                 ) -> None:
        self.chan = chan
        self.out = out
        self.ctrl_c_detaches = ctrl_c_detaches
        self.detach_hint = detach_hint
        self.interrupts = 0
        self.stop_waiting = threading.Event()

    def _on_sigint(self, _sig: int, _frame: FrameType | None) -> None:
        self.interrupts += 1
        if self.ctrl_c_detaches or self.interrupts > 1:
            self.stop_waiting.set()
            return
        _send(self.chan, {"op": "signal", "name": "INT"})
        self.out.notice("sent Ctrl-C to the script; press Ctrl-C again to stop waiting")

    def run(self) -> int:
        if sys.stdin is not None and not sys.stdin.closed:
            threading.Thread(target=_forward_enter, args=(self.chan, sys.stdin.fileno()),
                             daemon=True, name="lager-enter").start()
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            self._pump()
        finally:
            signal.signal(signal.SIGINT, previous)
            self.out.close()
        if self.stop_waiting.is_set():
            if self.ctrl_c_detaches:
                self.out.notice(f"detached; the run goes on on the box. {self.detach_hint}")
                return 0
            self.out.notice("stopped waiting; the box stops the run since no client is left")
            return EXIT_INTERRUPTED
        status = self.chan.recv_exit_status() if self.chan.exit_status_ready() else -1
        if status < 0:
            raise ConnectionFailed("lost the connection to the box before the run ended")
        return int(status)

    def _pump(self) -> None:
        chan = self.chan
        while not self.stop_waiting.is_set():
            try:
                select.select([chan], [], [], 0.5)
            except InterruptedError:
                continue
            self._drain()
            if chan.eof_received or chan.closed:
                # Nothing more can arrive; what is buffered is read to its end (recv returns
                # b"" only once the buffer is empty), so no byte is lost to the close.
                while data := chan.recv_stderr(262144):
                    self.out.write(2, data)
                while data := chan.recv(262144):
                    self.out.write(1, data)
                chan.status_event.wait(5)
                return

    def _drain(self) -> None:
        chan = self.chan
        while chan.recv_stderr_ready():
            self.out.write(2, chan.recv_stderr(262144))
        while chan.recv_ready():
            self.out.write(1, chan.recv(262144))
