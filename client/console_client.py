"""`lager python --console ID`: a terminal (or a pipe) to the console inside a paused run.

Two ways in, one relay: `quick_console` (from the fast path, client/fastpath.py) opens the
channel with the quick SSH client, so a console opens as fast as a `--continue` answers plus the
PTY request riding along; `open_console` (the click command) uses the full paramiko connection,
for the boxes the quick client leaves to it.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import termios
import threading
import tty

from lager import protocol
from lager.errors import ConnectionFailed, RemoteError

from .terminal_out import write_all

TYPE_CHECKING = False  # typing is not loaded at run time on the console's path (issue 13)
if TYPE_CHECKING:
    from typing import Any

    from .config import Box, Config
    from .context import LagerContext


def _pty(interactive: bool) -> tuple[str, int, int] | None:
    if not interactive:
        return None
    cols, rows = _window_size()
    return os.environ.get("TERM", "xterm"), cols, rows


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def open_console(obj: LagerContext, run_id: str) -> int:
    interactive = _interactive()
    with obj.connect() as conn:
        chan = conn.open(protocol.SUB_CONSOLE, pty=_pty(interactive))
        if interactive and conn.pty_refused:
            # A `restrict` or `no-pty` key: the console runs line by line, so the terminal
            # stays as it is (raw mode with no PTY on the box would echo nothing).
            sys.stderr.write(f"lager: box {conn.box.name} refused a terminal for this key "
                             "(restrict or no-pty in its authorized_keys); the console runs "
                             "without line editing\n")
            sys.stderr.flush()
            interactive = False
        chan.sendall((run_id + "\n").encode())
        return _session(chan, interactive)


def quick_console(config: Config, box: Box, run_id: str) -> int:
    """The console over the quick client. Raises quick_ssh.Unsupported while the full way may
    still be taken (opening a console twice does no harm: it only looks)."""
    from . import quick_channel
    from .quick_ssh import Lost

    interactive = _interactive()
    chan = quick_channel.open_channel(config, box, protocol.SUB_CONSOLE, first=run_id,
                                      pty=_pty(interactive), resend_safe=True)
    try:
        return _session(chan, interactive)
    except Lost as exc:
        raise ConnectionFailed(f"lost the connection to the box: {exc}") from None
    finally:
        chan.close()


def _session(chan: Any, interactive: bool) -> int:
    got_output = _relay_tty(chan) if interactive else _relay_pipe(chan)
    err = _drain_stderr(chan)
    status = int(chan.recv_exit_status())
    if status != 0 and not got_output:
        raise RemoteError(err.strip() or f"console failed with status {status}")
    if err:
        sys.stderr.write(err)
    return status


def _drain_stderr(chan: Any) -> str:
    from .chan_io import read_to_end

    return read_to_end(chan.recv_stderr).decode("utf-8", "replace")


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


def _window_size() -> tuple[int, int]:
    """The terminal's own size: $COLUMNS (what shutil reads first) goes stale on a resize."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.columns, size.lines
    except OSError:
        return 80, 24


def _relay_tty(chan: Any) -> bool:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    # SIGWINCH only notes the change and wakes select: sending from the handler could block on
    # the channel lock the interrupted loop holds.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_resize(_sig: int, _frame: Any) -> None:
        try:
            os.write(wake_w, b"w")
        except BlockingIOError:
            pass  # a change is already waiting to be read

    previous = signal.signal(signal.SIGWINCH, on_resize)
    got = False
    # The quick client's channel may hold what it has read already (the socket then says
    # nothing), and a readable socket may carry no data for us (a keepalive): it says itself.
    quick = hasattr(chan, "arrived")
    try:
        # Raw mode: keys (Tab, arrows, Ctrl-C, Ctrl-D) go to the console's line editor.
        tty.setraw(fd)
        while True:
            if quick and chan.pending():
                readable = [chan, *select.select([fd, wake_r], [], [], 0)[0]]
            else:
                readable, _, _ = select.select([chan, fd, wake_r], [], [])
            if wake_r in readable:
                os.read(wake_r, 4096)
                cols, rows = _window_size()
                chan.resize_pty(width=cols, height=rows)
            if chan in readable and (not quick or chan.arrived()):
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
        signal.signal(signal.SIGWINCH, previous)
        os.close(wake_r)
        os.close(wake_w)
        try:
            # The console turned bracketed paste on; one cut off mid-line could not turn it off.
            os.write(sys.stdout.fileno(), b"\x1b[?2004l")
        except OSError:
            pass  # the terminal is gone: nothing to restore
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return got
