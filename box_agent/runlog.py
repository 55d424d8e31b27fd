"""A run's output on disk: one framed log of stdout and stderr, in the order the script wrote.

The run's monitor appends; agents read, however many of them come and go. Keeping it on disk
(not in the agent's memory) is what lets a run outlive its client and its agent with its output
whole: a reattach after either is byte-exact.

Layout: segment files `log.<start offset>.<stdout bytes before>.<stderr bytes before>` (hex) in
the monitor dir. A record is an
8-byte header (stream: 1 = stdout, 2 = stderr; the segment's mark, 3 bytes, or 0; payload
length, 4 bytes big-endian) and the payload. Offsets count bytes of this framed log from the
run's start, so they never move; a record never spans two segments. When the segments pass the
run's limit, the oldest are deleted, and a reader asking for what they held is told how many
bytes were dropped.

Reuse. The C monitor gives a dropped segment's file (its blocks, its cached pages) to the next
segment, renamed, when no one has it open (monitor/log.c: a write lease proves that). So a
segment's file may hold, past its records, an older segment's bytes, and its size says nothing:
- a reader reads no further than the end it was told (the monitor's report, or log_end);
- log_end takes a segment's records only while they carry the mark of the segment's name
  (segment_mark; the old bytes carry their own segment's), and the monitor writes a record's
  header after its payload, so a record cut short has no header of its segment's;
- a reader checks, once it has opened a segment, that the name still leads to the file it
  opened: one that looked the name up before the rename and opened the file after holds the
  new segment's bytes, and takes it as dropped. Once the check passes, the file is never
  reused while the reader holds it open (the monitor's lease is refused), so what it reads
  through that descriptor, now or later (a FileBytes), is the segment's own.
The Python monitor (monitor/loop.py, LogWriter) makes a new file for each segment, with the
mark 0, as every monitor did before marks.

The limit is the run's own (`lager-box serve --run-log-limit`), given to its monitor when the
run starts: a segment is an eighth of it (at most SEGMENT_BYTES), so a small limit still keeps
its newest bytes in steps, not all or nothing. A segment goes only once the segments after it
hold the limit by themselves: the log keeps at least `limit` bytes (and at most about a
segment and a record more), and never drops what a viewer less than `limit` behind still needs.
"""
from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .file_bytes import FileBytes

STDOUT = 1
STDERR = 2
HEADER = struct.Struct(">B3xI")
SEGMENT_BYTES = 8 * 1024 * 1024  # the most a segment holds (past it, the next record rotates)
DEFAULT_LIMIT = 64 * 1024 * 1024  # bytes of log kept per run
# The least limit a run may have: one record (a monitor's read of a full pipe) is up to 1 MiB.
MIN_LIMIT = 1024 * 1024
MAX_LIMIT = 1 << 40  # 1 TiB: past this a limit is a typo, not a plan
_MIN_SEGMENT = 64 * 1024
_PREFIX = "log."
_READ_AHEAD = 64 * 1024  # the least the reader takes at once (a run of small records)
_READ_MOST = 8 * 1024 * 1024  # the most one read takes (a feed's budget is less)
_FILE_LEAST = 64 * 1024  # a record this long is left on disk for the packet builder (files)
_HEADER_AHEAD = 4096  # the read ahead after such a record: the next header, and a bit more


@dataclass(frozen=True, order=True)
class Segment:
    start: int  # log offset of its first record
    before: tuple[int, int]  # stdout and stderr bytes written before it
    path: Path


def segment_mark(start: int) -> int:
    """The mark in the headers of the segment starting at `start` (monitor/log.c: the same):
    24 bits of its Fibonacci hash, never 0. Segments that reuse a file start at other offsets,
    so their marks differ from its old records' (but for 1 in 2**24)."""
    return ((start * 0x9E3779B97F4A7C15) & (1 << 64) - 1) >> 40 or 1


def segment_bytes(limit: int) -> int:
    """How big a run's segments grow before the next one starts (monitor/log.c: the same)."""
    return max(_MIN_SEGMENT, min(SEGMENT_BYTES, limit // 8))


def droppable(found: list[Segment], end: int, limit: int) -> int:
    """How many of the oldest segments may go: those whose successors hold `limit` bytes."""
    count = 0
    while count + 1 < len(found) and end - found[count + 1].start >= limit:
        count += 1
    return count


def segments(directory: Path, known: dict[str, Segment] | None = None) -> list[Segment]:
    """The segments, oldest first. Names in `known` (an earlier listing's, by name) are not
    parsed again: a Path per segment per listing was most of a listing's cost."""
    found = []
    for entry in os.scandir(directory):
        segment = known.get(entry.name) if known else None
        if segment is None and entry.name.startswith(_PREFIX):
            try:
                start, out, err = (int(part, 16) for part in entry.name[len(_PREFIX):].split("."))
            except ValueError:
                continue
            segment = Segment(start, (out, err), Path(entry.path))
        if segment is not None:
            found.append(segment)
    return sorted(found, key=_order)


def _order(segment: Segment) -> tuple[int, tuple[int, int], str]:
    return segment.start, segment.before, segment.path.name


def log_end(directory: Path) -> int:
    """The offset one past the last complete record (a torn tail, from a crash, is ignored)."""
    found = segments(directory)
    if not found:
        return 0
    return found[-1].start + _complete_length(found[-1])


_MARKED = struct.Struct(">BBHI")  # a header's stream, its mark (high byte, low 16 bits), length


def _complete_length(segment: Segment) -> int:
    """How much of the segment's file is its own whole records. A reused file holds an older
    segment's bytes past them (and its size may be theirs): the records stop at the first
    header without the mark the first one has, which is this segment's or (written before
    marks, in a file never reused) 0."""
    pos = 0
    with open(segment.path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        marks = (0, segment_mark(segment.start))
        mark = None
        while pos + HEADER.size <= size:
            head = os.pread(f.fileno(), HEADER.size, pos)
            if len(head) < HEADER.size:
                break
            stream, high, low, length = _MARKED.unpack(head)
            this = high << 16 | low
            if stream not in (STDOUT, STDERR) or this not in marks or \
                    (mark is not None and this != mark):
                break
            if pos + HEADER.size + length > size:
                break
            mark = this
            pos += HEADER.size + length
    return pos


class LogWriter:
    """The monitor's end: append records, rotate segments, drop the oldest past the limit."""

    def __init__(self, directory: Path, limit: int = DEFAULT_LIMIT) -> None:
        self.directory = directory
        self.limit = limit
        self.segment_bytes = segment_bytes(limit)
        self.end = log_end(directory)
        self.totals = {STDOUT: 0, STDERR: 0}
        self._fd: int | None = None
        self._seg_start = self.end
        found = segments(directory)
        if found:  # a restarted monitor carries on: count what the last segment holds
            last = found[-1]
            self.totals = {STDOUT: last.before[0], STDERR: last.before[1]}
            for chunk in LogReader(directory).read(last.start, self.end, budget=1 << 62):
                self.totals[chunk.stream] += len(chunk.data)
            os.truncate(last.path, self.end - last.start)  # a torn tail from a crash goes

    def append(self, stream: int, data: bytes) -> int:
        if self._fd is None or self.end - self._seg_start >= self.segment_bytes:
            self._rotate()
        assert self._fd is not None
        header = HEADER.pack(stream, len(data))
        # One call, header and payload gathered: joining them first copied every byte of
        # output once more (a third of the monitor's CPU). A regular file takes all of it.
        os.writev(self._fd, [header, data])
        self.end += HEADER.size + len(data)
        self.totals[stream] += len(data)
        return self.end

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._seg_start = self.end
        name = f"{_PREFIX}{self.end:x}.{self.totals[STDOUT]:x}.{self.totals[STDERR]:x}"
        self._fd = os.open(self.directory / name,
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        kept = segments(self.directory)
        for segment in kept[:droppable(kept, self.end, self.limit)]:
            os.unlink(segment.path)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class Chunk:
    stream: int
    # bytes; a view of the read it came in (LogReader.read's views); or where it is on disk
    # (its files)
    data: bytes | memoryview | FileBytes
    end: int  # the log offset just past this chunk


def _records(fd: int, start: int, offset: int, stop: int, budget: int, views: bool,
             files: bool = False) -> Iterator[Chunk]:
    """The whole records of one segment (its first record at log offset `start`) from
    `offset` up to `stop`, about `budget` bytes; a torn or missing tail ends them.

    Small records come out of one read ahead; a record longer than that is read on its own,
    straight into the bytes returned (a buffered file read its first 4 KiB into its buffer and
    joined that to the rest: one more copy of every byte a run streams). With `views`, the
    read ahead takes what is there up to `stop` (at most twice the budget, so the last record
    the budget lets in is usually in it too) and the records are memoryviews of it: a run of
    the monitor's 1 MiB records costs one pread and no copy. With `files` (the agent's feed),
    a record longer than _FILE_LEAST is not read at all: its data is a FileBytes on `fd`, and
    after one the read ahead takes only a header's worth (the next record is likely long too).
    """
    ahead, ahead_at = memoryview(b""), offset  # the file's bytes [ahead_at, ahead_at + len)
    long_before = False
    while offset < stop and budget > 0:
        at = offset - ahead_at
        if at + HEADER.size > len(ahead):
            if files:
                want = min(_HEADER_AHEAD if long_before else _READ_AHEAD, stop - offset)
            elif views:
                want = max(_READ_AHEAD, min(stop - offset, 2 * budget, _READ_MOST))
            else:
                want = _READ_AHEAD
            ahead = memoryview(os.pread(fd, max(want, HEADER.size), offset - start))
            ahead_at, at = offset, 0
            if len(ahead) < HEADER.size:
                return
        stream, length = HEADER.unpack_from(ahead, at)
        if offset + HEADER.size + length > stop:
            # Past what the log says is written: not this segment's (a reused file's size and
            # bytes past its records are an older segment's), or a torn record.
            return
        body = at + HEADER.size
        where = offset - start + HEADER.size
        data: bytes | memoryview | FileBytes
        long_before = files and length >= _FILE_LEAST
        if long_before:
            data = FileBytes(fd, where, length)
        elif body + length <= len(ahead):
            data = ahead[body:body + length] if views or files \
                else bytes(ahead[body:body + length])
        else:
            data = os.pread(fd, length, where)
            if len(data) < length:
                return
        offset += HEADER.size + length
        budget -= length
        yield Chunk(stream, data, offset)


def _open_segment(path: Path) -> int:
    """The segment's file, open for reading; FileNotFoundError when it was dropped, which
    includes its file given to a newer segment (renamed) between our looking the name up and
    the open: then the name no longer leads to the file opened (module doc: Reuse).

    Not blocking: an open of a file the monitor holds a lease on (it is about to reuse it,
    being dropped) would wait until the monitor lets go; a stopped monitor would hold the
    agent up to lease-break-time (45 s). It is refused instead, and that segment is dropped.
    (O_NONBLOCK changes nothing else for a regular file's reads.)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except BlockingIOError:
        raise FileNotFoundError(f"{path} is being reused for a newer segment") from None
    try:
        named = still_named(fd, path)
    except BaseException:
        os.close(fd)
        raise
    if not named:
        os.close(fd)
        raise FileNotFoundError(f"{path} was reused for a newer segment")
    return fd


def still_named(fd: int, path: Path) -> bool:
    """Whether `path` leads to the file open on `fd` (not gone, not another file now)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_ino, named.st_dev) == (opened.st_ino, opened.st_dev)


class LogReader:
    """An agent's end: read records from an offset up to a known end.

    It keeps the segments as last listed and lists them again only when a read reaches past
    what that listing holds (the monitor rotated, or dropped what it listed): listing them
    (scandir, parse, sort) on every read was a fifth of the agent's interpreter time on a
    200 MB stream. Segments only ever start after the last one and go from the front, so an
    old listing is right about every offset it covers that is still on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._listing: list[Segment] = []
        self._starts: list[int] = []  # each listed segment's start, for bisect
        self._by_name: dict[str, Segment] = {}

    def _relist(self) -> list[Segment]:
        self._listing = segments(self.directory, self._by_name)
        self._by_name = {segment.path.name: segment for segment in self._listing}
        self._starts = [segment.start for segment in self._listing]
        return self._listing

    def _segment_at(self, offset: int, end: int) -> tuple[Segment, int, int] | None:
        """From the listing: the segment holding `offset` (or the oldest, when `offset` was
        dropped), the offset it starts reading at, and where its records stop."""
        if not self._listing or offset >= end:
            return None
        offset = max(offset, self._starts[0])
        i = bisect.bisect_right(self._starts, offset) - 1
        last = i + 1 == len(self._listing)
        return self._listing[i], offset, end if last else min(end, self._starts[i + 1])

    def first_offset(self) -> int:
        found = self._relist()
        return found[0].start if found else 0

    def read(self, offset: int, end: int, budget: int = 1024 * 1024, views: bool = False,
             files: list[int] | None = None) -> Iterator[Chunk]:
        """Records in [offset, end), about `budget` bytes at most. `offset` must be a record
        boundary. What the monitor dropped meanwhile (a reader behind a small limit) is
        skipped: the chunks go on from the oldest record still there. With `views`, a chunk's
        data may be a memoryview of a larger read (no copy), for a caller that only sends it
        on; without, it is bytes. Given `files`, a long record's data is a FileBytes, and the
        segments' descriptors are left open, added to `files` for the caller to close once
        it has read them."""
        relisted = False  # at most once per read with no progress: a gap ends the read
        while offset < end and budget > 0:
            place = self._segment_at(offset, end)
            if place is None:
                if relisted:
                    return
                self._relist()
                relisted = True
                continue
            segment, offset, stop = place
            try:
                fd = _open_segment(segment.path)
            except FileNotFoundError:  # dropped since we listed it (or its file reused)
                if relisted:
                    offset = stop  # and since the listing we just took: go on after it
                else:
                    self._relist()
                    relisted = True
                continue
            if files is not None:
                files.append(fd)
            try:
                for chunk in _records(fd, segment.start, offset, stop, budget, views,
                                      files is not None):
                    offset = chunk.end
                    budget -= len(chunk.data)
                    relisted = False
                    yield chunk
            finally:
                if files is None:
                    os.close(fd)
            if offset < stop and budget > 0:
                # The segment ended short of where its records should stop: a torn or lost
                # record (a full disk), or, in the newest segment we know, a rotation we have
                # not listed yet. List again once; what is still short is a gap.
                if relisted or segment is not self._listing[-1]:
                    return
                self._relist()
                relisted = True

    def locate(self, stdout_bytes: int, stderr_bytes: int, end: int
               ) -> tuple[int, dict[int, int]]:
        """Where a reader that already has this much of each stream goes on: the offset of
        the first record with a byte it lacks, and how much of each stream came before that
        offset (so the caller skips, per stream, what the reader has). Counts that no moment
        of the run had both at once (a client's own bookkeeping, or OpenSSH's `attach "ID OUT
        ERR"` typed by hand) still give each stream from its own count: no byte twice, none
        left out. Bytes the reader lacks that were already dropped are simply not there."""
        want = {STDOUT: stdout_bytes, STDERR: stderr_bytes}
        found = self._relist()
        # Start in the last segment that begins before everything the reader still needs.
        base = next((s for s in reversed(found) if s.before[0] <= stdout_bytes
                     and s.before[1] <= stderr_bytes), found[0] if found else None)
        if base is None:
            return 0, {STDOUT: 0, STDERR: 0}
        seen = {STDOUT: base.before[0], STDERR: base.before[1]}
        offset = base.start
        for chunk in self.read(offset, end, budget=1 << 62):
            if want[chunk.stream] - seen[chunk.stream] < len(chunk.data):
                return offset, seen
            seen[chunk.stream] += len(chunk.data)
            offset = chunk.end
        return offset, seen

    def first_before(self) -> tuple[int, int]:
        """Bytes of stdout and of stderr that came before the oldest record on disk."""
        found = self._relist()
        return found[0].before if found else (0, 0)

    def dropped(self) -> int:
        """Bytes of output (both streams) no longer on disk."""
        found = self._relist()
        return sum(found[0].before) if found else 0
