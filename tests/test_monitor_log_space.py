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
import subprocess
import sys
from pathlib import Path

import pytest

from box_agent.runlog import LogReader, log_end, segment_bytes, segments

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
