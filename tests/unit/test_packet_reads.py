"""The follower's read path takes a run's stream a packet at a time, without copying it
(issue 13): a read sized by packet_read_size hands over the packet's own bytes, and the frame
decoder passes a packet that is all payload on as it is. Whatever the packet sizes and record
boundaries, the bytes that come out are those that went in."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from client.chan_buffer import _pipe_class, packet_read_size
from lager.protocol.events import RECORD, STDERR, STDOUT, FrameDecoder


def test_a_packet_sized_read_hands_over_the_packet_itself() -> None:
    pipe = _pipe_class()()
    first, second = b"a" * 5000, b"b" * 300
    pipe.feed(first)
    pipe.feed(second)
    assert packet_read_size(pipe, 1 << 26) == len(first)
    assert pipe.read(packet_read_size(pipe, 1 << 26)) is first
    assert pipe.read(packet_read_size(pipe, 1 << 26)) is second
    assert packet_read_size(pipe, 77) == 77  # empty: the caller's size
    assert packet_read_size(object(), 77) == 77  # not a packet queue


def test_a_packet_of_payload_only_is_passed_on_uncopied() -> None:
    decoder = FrameDecoder()
    payload = bytes(range(256)) * 10
    assert decoder.feed(RECORD.pack(STDOUT, 2 * len(payload))) == []
    [(stream, got)] = decoder.feed(payload)
    assert stream == STDOUT and got is payload
    [(_, rest)] = decoder.feed(payload)
    assert rest is payload and not decoder.mid_record


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]), st.binary(max_size=3000)),
                max_size=12),
       st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=20))
def test_any_packet_cuts_give_back_the_records(records: list[tuple[int, bytes]],
                                               cuts: list[int]) -> None:
    wire = b"".join(RECORD.pack(s, len(d)) + d for s, d in records)
    pipe = _pipe_class()()
    pos, i = 0, 0
    while pos < len(wire):
        size = cuts[i % len(cuts)]
        pipe.feed(wire[pos:pos + size])
        pos, i = pos + size, i + 1
    decoder = FrameDecoder()
    got: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
    while len(pipe):
        for stream, piece in decoder.feed(pipe.read(packet_read_size(pipe, 1 << 26))):
            assert isinstance(piece, bytes)
            got[stream] += piece
    assert not decoder.mid_record
    for stream in (STDOUT, STDERR):
        assert got[stream] == b"".join(d for s, d in records if s == stream)
