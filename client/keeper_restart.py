"""A standalone keeper (client/mux.py) across a restart of the box's agent.

The agent restarts (SIGTERM then start, `lager-box serve --replace`, or a crash and a watchdog)
and the keeper's connection dies with the old agent. Two things keep the next request fast and
right:

- The keeper logs in again once the new agent listens, and goes on serving on its socket, so
  the request after the restart needs no handshake. Meanwhile a request finds a dead
  connection, fails before anything is sent (`delivered: false`) and goes direct. The box does
  not come back within RECONNECT_FOR: the keeper exits and the next direct request leaves a new
  one.
- The keeper never exits with a request in flight (its answer would be lost, and the client
  could not tell whether the request was sent): it lets those finish first, for a bounded time.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from lager.errors import ConnectionFailed, LagerError

if TYPE_CHECKING:
    from .config import Box, Config
    from .ssh import BoxConnection

# How long a keeper tries to log in again after its connection died: an agent's restart takes
# a second or two (and a --replace hand-over none); a box gone for longer gets a new keeper
# from the next direct request.
RECONNECT_FOR = 10.0
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 2.0
# As client/run_keeper.py: the requests in flight are short; the engineer waits for them.
FINISH_IN_FLIGHT = 5.0


def reconnect(config: Config, box: Box, give_up_after: float = RECONNECT_FOR
              ) -> BoxConnection | None:
    """A new authenticated connection to the box, or None once give_up_after has passed (or
    the box refuses us for good: a changed host key, a revoked key)."""
    from .ssh import BoxConnection

    deadline = time.monotonic() + give_up_after
    backoff = FIRST_BACKOFF
    while True:
        try:
            return BoxConnection(config, box)
        except ConnectionFailed:
            pass  # not listening yet: the new agent is starting
        except LagerError:
            return None  # refused (host key, auth): no keeper is better than a retry loop
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(backoff, left))  # a backoff between attempts, not a wait on a condition
        backoff = min(backoff * 2, MAX_BACKOFF)

class Relogin:
    """reconnect() on a thread of its own, so the keeper's socket answers meanwhile."""

    def __init__(self, config: Config, box: Box) -> None:
        self._done = threading.Event()
        self._conn: BoxConnection | None = None
        threading.Thread(target=self._run, args=(config, box), daemon=True,
                         name="lager-keeper-relogin").start()

    def _run(self, config: Config, box: Box) -> None:
        try:
            self._conn = reconnect(config, box)
        finally:
            self._done.set()

    def trying(self) -> bool:
        return not self._done.is_set()

    def result(self) -> BoxConnection | None:
        return self._conn if self._done.is_set() else None
