"""client/chan_buffer.py's batched wakeups (WakeBatch): a channel buffer fed while its transport's
receive path defers wakeups holds the data at once and wakes its reader (the event behind the
channel's fileno, and waiters on read) only at the flush, and never leaves the event set with
nothing to read (a select loop on it would spin). paramiko's own BufferedPipe and its OS pipe
event (paramiko.pipe, what Channel.fileno returns) are the other side."""
from __future__ import annotations

import select
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from paramiko.pipe import make_pipe

from client.chan_buffer import FLUSH_AT, WakeBatch, _pipe_class


def _readable(event: object) -> bool:
    return bool(select.select([event.fileno()], [], [], 0)[0])  # type: ignore[attr-defined]


def _deferring_pipe() -> tuple[WakeBatch, object, object]:
    batch = WakeBatch()
    batch.deferring = True
    pipe = _pipe_class()(batch)
    event = make_pipe()
    pipe.set_event(event)
    return batch, pipe, event


def test_a_deferred_feed_wakes_the_fileno_only_at_the_flush() -> None:
    batch, pipe, event = _deferring_pipe()
    pipe.feed(b"abc")  # type: ignore[attr-defined]
    pipe.feed(b"def")  # type: ignore[attr-defined]
    assert pipe.read_ready()  # type: ignore[attr-defined]  # held at once...
    assert not _readable(event)  # ...its reader not woken yet
    batch.flush()
    assert _readable(event)
    assert pipe.read(100) == b"abcdef"  # type: ignore[attr-defined]
    assert not _readable(event)
    assert (batch.deferred, batch.flushes, batch.pending) == (2, 1, [])


def test_data_taken_before_the_flush_leaves_the_event_clear() -> None:
    batch, pipe, event = _deferring_pipe()
    pipe.feed(b"x" * 10)  # type: ignore[attr-defined]
    assert pipe.read(100) == b"x" * 10  # type: ignore[attr-defined]  # a reader polling found it
    batch.flush()
    assert not _readable(event)  # set with nothing to read, a select loop would spin


def test_a_flush_comes_by_itself_once_flush_at_bytes_wait() -> None:
    batch, pipe, event = _deferring_pipe()
    piece = b"y" * (FLUSH_AT // 4)
    for _ in range(3):
        pipe.feed(piece)  # type: ignore[attr-defined]
    assert not _readable(event)
    pipe.feed(piece)  # type: ignore[attr-defined]
    assert _readable(event) and batch.flushes == 1 and batch.pending_bytes == 0


def test_a_blocked_reader_is_woken_by_the_flush() -> None:
    batch, pipe, _ = _deferring_pipe()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read(100, 60)))  # type: ignore[attr-defined]
    reader.start()
    pipe.feed(b"late")  # type: ignore[attr-defined]
    batch.flush()
    reader.join(60)
    assert got == [b"late"]


def test_without_deferring_each_feed_wakes_as_paramikos_pipe_does() -> None:
    batch, pipe, event = _deferring_pipe()
    batch.deferring = False
    pipe.feed(b"now")  # type: ignore[attr-defined]
    assert _readable(event) and batch.deferred == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(min_size=1, max_size=300), st.just("flush"),
                          st.just("read")), max_size=40))
def test_the_event_is_set_after_a_flush_exactly_while_data_is_held(steps: list) -> None:
    batch, pipe, event = _deferring_pipe()
    sent, taken = bytearray(), bytearray()
    for step in steps:
        if isinstance(step, bytes):
            pipe.feed(step)  # type: ignore[attr-defined]
            sent += step
        elif step == "flush":
            batch.flush()
            assert _readable(event) == bool(len(pipe))  # type: ignore[arg-type]
        elif len(pipe):  # type: ignore[arg-type]
            taken += pipe.read(1 << 20)  # type: ignore[attr-defined]
    batch.flush()
    taken += pipe.read(1 << 20) if len(pipe) else b""  # type: ignore[arg-type, attr-defined]
    assert bytes(taken) == bytes(sent)
    assert not _readable(event)
