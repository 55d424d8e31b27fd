"""The agent's reads of a run log (box_agent/runlog.py) give back exactly what was appended.

The reader takes small records out of one read ahead and a long one on its own: records of
every size around that read's length, across segment rotations and the oldest segments being
dropped, read whole, in feed-sized steps, and from a reattach's per-stream byte counts, any
two counts included (each stream goes on from its own).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from box_agent.output_log import OutputLog
from box_agent.runlog import (
    _READ_AHEAD,
    HEADER,
    MIN_LIMIT,
    STDERR,
    STDOUT,
    LogReader,
    LogWriter,
)


class _NoViewer:
    """attach_at's viewer: only the backlog is read here, nothing is fed live."""

    async def output(self, stream: int, data: bytes) -> None:
        raise AssertionError("no live output in this test")

    async def event(self, event: object) -> None:
        raise AssertionError("no events in this test")


SIZES = st.sampled_from([0, 1, 7, HEADER.size, _READ_AHEAD - HEADER.size - 1,
                         _READ_AHEAD - HEADER.size, _READ_AHEAD, _READ_AHEAD + 1,
                         3 * _READ_AHEAD + 5, 300_001])
RECORDS = st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]), SIZES), min_size=1,
                   max_size=30)


def _write(directory: Path, records: list[tuple[int, int]], limit: int) -> list[tuple[int, bytes]]:
    writer = LogWriter(directory, limit)
    written = []
    for n, (stream, size) in enumerate(records):
        data = bytes((n + i) % 251 for i in range(size))
        writer.append(stream, data)
        written.append((stream, data))
    writer.close()
    return written


def _kept(directory: Path, written: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The records still on disk: those from the oldest segment's first record on."""
    first = LogReader(directory).first_offset()
    kept, offset = [], 0
    for stream, data in written:
        if offset >= first:
            kept.append((stream, data))
        offset += HEADER.size + len(data)
    return kept


@settings(max_examples=60, deadline=None)
@given(RECORDS, st.sampled_from([MIN_LIMIT, 64 * MIN_LIMIT]))
def test_whole_and_in_steps_the_reader_gives_back_what_was_written(
        records: list[tuple[int, int]], limit: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        written = _write(directory, records, limit)
        end = LogWriter(directory, limit).end
        expected = _kept(directory, written)
        reader = LogReader(directory)
        whole = [(c.stream, c.data) for c in reader.read(0, end, budget=1 << 62)]
        assert whole == expected
        # as the agent feeds viewers: about a budget at a time, from where it got to
        stepped, offset = [], 0
        while offset < end:
            chunks = list(reader.read(offset, end, budget=_READ_AHEAD))
            assert chunks, "a read stopped before the log's end"
            stepped += [(c.stream, c.data) for c in chunks]
            offset = chunks[-1].end
        assert stepped == whole


@settings(max_examples=60, deadline=None)
@given(RECORDS, st.floats(0, 1))
def test_a_reattach_gets_the_rest_of_each_stream_from_its_byte_counts(
        records: list[tuple[int, int]], cut: float) -> None:
    """A client that saw the log up to some byte (mid-record, as a lost link leaves it) gets
    every byte after that, of each stream, once."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        written = _write(directory, records, 64 * MIN_LIMIT)
        end = LogWriter(directory, 64 * MIN_LIMIT).end
        left = int(sum(len(d) for _, d in written) * cut)
        have = {STDOUT: 0, STDERR: 0}
        for stream, data in written:
            seen = min(left, len(data))
            have[stream] += seen
            left -= seen
        # As the agent serves `attach "ID OUT ERR"`: OutputLog.attach_at over this reader.
        backlog, _ = OutputLog(directory, end=end).attach_at(_NoViewer(), have[STDOUT],
                                                             have[STDERR])
        got = {STDOUT: b"", STDERR: b""}
        for stream, data in backlog:
            got[stream] += data
        for s in (STDOUT, STDERR):
            total = b"".join(d for t, d in written if t == s)
            assert got[s] == total[have[s]:]


# Counts that no moment of the run had both at once (a client's own bookkeeping, or OpenSSH's
# `attach "ID OUT ERR"` typed by hand): each stream goes on from its own count, no byte twice,
# none left out.

_WRITES = st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]),
                             st.binary(min_size=1, max_size=300)), min_size=0, max_size=40)


def _rest(writes: list[tuple[int, bytes]], have_out: int, have_err: int,
          limit: int) -> tuple[dict[int, bytes], int]:
    with tempfile.TemporaryDirectory() as tmp:
        writer = LogWriter(Path(tmp), limit=limit)
        for stream, data in writes:
            writer.append(stream, data)
        writer.close()
        log = OutputLog(Path(tmp), end=writer.end)
        backlog, lacking = log.attach_at(_NoViewer(), have_out, have_err)
        got = {STDOUT: b"", STDERR: b""}
        for stream, data in backlog:
            got[stream] += data
        return got, lacking


@settings(max_examples=200, deadline=None)
@given(writes=_WRITES, out_frac=st.floats(0, 1.2), err_frac=st.floats(0, 1.2))
def test_each_stream_goes_on_from_its_own_count(writes: list[tuple[int, bytes]],
                                                out_frac: float, err_frac: float) -> None:
    whole = {s: b"".join(d for k, d in writes if k == s) for s in (STDOUT, STDERR)}
    have_out = int(len(whole[STDOUT]) * out_frac)
    have_err = int(len(whole[STDERR]) * err_frac)
    got, lacking = _rest(writes, have_out, have_err, limit=1 << 30)
    assert got[STDOUT] == whole[STDOUT][have_out:]
    assert got[STDERR] == whole[STDERR][have_err:]
    assert lacking == 0


def test_all_of_stderr_and_none_of_stdout_gives_stdout_only() -> None:
    """The case the old reader got wrong: it started both streams at the first record the
    reader lacked, so stderr, which the reader had whole, came again from 0."""
    writes = [(STDOUT, b"o1\n"), (STDERR, b"e1\n"), (STDOUT, b"o2\n"), (STDERR, b"e2\n")]
    got, _ = _rest(writes, 0, 6, limit=1 << 30)
    assert got == {STDOUT: b"o1\no2\n", STDERR: b""}


def test_a_small_limit_counts_what_is_gone_and_sends_the_rest() -> None:
    big = b"x" * 4096
    writes = [(STDOUT, big)] * (4 * MIN_LIMIT // len(big)) + [(STDERR, b"tail\n")]
    got, lacking = _rest(writes, 0, 0, limit=MIN_LIMIT)
    assert lacking > 0 and got[STDERR] == b"tail\n"
    assert len(got[STDOUT]) + lacking == len(big) * (len(writes) - 1)
