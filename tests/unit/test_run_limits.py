"""The run options' parsers (`lager-box serve --run-log-limit/--keep-finished/
--keep-finished-runs`) and the output log under a small limit: sizes and durations as a user
writes them, every other text one line of error, and a log that keeps its newest bytes."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from box_agent.run_limits import (
    MAX_KEEP_FINISHED,
    MAX_KEEP_FINISHED_RUNS,
    describe_size,
    parse_count,
    parse_duration,
    parse_size,
)
from box_agent.runlog import (
    MAX_LIMIT,
    MIN_LIMIT,
    SEGMENT_BYTES,
    STDERR,
    STDOUT,
    LogReader,
    LogWriter,
    segment_bytes,
    segments,
)

MiB = 1 << 20


@pytest.mark.parametrize(("text", "size"), [
    ("64M", 64 * MiB), ("64m", 64 * MiB), ("1G", 1 << 30), ("1.5G", 3 << 29), ("2MiB", 2 * MiB),
    ("1048576", MiB), ("4096K", 4 * MiB), (" 8M ", 8 * MiB), ("1T", 1 << 40), ("3 MB", 3 * MiB),
])
def test_sizes_as_a_user_writes_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "why"), [
    ("0", "too small"), ("512K", "too small"), ("1048575", "too small"), ("-1", "not a size"),
    ("abc", "not a size"), ("", "not a size"), ("64X", "not a size"), ("1e9", "not a size"),
    ("2T", "too big"), ("99999999999T", "too big"), ("9" * 400, "too big"),
    ("64M64M", "not a size"), ("0x100000", "not a size"), ("\u0664M", "not a size"),
])
def test_bad_sizes_say_why_in_one_line(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_size(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("text", "seconds"), [
    ("24h", 86400), ("90m", 5400), ("3600s", 3600), ("1d", 86400), ("1h30m", 5400), ("2w", 14 * 86400),
    ("2", 2), ("2s", 2), ("1.5h", 5400), ("366d", MAX_KEEP_FINISHED), ("10M", 600),
])
def test_durations_as_a_user_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "why"), [
    ("0", "too short"), ("0s", "too short"), ("0.5s", "too short"), ("-1", "not a duration"),
    ("5x", "not a duration"), ("h", "not a duration"), ("", "not a duration"),
    ("367d", "too long"), ("9" * 400, "too long"), ("1h 30m", "not a duration"),
])
def test_bad_durations_say_why_in_one_line(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_duration(text)
    assert "\n" not in str(caught.value)


def test_run_counts() -> None:
    assert parse_count("2") == 2 and parse_count(" 100 ") == 100
    assert parse_count(str(MAX_KEEP_FINISHED_RUNS)) == MAX_KEEP_FINISHED_RUNS
    for bad in ("0", "-1", "1.5", "many", "", "\u00b2", "\u0662", str(MAX_KEEP_FINISHED_RUNS + 1)):
        with pytest.raises(ValueError):
            parse_count(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_a_value_in_range_or_one_line_of_error(text: str) -> None:
    """Hostile input, generated: a parser returns a value within its limits or raises
    ValueError with one line, never anything else."""
    for parse, low, high in ((parse_size, MIN_LIMIT, MAX_LIMIT),
                             (parse_duration, 1, MAX_KEEP_FINISHED),
                             (parse_count, 1, MAX_KEEP_FINISHED_RUNS)):
        try:
            value = parse(text)  # type: ignore[operator]
        except ValueError as exc:
            assert "\n" not in str(exc) and str(exc)
        else:
            assert low <= value <= high


@given(st.integers(MIN_LIMIT, MAX_LIMIT))
def test_a_size_written_back_parses_to_itself(size: int) -> None:
    assert parse_size(describe_size(size)) == size


def test_segments_scale_with_the_limit() -> None:
    assert segment_bytes(64 * MiB) == SEGMENT_BYTES
    assert segment_bytes(1 << 40) == SEGMENT_BYTES
    assert segment_bytes(MiB) == MiB // 8


@pytest.mark.parametrize("limit", [MiB, 3 * MiB + 5])
def test_a_small_limit_keeps_the_newest_bytes_and_counts_the_rest(tmp_path: Path,
                                                                   limit: int) -> None:
    """What a monitor does with a run's output: far more than the limit goes in; the newest
    records stay (at least `limit` bytes of log, at most a segment and a record more), and
    the reader counts exactly what went."""
    writer = LogWriter(tmp_path, limit)
    sent = {STDOUT: b"", STDERR: b""}
    for i in range(3000):
        stream = STDERR if i % 7 == 0 else STDOUT
        data = f"{i:06d} ".encode() + b"y" * (i % 3000)
        sent[stream] += data
        writer.append(stream, data)
    writer.close()
    on_disk = sum(s.path.stat().st_size for s in segments(tmp_path))
    assert limit <= on_disk <= limit + segment_bytes(limit) + 3000 + 8
    reader = LogReader(tmp_path)
    kept = {STDOUT: b"", STDERR: b""}
    for chunk in reader.read(reader.first_offset(), writer.end, budget=1 << 62):
        kept[chunk.stream] += chunk.data
    assert sent[STDOUT].endswith(kept[STDOUT]) and sent[STDERR].endswith(kept[STDERR])
    total = len(sent[STDOUT]) + len(sent[STDERR])
    assert reader.dropped() == total - len(kept[STDOUT]) - len(kept[STDERR]) > 0


def test_a_reader_behind_what_was_dropped_goes_on_from_the_oldest_kept(tmp_path: Path) -> None:
    """A viewer far behind a small limit (it should not be, its window is smaller; but a
    monitor with no agent logs freely): the read skips to the oldest record still there
    instead of finding nothing and stalling."""
    writer = LogWriter(tmp_path, MiB)
    for i in range(2000):
        writer.append(STDOUT, f"{i:06d}".encode() * 300)
    writer.close()
    reader = LogReader(tmp_path)
    assert reader.first_offset() > 0
    first = next(reader.read(0, writer.end))
    assert first.end > reader.first_offset()
    assert first.data.startswith(next(reader.read(reader.first_offset(), writer.end)).data)
