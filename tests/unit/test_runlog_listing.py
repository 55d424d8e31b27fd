"""The run log reader keeps its listing of the segments between reads (box_agent/runlog.py).

It lists the segments again only when a read reaches past what its listing holds: the monitor
rotated to a segment it has not seen, or dropped one it listed. A reader kept across a live
writer's appends, rotations and drops must read exactly what a reader listing afresh reads,
with views of one larger read (backlogs), with long records left on disk as FileBytes (the
agent's feed), or with bytes.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from box_agent.file_bytes import FileBytes, as_bytes
from box_agent.runlog import MIN_LIMIT, STDERR, STDOUT, LogReader, LogWriter, segments

WRITE = st.tuples(st.just("write"), st.sampled_from([STDOUT, STDERR]),
                  st.sampled_from([0, 1, 100, 65_536, 200_000, 1 << 20]))
READ = st.tuples(st.just("read"), st.sampled_from([1, 4096, 1 << 20, 4 << 20, 1 << 62]),
                 st.sampled_from(["bytes", "views", "files"]))


def _plain(chunks: list) -> list[tuple[int, bytes, int]]:
    return [(c.stream, bytes(as_bytes(c.data)), c.end) for c in chunks]


def _read(reader: LogReader, offset: int, end: int, budget: int, mode: str
          ) -> list[tuple[int, bytes, int]]:
    """As the agent's feed reads (files: long records left on disk, read before the
    descriptors close), or its backlogs (views), or anyone (bytes)."""
    files: list[int] = []
    try:
        chunks = list(reader.read(offset, end, budget, views=mode == "views",
                                  files=files if mode == "files" else None))
        if mode == "files":
            assert any(isinstance(c.data, FileBytes) for c in chunks) == \
                any(len(c.data) >= 64 * 1024 for c in chunks)
        return _plain(chunks)
    finally:
        for fd in files:
            os.close(fd)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(WRITE, READ), min_size=1, max_size=60))
def test_a_kept_listing_reads_what_a_fresh_listing_reads(ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        # The least limit: 128 KiB segments, the oldest dropped past 1 MiB, so the ops
        # rotate and drop under the kept reader.
        writer = LogWriter(directory, MIN_LIMIT)
        kept, offset, n = LogReader(directory), 0, 0
        for op in ops:
            if op[0] == "write":
                n += 1
                writer.append(op[1], bytes((n + i) % 251 for i in range(op[2])))
                continue
            _, budget, mode = op
            got = _read(kept, offset, writer.end, budget, mode)
            fresh = _plain(list(LogReader(directory).read(offset, writer.end, budget)))
            assert got == fresh
            if got:
                offset = got[-1][2]
        # Caught up from wherever it got to: nothing short of the end.
        rest = _read(kept, offset, writer.end, 1 << 62, "files")
        assert rest == _plain(list(LogReader(directory).read(offset, writer.end, 1 << 62)))
        if writer.end > offset:
            assert rest and rest[-1][2] == writer.end
        writer.close()


def _fill(writer: LogWriter, count: int, size: int) -> None:
    for i in range(count):
        writer.append(STDOUT if i % 3 else STDERR, bytes([i % 256]) * size)


def test_reads_inside_the_listing_do_not_list_again_and_a_rotation_does() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        writer = LogWriter(directory, 64 * MIN_LIMIT)  # 8 MiB segments, nothing dropped
        _fill(writer, 3, 100)
        reader = LogReader(directory)
        first = list(reader.read(0, writer.end))
        listing = reader._listing
        assert [c.end for c in first][-1] == writer.end and len(listing) == 1
        # Read again inside what it listed: the same listing, not a new one.
        again = list(reader.read(first[0].end, writer.end, views=True))
        assert reader._listing is listing
        assert _plain(again) == _plain(first[1:])
        # The writer rotates (a record past the segment size): the read reaches past the
        # newest segment it knows, lists again, and carries on into the new one.
        writer.append(STDOUT, b"r" * (8 << 20))
        _fill(writer, 2, 10)
        assert len(segments(directory)) == 2
        after = list(reader.read(first[-1].end, writer.end, budget=1 << 62, views=True))
        assert reader._listing is not listing and len(reader._listing) == 2
        assert after[-1].end == writer.end
        assert [bytes(c.data) for c in after] == [b"r" * (8 << 20), b"\x00" * 10, b"\x01" * 10]
        writer.close()


def test_a_listed_segment_dropped_since_is_skipped_to_the_oldest_kept() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        writer = LogWriter(directory, MIN_LIMIT)
        _fill(writer, 4, 1000)
        reader = LogReader(directory)
        assert len(list(reader.read(0, writer.end))) == 4  # it lists the first segment
        listed = reader._listing
        _fill(writer, 3000, 1000)  # ~3 MiB more: every segment it listed is gone
        assert not set(listed) & set(segments(directory))
        chunks = _plain(list(reader.read(0, writer.end, 1 << 62, views=True)))
        assert chunks == _plain(list(LogReader(directory).read(0, writer.end, 1 << 62)))
        assert chunks[0][2] > segments(directory)[0].start and chunks[-1][2] == writer.end
        writer.close()


def test_file_bytes_slice_and_read_as_bytes_would_and_short_is_an_error() -> None:
    with tempfile.TemporaryFile() as f:
        data = bytes(range(256)) * 40
        f.write(data)
        f.flush()
        whole = FileBytes(f.fileno(), 100, 5000)
        assert whole.read() == data[100:5100] and len(whole) == 5000
        for cut in (slice(0, 0), slice(7, 4093), slice(4990, None), slice(None, 9999)):
            part = whole[cut]
            assert part.read() == data[100:5100][cut] and len(part) == len(data[100:5100][cut])
            into = bytearray(len(part))
            part.read_into(memoryview(into))
            assert bytes(into) == data[100:5100][cut]
        past = FileBytes(f.fileno(), len(data) - 10, 20)  # a log shorter than promised
        for read in (past.read, lambda: past.read_into(memoryview(bytearray(20)))):
            try:
                read()
            except OSError as exc:
                assert "10 bytes short" in str(exc)
            else:
                raise AssertionError("a short read went unnoticed")
