"""The client's packet read path alone: paramiko's Packetizer.read_message against lager's
(client/fast_recv.py), on the same AES-GCM packets, in the same run (issue 13).

A child process sends SSH_MSG_CHANNEL_DATA packets of the box's size through a socket pair
with paramiko's own packetizer; this process reads them and takes each packet's data as the
transport and channel do (get_int, get_binary). Rounds alternate the two paths; the table
gives the median reading thread's CPU per MB and MB/s. The end-to-end row is
`bench/run_bench.py --only stream`; this one isolates what the read path changes, which a
loaded machine hides there.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from paramiko.message import Message
from paramiko.packet import Packetizer

from client import fast_recv
from lager import protocol

KEY, IV = bytes(range(16)), bytes(range(12))
PAYLOAD = protocol.MAX_PACKET


class _Collect:
    """A socket for paramiko's sending packetizer that keeps what it is given."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)


def stream(count: int) -> bytes:
    """`count` encrypted SSH_MSG_CHANNEL_DATA packets as paramiko sends them, made before
    the rounds: the sending side must not be what a round measures."""
    sink = _Collect()
    sender = Packetizer(sink)
    sender.set_outbound_cipher(AESGCM(KEY), 16, None, 16, None, aead=True, iv_out=IV)
    data = os.urandom(PAYLOAD)
    for _ in range(count):
        m = Message()
        m.add_byte(bytes((fast_recv.MSG_CHANNEL_DATA,)))
        m.add_int(7)
        m.add_string(data)
        sender.send_message(m)
    return b"".join(sink.parts)


def one_round(wire: bytes, count: int, lean: bool) -> tuple[float, float]:
    """(reading thread CPU seconds, wall seconds) for `count` packets."""
    ours, theirs = socket.socketpair()
    child = os.fork()
    if child == 0:
        ours.close()
        try:
            theirs.sendall(wire)
        finally:
            os._exit(0)
    theirs.close()
    ours.settimeout(0.1)  # as paramiko's transport sets it
    reader = Packetizer(ours)
    engine = AESGCM(KEY)
    reader.set_inbound_cipher(engine, 16, None, 16, None, aead=True, iv_in=IV)
    if lean:
        lean_reader = fast_recv.GcmReader(None, reader, Message)
        lean_reader.inbound_keys(engine)
        reader.read_message = lean_reader.read_message  # type: ignore[method-assign]
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(count):
        _, m = reader.read_message()
        m.get_int()
        m.get_binary()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    os.waitpid(child, 0)
    ours.close()
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one", choices=("paramiko", "lean"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    count = args.mb * (1 << 20) // PAYLOAD
    mb = count * PAYLOAD / (1 << 20)
    if args.one:  # one round in this process: print (CPU s, wall s)
        print(*one_round(stream(count), count, args.one == "lean"))
        return
    # Each round in a process of its own: the malloc state one path leaves (glibc's
    # dynamic mmap and trim thresholds) changed the other's page faults by half.
    results: dict[str, list[tuple[float, float]]] = {"paramiko": [], "lean": []}
    for i in range(args.rounds):
        for name in ("paramiko", "lean") if i % 2 == 0 else ("lean", "paramiko"):
            out = subprocess.run([sys.executable, __file__, "--mb", str(args.mb), "--one", name],
                                 capture_output=True, text=True, check=True).stdout.split()
            results[name].append((float(out[0]), float(out[1])))
    print(f"{mb:.0f} MB in {PAYLOAD} byte packets, {args.rounds} rounds, medians")
    print(f"{'read path':<28}{'CPU ms/MB':>10}{'MB/s':>10}")
    for name, label in (("paramiko", "paramiko read_message"), ("lean", "client/fast_recv.py")):
        cpu = median(r[0] for r in results[name]) / mb * 1000
        rate = mb / median(r[1] for r in results[name])
        print(f"{label:<28}{cpu:>10.3f}{rate:>10.0f}")


if __name__ == "__main__":
    main()
