"""A run log whose segment files are reused (box_agent/runlog.py, module doc: Reuse).

The C monitor gives a dropped segment's file to the next segment: renamed, written over from
its start, its old records left past the new ones until the segment closes. Here such files
are made by hand, records of any sizes old and new: the log's end taken from disk stops where
the new records do, a record whose header never came (the monitor killed between payload and
header) is not the segment's, readers read up to the end they are given and never past it,
and a reader tells a name that no longer leads to the file it opened.
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from box_agent.runlog import (
    STDOUT,
    LogReader,
    LogWriter,
    log_end,
    segment_mark,
    still_named,
)

MARKED = struct.Struct(">BBHI")


def records(mark: int, sizes: list[int], fill: int) -> bytes:
    """Records of these payload sizes with this mark in their headers, each payload its own
    bytes (fill, its index) so that a byte from another record shows."""
    out = b""
    for i, size in enumerate(sizes):
        out += MARKED.pack(STDOUT, mark >> 16, mark & 0xFFFF, size)
        out += bytes([fill, i % 256]) * (size // 2) + bytes([fill])[: size % 2]
    return out


def name(start: int, out: int) -> str:
    return f"log.{start:x}.{out:x}.0"


@given(st.integers(0, 1 << 48))
def test_a_mark_is_24_bits_never_0(start: int) -> None:
    assert 0 < segment_mark(start) < 1 << 24


def test_marks_of_a_run_of_segments_differ() -> None:
    """Not a guarantee (24 bits), but segments a limit apart in a real run do not collide."""
    starts = range(0, 1 << 34, (8 << 20) + 8 * 9)
    marks = [segment_mark(s) for s in starts]
    assert len(set(marks)) == len(marks)


SIZES = st.lists(st.integers(0, 3000), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(old=SIZES, new=st.lists(st.integers(0, 3000), max_size=12), torn=st.booleans(),
       step=st.integers(1, 1 << 30))
def test_a_reused_files_end_and_reads_are_its_new_records(
        old: list[int], new: list[int], torn: bool, step: int) -> None:
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        old_start, new_start = 1000, 1000 + step
        kept = directory / name(old_start - 1000, 0)  # the segment before, closed and whole
        kept.write_bytes(records(segment_mark(0), [1000 - 8], 7))
        old_bytes = records(segment_mark(old_start), old, 1)
        path = directory / name(old_start, 992)
        path.write_bytes(old_bytes)
        # Reuse: the dropped segment's file, renamed, written over from its start.
        new_bytes = records(segment_mark(new_start), new, 2)
        reused = directory / name(new_start, 5000)
        os.rename(path, reused)
        with open(reused, "r+b") as f:
            f.write(new_bytes)
            if torn:  # a record's payload written, its header not (yet)
                f.write(old_bytes[len(new_bytes):len(new_bytes) + 8] or b"")
                f.write(b"\x02" * 100)
        end = new_start + len(new_bytes)
        assert log_end(directory) == end
        for views in (False, True):
            got = list(LogReader(directory).read(new_start, end, 1 << 40, views=views))
            assert b"".join(bytes(c.data) for c in got) == b"".join(
                bytes([2, i % 256]) * (n // 2) + b"\x02"[: n % 2] for i, n in enumerate(new))
            assert (got[-1].end if got else new_start) == end
        files: list[int] = []
        got = list(LogReader(directory).read(new_start, end, 1 << 40, files=files))
        try:
            assert sum(len(c.data) for c in got) == sum(new)
        finally:
            for fd in files:
                os.close(fd)


def test_a_log_written_before_marks_ends_as_before(tmp_path: Path) -> None:
    """The Python monitor's segments (LogWriter: new files, mark 0) and a torn tail."""
    writer = LogWriter(tmp_path, limit=1 << 20)
    for i in range(40):
        writer.append(STDOUT, bytes([i]) * (i * 997))
    writer.close()
    end = writer.end
    last = sorted(tmp_path.iterdir())[-1]
    with open(last, "ab") as f:
        f.write(MARKED.pack(STDOUT, 0, 0, 500) + b"x" * 499)  # torn: one byte short
    assert log_end(tmp_path) >= end and log_end(tmp_path) == end
    assert LogWriter(tmp_path, limit=1 << 20).end == end  # a restarted monitor carries on


def test_a_name_that_leads_elsewhere_is_not_the_file_opened(tmp_path: Path) -> None:
    """The reader's check once it has opened a segment: renamed (reused) or replaced."""
    path = tmp_path / "log.0.0.0"
    path.write_bytes(b"old")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert still_named(fd, path)
        os.rename(path, tmp_path / "log.100.0.0")
        assert not still_named(fd, path)
        path.write_bytes(b"new")  # another file under the name
        assert not still_named(fd, path)
    finally:
        os.close(fd)
