"""A run over the quick client (client/quick_run.py) serving its user's other terminals
(client/run_keeper.py, issue 13) over a second, full connection, which the quick one cannot
carry."""
from __future__ import annotations

import threading
import time

# Not typing.TYPE_CHECKING: a run's start does without importing typing where it can.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .context import LagerContext
    from .own_pause import OwnPause
    from .reconnect import Reattacher
    from .run_keeper import RunKeeper
    from .run_stream import Event, OnEvent
    from .ssh import BoxConnection

# A run that has not paused serves the other terminals once it has gone on this long: a short
# run, or a short stream, never pays for a second handshake.
SIDE_AFTER = 1.0


class SideKeeper:
    """A quick run serving its user's other terminals (client/run_keeper.py, issue 13) over a
    second, full connection, which the quick one cannot carry.

    The keeper socket is served from the run's first pause (who uses a second terminal is an
    engineer at a pause), or once the run has gone on for SIDE_AFTER, and the connection is
    made then, in the background; a request that comes before it is up waits for it. A short
    run, or a stream, never pays for a second handshake. Nothing with LAGER_MUX=0."""

    def __init__(self, obj: LagerContext) -> None:
        self.obj = obj
        self.conn: BoxConnection | None = None
        self._own: OwnPause | None = None
        self._again: Reattacher | None = None
        self._serving: RunKeeper | None = None
        self._lock = threading.Condition()
        self._connecting = self._served = self._stopped = False
        self._made = False  # the side connection came up once (it is not made again)
        self._timer: threading.Timer | None = None

    def serve(self, own: OwnPause, again: Reattacher) -> Callable[[], None]:
        """run_client's `serve`: from now on, as the class says; returns stop."""
        from . import mux

        self._own, self._again = own, again
        if mux.enabled():
            self._timer = threading.Timer(SIDE_AFTER, self.begin)
            self._timer.daemon = True
            self._timer.start()
        return self.stop

    def on_event(self, then: OnEvent) -> OnEvent:
        """The follower's on_event: serving begins at the run's first pause."""
        from lager.protocol.events import PauseNotice

        def on_event(event: Event) -> None:
            if isinstance(event, PauseNotice) and self._timer is not None:
                self.begin()
            then(event)

        return on_event

    def begin(self) -> None:
        """Serve the keeper socket, and make the connection behind it."""
        from . import run_keeper

        with self._lock:
            if self._served or self._stopped:
                return
            self._served = True
            self._serving = run_keeper.serve(self.obj.config, self.obj.box(), self._current,
                                             self._own, wait=self._wait)
        self._connect_soon()

    def _connect_soon(self) -> None:
        with self._lock:
            if self._connecting or self._made or self._stopped:
                return
            self._connecting = True
        threading.Thread(target=self._connect, daemon=True, name="lager-side-conn").start()

    def _current(self) -> BoxConnection | None:
        # After a lost link, the follower's new connection, as for a full run's keeper; the
        # side connection is made once, and a lost one is not made again (requests go direct
        # until the follower's reconnect brings a connection).
        again = self._again
        return (again.conn if again is not None else None) or self.conn

    def _wait(self) -> BoxConnection | None:
        """A request's wait for the connection (made again if the last try failed)."""
        from .config import connect_timeout

        self._connect_soon()
        deadline = time.monotonic() + connect_timeout(self.obj.box())
        with self._lock:
            while self._connecting and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
        return self._current()

    def _connect(self) -> None:
        from . import keeper_channels

        conn: BoxConnection | None = None
        try:
            conn = self.obj.connect()
        except Exception:  # noqa: BLE001 - the waiting requests go direct; a later one retries
            conn = None
        with self._lock:
            self._connecting = False
            if conn is not None and self._stopped:
                conn.close()
                conn = None
            self.conn = conn
            self._made = conn is not None
            self._lock.notify_all()
        if conn is not None:
            keeper_channels.prime(conn)  # a channel ahead: a request is one round trip

    def stop(self) -> None:
        from . import run_keeper

        with self._lock:
            self._stopped = True
            serving, self._serving = self._serving, None
            conn, self.conn = self.conn, None
            self._lock.notify_all()
        if self._timer is not None:
            self._timer.cancel()
        run_keeper.stop(serving)
        if conn is not None:
            conn.close()
