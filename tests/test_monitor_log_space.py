"""The C monitor's log segments and their blocks (box_agent/monitor/log.c).

On ext4 a segment's blocks are reserved ahead of its writes (fallocate(2), doubling as it
fills: ext4's delayed allocation otherwise reserves them a block at a time, about a tenth of
the monitor's CPU, bench/monitor_cpu.py), with KEEP_SIZE: a segment's size is what it holds,
so readers see no more than before. A segment that closes short of full gives the rest back.
Sizes and blocks as coreutils' `stat` reports them, not only as our own reader sees them."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from box_agent.runlog import (
    LogReader,
    Segment,
    log_end,
    segment_bytes,
    segment_mark,
    segments,
)

MIB = 1 << 20
# What the script writes: about 1 MiB a write, each chunk its own bytes, so that a byte out of
# place or twice shows. CHUNK is the script's expression for chunk i; chunk() is the same here.
CHUNK = "(b'%06d|' % i) * (MIB // 7)"


def chunk(i: int) -> bytes:
    return (b"%06d|" % i) * (MIB // 7)


def expected(count: int) -> bytes:
    return b"".join(chunk(i) for i in range(count))


def on_ext4(directory: Path) -> bool:
    """Whether the log's filesystem is ext4, where the monitor reserves blocks (coreutils'
    `stat -f` names it by its magic number, ext4's as ext2/ext3's)."""
    out = subprocess.run(["stat", "-f", "--format=%T", str(directory)], check=True,
                         capture_output=True, text=True).stdout
    return out.strip() in ("ext2/ext3", "ext4")


def on_disk(paths: list[Path]) -> dict[str, tuple[int, int]]:
    """Each file's size and the bytes its blocks take, as coreutils' stat tells them."""
    out = subprocess.run(["stat", "--format=%n %s %b %B", *map(str, paths)], check=True,
                         capture_output=True, text=True).stdout
    sizes = {}
    for line in out.splitlines():
        name, size, blocks, block_size = line.rsplit(" ", 3)
        sizes[Path(name).name] = (int(size), int(blocks) * int(block_size))
    return sizes


class Agent:
    """The monitor on its own, with this test as its agent (it grants the window)."""

    def __init__(self, binary: Path, tmp_path: Path, limit: int, script_text: str,
                 *args: str) -> None:
        script = tmp_path / "script.py"
        script.write_text(script_text)
        self.dir = tmp_path / "mon"
        self.dir.mkdir()
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(60)
        self.proc = subprocess.Popen(
            [str(binary), f"--log-limit={limit}", str(theirs.fileno()), str(self.dir),
             str(tmp_path), "-", "--", sys.executable, str(script), *args],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        theirs.close()

    def next_report(self) -> dict:
        """The monitor's next `output` or `exit`."""
        while True:
            msg = json.loads(self.sock.recv(1 << 17))
            if msg["op"] in ("output", "exit"):
                return msg

    def grant(self, until: int | None) -> None:
        self.sock.send(json.dumps({"op": "window", "until": until}).encode() + b"\n")

    def finish(self) -> int:
        self.sock.close()  # the monitor lingers until its agent goes
        return self.proc.wait(60)


@pytest.mark.parametrize("limit", [64 * MIB, MIB])
def test_a_segment_gives_back_the_blocks_it_did_not_fill_and_readers_see_only_its_records(
        binary: Path, tmp_path: Path, limit: int) -> None:
    count = 11  # 11 MiB: past the first segment, the last one left part full
    seg = segment_bytes(limit)
    agent = Agent(binary, tmp_path, limit, f"import sys\nMIB = {MIB}\nfor i in range({count}):\n"
                  f"    sys.stdout.buffer.write({CHUNK})\n")
    try:
        # The first window (at most half the limit) stops the monitor inside a segment: there
        # it reports an end and writes nothing more until we grant more.
        report = agent.next_report()
        while report["op"] == "output" and report["end"] < min(4 * MIB, limit // 2):
            agent.grant(report["end"] + 1)  # a little more each time, never a whole segment
            report = agent.next_report()
        assert report["op"] == "output"
        current = segments(agent.dir)[-1]
        size, _ = on_disk([current.path])[current.path.name]
        # What the segment holds is whole records up to the reported end; a reserve past it
        # is no part of its size, for our reader or any other.
        assert current.start + size == report["end"] == log_end(agent.dir)
        held = b"".join(c.data for c in LogReader(agent.dir).read(0, report["end"], 1 << 40))
        assert expected(count).startswith(held) and held
        agent.grant(None)
        while report["op"] != "exit":
            report = agent.next_report()
    finally:
        code = agent.finish()
    assert code == 0, agent.proc.stderr.read() if agent.proc.stderr else ""
    found = segments(agent.dir)
    sizes = on_disk([s.path for s in found])
    # Closed segments (full) used their reserve; the last gave back what it did not fill (with
    # the default limit, 11 MiB leave the second 8 MiB segment part full).
    if limit == 64 * MIB:
        assert sizes[found[-1].path.name][0] < seg
    for name, (size, taken) in sizes.items():
        assert taken <= -(-size // 4096) * 4096 + 4096, name
    logged = b"".join(c.data for c in LogReader(agent.dir).read(0, report["end"], 1 << 40))
    kept = expected(count)[sum(found[0].before):]  # a small limit dropped the oldest
    assert logged == kept and len(kept) >= min(limit, len(expected(count))) * 0.9


# Pieces of about 16 KiB, each written only when the test says so (a byte on a FIFO): one
# record each, so the first segment holds several and its reader reads it in steps.
PIECE = "(b'%06d|' % i) * (16384 // 7)"
STEPPED = f"""import os, sys
fifo = open(sys.argv[1], "rb", buffering=0)
for i in range(int(sys.argv[2])):
    fifo.read(1)
    os.write(1, {PIECE})
"""


def piece(i: int) -> bytes:
    return (b"%06d|" % i) * (16384 // 7)


def test_a_reader_holding_a_segment_the_limit_drops_reads_its_old_bytes(
        binary: Path, tmp_path: Path) -> None:
    """On ext4 the first segment's blocks are reserved after its first small record. A reader
    (the agent's LogReader, mid-read) holds the oldest segment open while the
    monitor writes on and drops it: what the reader gets from it is still that segment's
    bytes, all of them. A monitor that reused the dropped segment's file for new output
    (cheaper: its pages are cached) would hand this reader the new bytes as the old ones."""
    limit = MIB  # 128 KiB segments: the first is dropped once 1 MiB more follows it
    count = 200  # about 3 MiB
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    agent = Agent(binary, tmp_path, limit, STEPPED, str(fifo), str(count))
    go = os.open(fifo, os.O_WRONLY)
    try:
        end, i = 0, 0
        while len(segments(agent.dir)) < 2:  # one piece, one record, until a second segment
            os.write(go, b"x")
            end += 8 + len(piece(i))
            i += 1
            report = agent.next_report()
            while report["end"] < end:
                agent.grant(None)
                report = agent.next_report()
            agent.grant(None)
            if i == 1 and on_ext4(tmp_path):  # one 16 KiB record, and the segment reserved
                size, taken = on_disk([agent.dir / "log.0.0.0"])["log.0.0.0"]
                assert size == end and taken >= segment_bytes(limit)
        first, second = segments(agent.dir)[:2]
        held = LogReader(agent.dir).read(first.start, second.start, budget=1 << 40)
        chunks = [next(held)]  # the reader has the first segment open, and waits
        assert chunks[0].end < second.start  # more of it to read, after the drop
        os.write(go, b"x" * (count - i))
        while report["op"] != "exit":
            report = agent.next_report()
        assert not first.path.exists()  # dropped while held
        chunks += list(held)
    finally:
        os.close(go)
        code = agent.finish()
    assert code == 0
    data = b"".join(c.data for c in chunks)
    assert len(data) == second.before[0]
    assert data == b"".join(piece(n) for n in range(count))[:len(data)]


PIECE_BYTES = len(piece(0))


def pieces(count: int) -> bytes:
    return b"".join(piece(n) for n in range(count))


class Stepped:
    """The C monitor logging the STEPPED script's pieces, as many as `let_out` says, with
    this test as its agent (an unlimited window): the log's moves are the test's."""

    def __init__(self, binary: Path, tmp_path: Path, count: int, limit: int = MIB) -> None:
        fifo = tmp_path / "go"
        os.mkfifo(fifo)
        self.agent = Agent(binary, tmp_path, limit, STEPPED, str(fifo), str(count))
        self.go = os.open(fifo, os.O_WRONLY)
        self.count = count
        self.out = 0  # pieces let out
        self.end = 0  # the monitor's last reported end
        self.reused = 0  # segments seen in a reused file (its size from before, past its records)

    def let_out(self, n: int, one_by_one: bool = False) -> None:
        """n more pieces, logged before this returns (one record each, if `one_by_one`)."""
        n = min(n, self.count - self.out)
        for step in ([1] * n if one_by_one else [n] if n else []):
            os.write(self.go, b"x" * step)
            self.out += step
            while self.logged() < self.out * PIECE_BYTES:
                report = self.agent.next_report()
                assert report["op"] == "output", report
                self.end = report["end"]
                self.agent.grant(None)  # the answer it waits for before it reports again
            assert self.logged() == self.out * PIECE_BYTES  # only stdout, nothing lost
            last = segments(self.agent.dir)[-1]
            if last.path.stat().st_size > self.end - last.start:
                self.reused += 1

    def logged(self) -> int:
        """Bytes of stdout logged up to the monitor's last reported end."""
        if not self.end:
            return 0
        last = segments(self.agent.dir)[-1]
        return last.before[0] + sum(
            len(c.data) for c in LogReader(self.agent.dir).read(last.start, self.end, 1 << 40))

    def finish(self) -> int:
        """The rest of the pieces, the script's end, the monitor's exit code."""
        os.write(self.go, b"x" * (self.count - self.out))
        self.out = self.count
        os.close(self.go)
        report = self.agent.next_report()
        while report["op"] != "exit":
            self.agent.grant(None)
            report = self.agent.next_report()
        self.end = report["end"]
        assert self.logged() == self.count * PIECE_BYTES
        return self.agent.finish()

    def kill(self) -> None:
        """The monitor dies without its last word (and so the script, its pipe gone)."""
        self.agent.proc.kill()
        self.agent.proc.wait(60)
        if self.out < self.count:
            os.close(self.go)
        self.agent.sock.close()


class HeldRead:
    """A reader mid-read of one segment, as an agent's feed or a backlog is: it checks that
    every byte it gets is the byte of the script's output at that place."""

    def __init__(self, reader: LogReader, first: Segment, stop: int, views: bool) -> None:
        self.chunks = reader.read(first.start, stop, budget=1 << 40, views=views)
        self.first = first
        self.at = first.start  # the log offset of the next record it gets
        self.pos = first.before[0]  # the stdout offset of that record's first byte
        self.got = 0

    def step(self, expected: bytes) -> bool:
        """One more record (False: none left, the segment read or dropped)."""
        chunk = next(self.chunks, None)
        if chunk is None:
            return False
        data = bytes(chunk.data)
        assert chunk.stream == 1 and chunk.end == self.at + 8 + len(data)  # no gap, no skip
        assert data == expected[self.pos:self.pos + len(data)], \
            f"bytes at stdout offset {self.pos} are not the script's (a reused file's?)"
        self.at, self.pos, self.got = chunk.end, self.pos + len(data), self.got + 1
        return True


ACTIONS = st.lists(st.tuples(st.sampled_from(["write", "list", "hold", "step", "drain"]),
                             st.integers(0, 1 << 16)), min_size=5, max_size=40)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(actions=ACTIONS)
def test_readers_of_segments_whose_files_are_reused_never_get_new_bytes_as_old(
        binary: Path, actions: list[tuple[str, int]]) -> None:
    """The monitor gives a dropped segment's file to the next segment (monitor/log.c). Readers
    that list the segments, then open one (maybe dropped, its file maybe reused since), and
    hold it open while the monitor writes on, drops it and reuses files: every byte any of
    them gets is the script's byte at that place. The first steps make sure both happen at
    least once: a file reused, and a reader holding a segment across its drop."""
    count = 400  # 16 KiB pieces: about 6.4 MiB, with a 1 MiB limit (128 KiB segments)
    expected = pieces(count)
    with tempfile.TemporaryDirectory() as temp:
        run = Stepped(binary, Path(temp), count)
        listings: list[tuple[LogReader, list[Segment]]] = []
        held: list[HeldRead] = []
        try:
            run.let_out(8 * 12, one_by_one=True)  # past the limit: files reused
            assert run.reused > 0
            reader = LogReader(run.agent.dir)
            found = segments(run.agent.dir)
            read = HeldRead(reader, found[0], found[1].start, views=False)
            assert read.step(expected)  # the oldest segment open, one record read
            run.let_out(24)  # it is dropped, and the monitor rotates on: twice at least
            assert not found[0].path.exists()
            while read.step(expected):
                pass
            assert read.got == 8  # all its records, its own bytes
            for action, n in actions:
                if action == "write":
                    run.let_out(1 + n % 40, one_by_one=n % 2 == 0)
                elif action == "list":  # a reader whose listing goes stale
                    reader = LogReader(run.agent.dir)
                    reader.first_offset()
                    listings.append((reader, segments(run.agent.dir)))
                elif action == "hold" and listings:
                    reader, found = listings[n % len(listings)]
                    i = n // 7 % len(found)
                    stop = found[i + 1].start if i + 1 < len(found) else run.end
                    held.append(HeldRead(reader, found[i], stop, views=n % 3 == 0))
                    held[-1].step(expected)
                elif action == "step" and held:
                    held[n % len(held)].step(expected)
                elif action == "drain" and held:
                    read = held.pop(n % len(held))
                    while read.step(expected):
                        pass
            for read in held:
                while read.step(expected):
                    pass
            assert run.finish() == 0
        finally:
            if run.agent.proc.poll() is None:
                run.kill()
        logged = b"".join(c.data for c in LogReader(run.agent.dir).read(0, run.end, 1 << 40))
        assert logged == expected[len(expected) - len(logged):]


def test_a_log_end_taken_from_disk_stops_where_a_reused_files_new_records_do(
        binary: Path, tmp_path: Path) -> None:
    """A monitor gone without its status (killed, a box reboot): the agent that adopts the
    run takes the log's end from disk (runlog.log_end). In a reused file the records of the
    segment it was before follow the new ones, whole and in step with them (same-size
    records): the end is where the new ones stop, not where the file does."""
    run = Stepped(binary, tmp_path, 200)
    try:
        run.let_out(8 * 12 + 3, one_by_one=True)  # three records into a reused file
        last = segments(run.agent.dir)[-1]
        size = last.path.stat().st_size
        assert run.end - last.start == 3 * (8 + PIECE_BYTES) < size  # old records after
        with open(last.path, "rb") as f:
            f.seek(run.end - last.start)
            stream, _, length = struct.unpack(">B3sI", f.read(8))
        assert (stream, length) == (1, PIECE_BYTES)  # an old record's header, whole
    finally:
        run.kill()
    assert log_end(run.agent.dir) == run.end
    held = b"".join(c.data for c in LogReader(run.agent.dir).read(0, log_end(run.agent.dir),
                                                                  1 << 40))
    assert held == pieces(8 * 12 + 3)[-len(held):] and len(held) >= MIB


def test_the_c_monitors_marks_are_runlogs(binary: Path, tmp_path: Path) -> None:
    """Every header the C monitor writes carries its segment's mark, as runlog computes it
    (log_end depends on the two agreeing)."""
    run = Stepped(binary, tmp_path, 120)
    run.let_out(100, one_by_one=True)  # files reused
    assert run.reused > 0
    assert run.finish() == 0
    found = segments(run.agent.dir)
    assert len(found) > 2
    for segment in found:
        data = segment.path.read_bytes()
        at = 0
        while at < len(data):
            _, mark, length = struct.unpack(">B3sI", data[at:at + 8])
            assert int.from_bytes(mark, "big") == segment_mark(segment.start)
            at += 8 + length
