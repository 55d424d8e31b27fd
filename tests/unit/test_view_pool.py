"""The run follower's data as views of decrypted packets (issue 13): client/plain_pool.py hands
out a packet buffer again only once no view of it is left, and the run stream's reader
(RunStream, FrameDecoder) gives the same output and events for views as for bytes, however
the packets are cut, as views of them (no copy)."""
from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from test_run_stream import BANNER, RESUMED, framed_run

from client.plain_pool import PlainPool
from client.run_stream import RunStream
from lager.protocol.events import EVENT, STDERR, STDOUT, FrameDecoder, record


def test_a_buffer_comes_back_only_once_its_views_are_gone() -> None:
    pool = PlainPool(size=64, keep=4)
    first = pool.take(64)
    first[:5] = b"first"
    held = memoryview(first)[:5].toreadonly()  # a packet's data, still queued for stdout
    second = pool.take(64)
    assert second is not first  # the oldest is still read: a new buffer, the data kept
    second[:5] = b"other"
    assert bytes(held) == b"first"
    held.release()
    assert pool.take(64) is first  # the oldest, free again
    assert (pool.made, pool.reused) == (2, 1)


def test_a_buffer_too_small_for_the_packet_is_replaced() -> None:
    pool = PlainPool(size=64, keep=4)
    small = pool.take(10)
    big = pool.take(1000)
    assert big is not small and len(big) >= 1000
    assert pool.take(1000) is big  # the small one was dropped, not handed out
    assert pool.take(10) is big


def test_past_keep_buffers_are_made_and_not_kept() -> None:
    pool = PlainPool(size=16, keep=2)
    views = [memoryview(pool.take(16)) for _ in range(5)]  # all still read
    assert pool.made == 5
    for view in views:
        view.release()
    kept = {id(pool.take(16)) for _ in range(6)}
    assert len(kept) == 2 and pool.made == 5


def _shown(data: bytes, cuts: list[int], as_views: bool) -> tuple[dict[int, bytes], list]:
    stream = RunStream(asked_events=True)
    shown = {STDOUT: b"", STDERR: b""}
    events: list[object] = []
    bounds = sorted({0, len(data), *[c % (len(data) + 1) for c in cuts]})
    for start, end in itertools.pairwise(bounds):
        packet = memoryview(data)[start:end] if as_views else data[start:end]
        for kind, piece in stream.stdout_data(packet):
            if kind == EVENT:
                events.append(piece)
            else:
                # (a view's first bytes are joined while the form is not known yet: bytes)
                assert isinstance(piece, (bytes, memoryview) if as_views else bytes)
                shown[kind] += bytes(piece)  # type: ignore[arg-type]
    assert stream.at_end() == []
    return shown, events


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_views_in_give_what_bytes_give(cuts: list[int]) -> None:
    data, expected_events = framed_run()
    shown, events = _shown(data, cuts, as_views=True)
    assert (shown, events) == _shown(data, cuts, as_views=False)
    assert shown[STDOUT] == b"before\nafter\n"
    assert shown[STDERR].endswith(RESUMED) and BANNER in shown[STDERR]
    assert events == expected_events


def test_payloads_are_views_of_the_packet_not_copies() -> None:
    packet = bytearray(record(STDOUT, b"x" * 1000) + b"x" * 1000 + record(STDOUT, b"yz") + b"y")
    pieces = FrameDecoder().feed(memoryview(packet))
    assert [bytes(p) for _, p in pieces] == [b"x" * 1000, b"y"]  # type: ignore[arg-type]
    packet[5] = ord("!")  # the packet's own bytes: the piece shows the change
    assert bytes(pieces[0][1])[:1] == b"!"  # type: ignore[arg-type]
