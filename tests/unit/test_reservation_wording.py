"""How a reservation reads (#19): the box's refusal of a run arrives in a framed run channel's
stderr and is said `Error: REASON` however its bytes are cut (client/run_stream.py); a box held
several ways names its first holder and how many more (box_agent/reservations.held_by); the
status header says a paused run is paused (client/commands/boxes.py)."""
from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from box_agent.reservations import held_by
from client.commands.boxes import _holding
from client.run_stream import RunStream
from lager.protocol.events import EVENT, STDERR, Hello, event_record
from lager.protocol.reservation import Hold

REFUSAL = (b"box reserved: held by lager:a@lab (SHA256:abc) for run 7f3a\xe2\x80\xa6e9 "
           b"since 2026-12-05 22:00:00 UTC; new runs from other keys are refused\n"
           b"second line\n")


def framed() -> RunStream:
    stream = RunStream(asked_events=True)
    hello = Hello(v=2, run_id="7f3a00e9")
    assert stream.stdout_data(event_record(hello)) == [(EVENT, hello)]
    assert stream.framed
    return stream


@given(st.lists(st.integers(min_value=0, max_value=len(REFUSAL)), max_size=8))
def test_a_refusal_after_the_hello_says_error_once_a_line_however_cut(cuts: list[int]) -> None:
    stream = framed()
    shown = b""
    bounds = sorted({0, len(REFUSAL), *cuts})
    for start, end in itertools.pairwise(bounds):
        for kind, piece in stream.stderr_data(REFUSAL[start:end]):
            assert kind == STDERR and isinstance(piece, bytes)
            shown += piece
    assert shown == b"".join(b"Error: " + line for line in REFUSAL.splitlines(keepends=True))


def test_before_the_hello_or_plain_the_stderr_is_as_it_came() -> None:
    """Before the hello (an older box, or a refusal of the header) and on a plain channel
    (the script's own stderr), nothing is added."""
    assert RunStream(asked_events=True).stderr_data(b"x\n") == [(STDERR, b"x\n")]
    assert RunStream(asked_events=False).stderr_data(b"x\n") == [(STDERR, b"x\n")]


def hold(kind: str, **extra: object) -> Hold:
    return Hold("key:SHA256:abc", "lager:a@lab", "SHA256:abc", "ci job", 0.0, kind,
                **extra)  # type: ignore[arg-type]


def test_held_by_names_the_first_holder_and_counts_the_rest() -> None:
    lock = hold("lock", reason="scope on the DUT")
    run = hold("run", run_id="7f3a00e9", script="long.py", paused="A holds")
    one = held_by([lock])
    assert one.count("held by") == 1 and "more" not in one and "scope on the DUT" in one
    two = held_by([lock, run, hold("starting")])
    assert two.count("held by") == 1 and two.endswith("(+2 more)") and "long.py" not in two


def test_the_status_header_says_paused_for_a_paused_run() -> None:
    assert _holding(hold("run", run_id="7f3a00e9", script="long.py", paused="A holds")) \
        .startswith("paused run ")
    assert _holding(hold("run", run_id="7f3a00e9", script="long.py")).startswith("running run ")
    assert _holding(hold("lock")) == "locked"
    assert _holding(hold("starting")) == "starting a run"
