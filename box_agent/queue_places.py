"""Places in the box's queue, kept across an agent restart.

The queue lives in the agent; its waiters' places are also written to the state dir. A new
agent keeps each place for GRACE seconds: a waiter that comes back (its client queues again
after the lost connection, presenting the place's token) takes its old place, and nobody who
came after it is granted the box before it, until it is back or its grace is over. The token
is only good with the identity that got it, so a token seen by someone else is worth nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

GRACE = 30.0  # long enough for every waiter's reconnect backoff after a restart


@dataclass(frozen=True)
class KeptPlace:
    token: str
    identity: str
    since: float  # when its waiter first came: its rank in a first-come queue
    until: float  # time.monotonic() when the place is given up


def record(token: str, identity: str, since: float) -> dict[str, Any]:
    """How a waiter's place is written to the state dir."""
    return {"token": token, "identity": identity, "since": since}


class KeptPlaces:
    def __init__(self, saved: Any, grace: float = GRACE) -> None:
        until = time.monotonic() + grace
        self.places: dict[str, KeptPlace] = {}
        for entry in saved if isinstance(saved, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("token"), str) and \
                    isinstance(entry.get("identity"), str) and \
                    isinstance(entry.get("since"), (int, float)) and \
                    not isinstance(entry.get("since"), bool):
                self.places[entry["token"]] = KeptPlace(entry["token"], entry["identity"],
                                                        float(entry["since"]), until)

    def _live(self) -> list[KeptPlace]:
        now = time.monotonic()
        for token in [t for t, p in self.places.items() if p.until <= now]:
            del self.places[token]
        return list(self.places.values())

    def take(self, token: str | None, identity: str) -> float | None:
        """The `since` of the place this waiter had, if it is its own and still kept."""
        place = self.places.get(token or "")
        if place is None or place.identity != identity or place.until <= time.monotonic():
            return None
        del self.places[place.token]
        return place.since

    def ahead_of(self, since: float) -> int:
        """Kept places of waiters that came before `since` and are not back yet."""
        return sum(1 for p in self._live() if p.since < since)

    def next_expiry(self) -> float | None:
        """Seconds until the next kept place is given up (a waiter behind it may be next)."""
        live = self._live()
        return max(0.0, min(p.until for p in live) - time.monotonic()) if live else None

    def records(self) -> list[dict[str, Any]]:
        return [record(p.token, p.identity, p.since) for p in self._live()]
