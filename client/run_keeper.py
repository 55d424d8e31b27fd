"""A run is its own keeper (issue 13): while `lager python SCRIPT` follows a run, its
authenticated connection answers the short requests of the same user's other terminals, through
the box's keeper socket (client/mux.py), so `--continue`, `--list`, `--kill` and the instrument
commands from a second terminal never handshake.

Same rules as the keeper it stands in for: the socket is 0600 in a 0700 directory, the peer's uid
is checked (SO_PEERCRED), LAGER_MUX=0 turns it off, and a request is forwarded once: one that
fails before it reached the box (the run's connection is down, or being re-made after a lost
link) tells the client to go direct; one that may have reached it is never sent twice.

What it never does: close or otherwise touch the run's connection (the run owns it), or replace a
keeper that already answers on the socket (that one serves, and outlives the run). When the run
ends it stops taking requests, lets the ones in flight finish (briefly), and removes only its own
socket, so the next request goes direct and leaves an ordinary keeper behind.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from lager.errors import ConnectionFailed

from . import keeper_channels, mux
from .config import Box, Config
from .keeper_stream import StreamServer
from .own_pause import OwnPause

if TYPE_CHECKING:
    import paramiko

    from .ssh import BoxConnection

# How long a run that has ended waits for the answers it is still relaying: they are short
# requests (milliseconds), and the engineer is waiting for their prompt back.
FINISH_IN_FLIGHT = 5.0
# A run that found the socket served (another attached run of the box, or a keeper) looks this
# often whether that one went, and then serves itself.
TAKEOVER_CHECK = 1.0

CurrentConnection = Callable[[], "BoxConnection | None"]


class _RunConnection:
    """The run's connection as it is at each request: after a lost link (client/reconnect.py)
    the follower's new one. Only what client/context.py's exchange uses. `wait`: for a run
    whose connection for the others is made on demand (client/quick_run.py SideKeeper), a
    request waits for it; None when there is none to wait for."""

    def __init__(self, box: Box, current: CurrentConnection,
                 wait: CurrentConnection | None = None) -> None:
        self.box = box
        self._current = current
        self._wait = wait
        self.pty_refused = False

    def _up(self) -> BoxConnection:
        conn = self._current()
        if conn is None and self._wait is not None:
            conn = self._wait()
        if conn is None or not conn.transport.is_active():
            # Before anything went out: the client goes direct.
            raise ConnectionFailed("the connection of the run serving as keeper is down")
        return conn

    @property
    def transport(self) -> paramiko.Transport:
        return self._up().transport

    def open(self, subsystem: str, env: dict[str, str] | None = None,
             pty: tuple[str, int, int] | None = None,
             on_invoke: Callable[[], None] | None = None) -> paramiko.Channel:
        conn = self._up()
        chan = conn.open(subsystem, env=env, pty=pty, on_invoke=on_invoke)
        self.pty_refused = conn.pty_refused  # a `restrict` key (keeper_stream says so)
        return chan


class RunKeeper(mux.Keeper):
    """mux.Keeper's request handling (peer check, forwarding, replies) over a run's connection,
    served from a thread of the `lager python` process while it follows the run."""

    def __init__(self, config: Config, box: Box, current: CurrentConnection,
                 own: OwnPause | None = None, wait: CurrentConnection | None = None) -> None:
        # No super().__init__(): that would make a connection of its own.
        self.conn = cast("BoxConnection", _RunConnection(box, current, wait))
        self._primes = wait is None  # a connection made on demand is primed by its maker
        self._current = current
        self._own = own
        self.path = mux.socket_path(config, box)
        self.last_used = time.monotonic()
        self.active = 0
        self.lock = threading.Lock()
        self._server: socket.socket | None = None
        self._inode = 0
        self._acceptor: threading.Thread | None = None
        self._streams: StreamServer | None = None
        self._done = threading.Event()
        self._state = threading.Lock()  # a takeover never starts serving after stop()

    def start(self) -> bool:
        """Serve the box's keeper socket; False when a keeper already answers there (it
        serves) or the socket cannot be made (the run goes on regardless)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.path.parent, 0o700)
            if mux._answers(self.path):
                return False
            tmp = self.path.with_suffix(f".run{os.getpid()}")
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.bind(str(tmp))
                os.chmod(tmp, 0o600)  # before anyone can find it under the real name
                server.listen(16)
                os.replace(tmp, self.path)  # atomic, as the keeper does
                self._inode = os.stat(self.path).st_ino
            except OSError:
                server.close()
                _unlink_quietly(tmp)
                return False
        except OSError:
            return False
        self._server = server
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name="lager-run-keeper")
        self._acceptor.start()
        if self._primes:
            keeper_channels.prime(self.conn)
        self._streams = StreamServer(self.path, lambda: self.conn).start()  # consoles
        return True

    def _local_pin(self, line: str) -> str | None:
        """This run's own pause is numbered here, with no round trip to the box
        (client/own_pause.py); other ids are numbered from the box's list (mux.Keeper)."""
        return self._own.pin(line, self._link_up) if self._own is not None else None

    def _link_up(self) -> bool:
        conn = self._current()
        return conn is not None and conn.transport.is_active()

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # stop() shut the socket down
            threading.Thread(target=self._handle, args=(client,), daemon=True,
                             name="lager-run-keeper-request").start()

    def watch(self) -> None:
        """Serve once the keeper serving now is gone (until this run ends)."""
        def take_over() -> None:
            while not self._done.wait(TAKEOVER_CHECK):
                if mux._answers(self.path):
                    continue
                with self._state:
                    if self._done.is_set() or self.start():
                        return

        threading.Thread(target=take_over, daemon=True, name="lager-run-keeper-watch").start()

    def stop(self) -> None:
        with self._state:
            self._done.set()
            server, self._server = self._server, None
        if server is None:
            return
        if self._streams is not None:
            self._streams.stop()
        try:
            if os.stat(self.path).st_ino == self._inode:  # never a newer keeper's socket
                self.path.unlink()
        except OSError:
            pass
        try:
            # Wakes the blocked accept() (close() alone does not, on Linux).
            server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        server.close()
        if self._acceptor is not None:
            self._acceptor.join(FINISH_IN_FLIGHT)
        deadline = time.monotonic() + FINISH_IN_FLIGHT
        while time.monotonic() < deadline:
            with self.lock:
                if self.active == 0:
                    return
            time.sleep(0.01)


def _unlink_quietly(path: Any) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def serve(config: Config, box: Box, current: CurrentConnection,
          own: OwnPause | None = None, wait: CurrentConnection | None = None
          ) -> RunKeeper | None:
    """Start serving for the run being followed (the hook in client/run_client.py), or once
    the keeper serving now goes; None when LAGER_MUX=0. `own`: the run's pause as its
    follower saw it, which numbers a bare --continue of this run without asking the box.
    `wait`: see _RunConnection."""
    if not mux.enabled():
        return None
    keeper = RunKeeper(config, box, current, own, wait)
    if not keeper.start():
        keeper.watch()
    return keeper


def stop(keeper: RunKeeper | None) -> None:
    if keeper is not None:
        keeper.stop()
