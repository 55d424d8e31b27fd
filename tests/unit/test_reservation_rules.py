"""The box's reading of an instrument request for reservations (box_agent/bench_commands.py):
which requests change the bench, for every verb the kinds declare."""
from __future__ import annotations

from typing import Any

from box_agent.bench_commands import changes
from lager.bench import kinds
from lager.protocol.channel import InstrumentRequest


def ask_for(**fields: Any) -> InstrumentRequest:
    return InstrumentRequest.from_dict(fields)


def test_which_nets_requests_change_the_bench() -> None:
    """The box's reading of a request, for every verb the kinds declare: a read form (no
    value, or a verb that only answers) never counts as a change."""
    assert not changes(ask_for(command="nets"))
    for kind in kinds.KINDS:
        for verb in kind.verbs:
            ask = {"command": kind.name, "net": "x", "action": verb.name}
            if verb.run is None or verb.name == "models":
                assert not changes(ask_for(**ask)), (kind.name, verb.name)
            elif verb.takes is None:
                assert changes(ask_for(**ask)), (kind.name, verb.name)
            else:
                assert not changes(ask_for(**ask)), (kind.name, verb.name)  # the value left out: a read
                given = {"word": "x"} if verb.takes == "word" else {"value": 1.0}
                assert changes(ask_for(**ask, **given)), (kind.name, verb.name)
    assert changes(ask_for(command="supply", net="x", action="voltage",
                           options={"ovp": 5.0}))
    assert not changes(ask_for(command="supply", net="x"))  # the default verb: state
