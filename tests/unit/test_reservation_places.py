"""The queue places a restarted box keeps (box_agent/queue_places.py): only for the identity
that had them, only for their grace, and whatever a damaged state file holds."""
from __future__ import annotations

import pytest

from box_agent.queue_places import KeptPlaces, record


def test_a_place_is_taken_back_only_by_its_own_identity() -> None:
    kept = KeptPlaces([record("t1", "key:A", 10.0), record("t2", "key:B", 20.0)])
    assert kept.ahead_of(15.0) == 1 and kept.ahead_of(30.0) == 2
    assert kept.take("t1", "key:B") is None  # someone else's token is worth nothing
    assert kept.take("nope", "key:A") is None and kept.take(None, "key:A") is None
    assert kept.take("t1", "key:A") == 10.0
    assert kept.take("t1", "key:A") is None  # once
    assert kept.ahead_of(30.0) == 1
    assert [r["token"] for r in kept.records()] == ["t2"]


def test_places_are_given_up_after_their_grace() -> None:
    kept = KeptPlaces([record("t1", "key:A", 10.0)], grace=0.0)
    assert kept.ahead_of(99.0) == 0 and kept.next_expiry() is None
    assert kept.take("t1", "key:A") is None and kept.records() == []
    waiting = KeptPlaces([record("t1", "key:A", 10.0)], grace=60.0)
    left = waiting.next_expiry()
    assert left is not None and 0 < left <= 60.0


@pytest.mark.parametrize("saved", [None, "x", 3, [None, 1, "a", {}],
                                   [{"token": 1, "identity": "key:A", "since": 1.0}],
                                   [{"token": "t", "identity": "key:A", "since": True}],
                                   [{"token": "t", "identity": None, "since": 1.0}]])
def test_a_damaged_record_keeps_nothing(saved: object) -> None:
    assert KeptPlaces(saved).records() == []

