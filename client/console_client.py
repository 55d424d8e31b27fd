"""`lager python --console ID`: a terminal (or a pipe) to the console inside a paused run."""
from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from typing import Any

from lager import protocol
from lager.errors import RemoteError

from .context import LagerContext
from .terminal_out import write_all


def open_console(obj: LagerContext, run_id: str) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    with obj.connect() as conn:
        pty = None
        if interactive:
            size = shutil.get_terminal_size()
            pty = (os.environ.get("TERM", "xterm"), size.columns, size.lines)
        chan = conn.open(protocol.SUB_CONSOLE, pty=pty)
        chan.sendall((run_id + "\n").encode())
        got_output = _relay_tty(chan) if interactive else _relay_pipe(chan)
        err = _drain_stderr(chan)
        status = chan.recv_exit_status()
    if status != 0 and not got_output:
        raise RemoteError(err.strip() or f"console failed with status {status}")
    if err:
        sys.stderr.write(err)
    return status


def _drain_stderr(chan: Any) -> str:
    err = bytearray()
    while True:
        data = chan.recv_stderr(65536)
        if not data:
            return err.decode("utf-8", "replace")
        err += data


def _relay_pipe(chan: Any) -> bool:
    def feed() -> None:
        try:
            while data := os.read(sys.stdin.fileno(), 65536):
                chan.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            try:
                chan.shutdown_write()  # EOF: the console runs what it got, then disconnects
            except OSError:
                pass

    threading.Thread(target=feed, daemon=True, name="lager-console-in").start()
    got = False
    while data := chan.recv(65536):
        got = True
        write_all(sys.stdout.buffer, data)
    return got


def _relay_tty(chan: Any) -> bool:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def on_resize(_sig: int, _frame: Any) -> None:
        size = shutil.get_terminal_size()
        chan.resize_pty(width=size.columns, height=size.lines)

    previous = signal.signal(signal.SIGWINCH, on_resize)
    got = False
    try:
        # Raw mode: keys (Tab, arrows, Ctrl-C, Ctrl-D) go to the console's line editor.
        tty.setraw(fd)
        while True:
            readable, _, _ = select.select([chan, fd], [], [])
            if chan in readable:
                data = chan.recv(65536)
                if not data:
                    break
                got = True
                os.write(sys.stdout.fileno(), data)
            if fd in readable:
                keys = os.read(fd, 1024)
                if not keys:
                    break
                chan.sendall(keys)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
    return got
