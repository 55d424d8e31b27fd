"""client/chan_buffer.py against paramiko's own BufferedPipe: the same feeds and reads give the
same bytes, whatever the sizes (hypothesis draws them)."""
from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from paramiko.buffered_pipe import BufferedPipe

from client.chan_buffer import PacketQueue, _pipe_class

_steps = st.lists(st.one_of(
    st.tuples(st.just("feed"), st.binary(max_size=600)),
    st.tuples(st.just("read"), st.integers(min_value=1, max_value=1500)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_reads_match_paramikos_pipe(steps: list[tuple[str, object]]) -> None:
    ours, theirs = _pipe_class()(), BufferedPipe()
    for _op, arg in steps:
        if isinstance(arg, bytes):
            ours.feed(arg)
            theirs.feed(arg)  # type: ignore[arg-type]  # the stubs say str; bytes is what it takes
        elif len(theirs):  # an empty pipe's read would wait
            assert isinstance(arg, int)
            assert ours.read(arg) == theirs.read(arg)
        assert len(ours) == len(theirs)
        assert ours.read_ready() == theirs.read_ready()
    assert ours.empty() == theirs.empty()
    assert len(ours) == 0


def test_a_whole_read_hands_over_the_packet_itself() -> None:
    pipe = _pipe_class()()
    packet = b"x" * 262144
    pipe.feed(packet)
    assert pipe.read(1 << 26) is packet  # no copy for the follower's read-everything


def test_the_event_and_close_are_paramikos() -> None:
    pipe = _pipe_class()()
    event = threading.Event()
    pipe.set_event(event)
    assert not event.is_set()
    pipe.feed(b"ab")
    assert event.is_set()
    assert pipe.read(5) == b"ab"
    assert not event.is_set()
    pipe.close()
    assert event.is_set() and pipe.read(5) == b""


def test_only_the_front_can_be_dropped() -> None:
    queue = PacketQueue()
    queue.frombytes(b"abc")
    try:
        del queue[1:2]  # type: ignore[arg-type]
    except TypeError:
        pass
    else:
        raise AssertionError("dropping the middle must be refused")
    assert queue.head() == b"abc"
