"""Run ids (lager/protocol.py): the banner's short form, and which queries name which run."""
from __future__ import annotations

import pytest

from lager import protocol

RUN = "7f3a9c01d2e4b5e9"
OTHER = "7f3b0000000000e9"


def test_the_banner_form() -> None:
    assert protocol.short_id(RUN) == "7f3a\u2026e9"


def test_fresh_ids_are_hex_and_paste_back() -> None:
    ids = {protocol.new_run_id() for _ in range(200)}
    assert len(ids) == 200
    for run_id in ids:
        assert len(run_id) == 16 and set(run_id) <= set("0123456789abcdef")
        assert protocol.id_matches(protocol.short_id(run_id), run_id)
        assert protocol.id_matches(run_id, run_id) and protocol.id_matches(run_id[:3], run_id)


@pytest.mark.parametrize(("query", "matches"), [
    (RUN, True),
    ("7f3a", True),
    ("7", True),
    ("7F3A9C", True),  # case is not part of an id
    ("  7f3a\n", True),  # whitespace around a pasted id
    ("7f3a\u2026e9", True),  # the banner's form
    ("7f3a...e9", True),  # ...typed where the banner had an ellipsis
    ("7f3a\u2026E9", True),
    ("7f\u20269", True),  # shorter head and tail still name it
    ("7f3a\u2026e8", False),
    ("7f3b\u2026e9", False),
    ("7f3a\u2026", False),  # no tail
    ("\u2026e9", False),  # no head
    ("...", False),
    ("7f3a\u2026zz", False),  # not hex
    ("7f3z", False),
    ("7f3b", False),
    (RUN + "0", False),  # longer than the id
    ("", False),
    ("   ", False),
    ("f3a9", False),  # an inside piece is not a prefix
    ("7f3a e9", False),
])
def test_which_queries_name_the_run(query: str, matches: bool) -> None:
    assert protocol.id_matches(query, RUN) is matches


def test_a_short_form_names_only_runs_with_that_head_and_tail() -> None:
    assert protocol.id_matches("7f3a\u2026e9", RUN)
    assert not protocol.id_matches("7f3a\u2026e9", OTHER)
    assert protocol.id_matches("7f3\u2026e9", OTHER)  # ambiguity is the supervisor's to refuse
