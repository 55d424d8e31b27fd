"""The quick run's packet reader (client/quick_run.py Packets): the box's AES-GCM packets read
several a syscall and decrypted, the large ones into pool buffers handed on as views; and
generated hostile bytes after login, each refused as a lost link (q.Lost), never another
exception or a hang. The peer is a socketpair; the sealing is cryptography's AESGCM with the
keys both sides derived, as the box's would be."""
from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from client import quick_ssh as q
from client.plain_pool import SMALLEST, PlainPool
from client.quick_packets import Packets

KEY, IV = bytes(range(16)), bytes(range(100, 112))


class Box:
    """The sending side: seals packets as the box would after NEWKEYS."""

    def __init__(self) -> None:
        self.aead = AESGCM(KEY)
        self.counter = int.from_bytes(IV[4:], "big")

    def packet(self, payload: bytes, pad: int | None = None) -> bytes:
        pad = pad if pad is not None else 4 + (-(1 + len(payload) + 4) % 16)
        body = bytes([pad]) + payload + os.urandom(pad)
        length = struct.pack(">I", len(body))
        nonce = IV[:4] + self.counter.to_bytes(8, "big")
        self.counter += 1
        return length + self.aead.encrypt(nonce, body, length)


@contextlib.contextmanager
def logged_in() -> Iterator[tuple[socket.socket, Packets]]:
    """The box's end of a connection, and our reader on the other, keys set as after login."""
    ours, theirs = socket.socketpair()
    transport = q.Transport(ours, b"")
    transport.recv_keys = q._Keys(KEY, IV)
    transport.first_kex = False
    try:
        yield theirs, Packets(transport, PlainPool())
    finally:
        ours.close()
        theirs.close()


def test_packets_come_back_exactly_small_as_bytes_large_as_views() -> None:
    with logged_in() as (theirs, packets):
        _read_back(theirs, packets)


def _read_back(theirs: socket.socket, packets: Packets) -> None:
    box = Box()
    payloads = [b"\x5e" + os.urandom(n) for n in (1, 100, SMALLEST + 7, 250_000, 30, 200_000)]
    # Several packets in one write: read together, taken apart here.
    wire = b"".join(box.packet(p) for p in payloads)
    writer = threading.Thread(target=theirs.sendall, args=(wire,))
    writer.start()
    got = [packets.next() for _ in payloads]
    writer.join()
    assert [bytes(g) for g in got] == payloads
    assert [isinstance(g, memoryview) for g in got] == [len(p) + 5 >= SMALLEST for p in payloads]
    # IGNORE is skipped, and a packet the box broke off is a lost link.
    theirs.sendall(box.packet(bytes([q.IGNORE]) + b"\0\0\0\0") + box.packet(b"\x5eafter"))
    assert bytes(packets.next()) == b"\x5eafter"
    theirs.sendall(box.packet(b"\x5etail")[:20])
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(q.Lost):
        packets.next()


@settings(max_examples=150, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=4096), valid_first=st.booleans(),
       flip=st.integers(min_value=0, max_value=10_000))
def test_hostile_bytes_after_login_are_a_lost_link(garbage: bytes, valid_first: bool,
                                                   flip: int) -> None:
    """Random bytes, or a valid packet with one bit flipped: q.Lost (a bad length, a failed
    integrity check, bad padding, or the end of the stream), nothing else."""
    with logged_in() as (theirs, packets):
        _refused(theirs, packets, garbage, valid_first, flip)


def _refused(theirs: socket.socket, packets: Packets, garbage: bytes, valid_first: bool,
             flip: int) -> None:
    box = Box()
    if valid_first:
        sealed = bytearray(box.packet(b"\x5e" + garbage))
        sealed[flip % len(sealed)] ^= 0x01
        wire = bytes(sealed)
    else:
        wire = garbage
    theirs.sendall(wire)
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(q.Lost):
        while True:
            packets.next()
