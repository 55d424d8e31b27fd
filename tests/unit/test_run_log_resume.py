"""Going on from what a reader already has (`attach "ID OUT ERR"`, a reconnect): for any
interleaving of the two streams, and for any two counts, each stream goes on from its own
count, with no byte twice and none left out; counts that no moment of the run had both at
once included (a client's own bookkeeping, or OpenSSH's `attach` line typed by hand)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from box_agent.output_log import OutputLog
from box_agent.runlog import MIN_LIMIT, STDERR, STDOUT, LogWriter

_WRITES = st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]),
                             st.binary(min_size=1, max_size=300)), min_size=0, max_size=40)


class _Nobody:
    async def output(self, stream: int, data: bytes) -> None:  # never fed here
        raise AssertionError("the backlog alone is read in this test")

    async def event(self, event: object) -> None:
        raise AssertionError("no events here")


def _rest(writes: list[tuple[int, bytes]], have_out: int, have_err: int,
          limit: int) -> tuple[dict[int, bytes], int]:
    with tempfile.TemporaryDirectory() as tmp:
        writer = LogWriter(Path(tmp), limit=limit)
        for stream, data in writes:
            writer.append(stream, data)
        writer.close()
        log = OutputLog(Path(tmp), end=writer.end)
        backlog, lacking = log.attach_at(_Nobody(), have_out, have_err)
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
