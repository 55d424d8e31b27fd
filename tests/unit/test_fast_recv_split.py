"""client/fast_recv.py cuts AES-GCM packets out of a socket's bytes however they arrive (issue 13).

paramiko's own Packetizer encrypts a run of messages (channel data of every size, small
messages between them); the bytes go through a socket pair in arbitrary cuts, each cut taken
by the reader before the next is sent, so every readv sees one cut. The lean reader must give
back the messages paramiko's own read path gives for the same bytes, and leave the
packetizer's bookkeeping (sequence number, IV, rekey counts) where paramiko's path leaves it.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import threading
import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from paramiko.message import Message
from paramiko.packet import Packetizer
from paramiko.ssh_exception import SSHException

from client import fast_recv

KEY, IV = bytes(range(16)), bytes(range(100, 112))
CHANNEL_DATA, WINDOW_ADJUST, IGNORE = 94, 93, 2
SMALL_BUFFER = 64 * 1024
BOOKKEEPING = ("sequence_number_in", "iv_in", "received_bytes", "received_packets")


class _Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)


def _message(kind: int, size: int) -> Message:
    m = Message()
    m.add_byte(bytes((kind,)))
    m.add_int(3)  # the channel
    if kind == CHANNEL_DATA:
        m.add_string(os.urandom(size))
    elif kind == WINDOW_ADJUST:
        m.add_int(size)
    else:
        m.add_string(b"i" * size)
    return m


def _wire(messages: list[Message]) -> bytes:
    sink = _Collect()
    sender = Packetizer(sink)
    sender.set_outbound_cipher(AESGCM(KEY), 16, None, 16, None, aead=True, iv_out=IV)
    for m in messages:
        sender.send_message(m)
    return b"".join(sink.parts)


def _reader(sock: socket.socket, lean: bool) -> tuple[Packetizer, fast_recv.GcmReader | None]:
    sock.settimeout(0.1)  # as paramiko's transport sets it
    packetizer = Packetizer(sock)
    engine = AESGCM(KEY)
    packetizer.set_inbound_cipher(engine, 16, None, 16, None, aead=True, iv_in=IV)
    if not lean:
        return packetizer, None
    # A small buffer: moving a partial packet to the front, and growing, happen often.
    reader = fast_recv.GcmReader(None, packetizer, Message, buffer_size=SMALL_BUFFER)
    reader.inbound_keys(engine)
    packetizer.read_message = reader.read_message  # type: ignore[method-assign]
    return packetizer, reader


def _queued(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


def _send_in_cuts(writer: socket.socket, reader: socket.socket, wire: bytes,
                  cuts: list[int]) -> None:
    """Each cut once the reader has taken everything before it (a condition, polled)."""
    pos = 0
    for cut in [*cuts, len(wire)]:
        piece = wire[pos:pos + max(cut, 1)]
        if not piece:
            break
        writer.sendall(piece)
        pos += len(piece)
        give_up = time.monotonic() + 60
        while _queued(reader) and time.monotonic() < give_up:
            time.sleep(0.0005)


def _read(messages: int, wire: bytes, cuts: list[int] | None, lean: bool
          ) -> tuple[list[tuple[int, bytes]], dict[str, object], fast_recv.GcmReader | None]:
    ours, theirs = socket.socketpair()
    packetizer, reader = _reader(ours, lean)
    if cuts is None:
        sender = threading.Thread(target=theirs.sendall, args=(wire,))
    else:
        sender = threading.Thread(target=_send_in_cuts, args=(theirs, ours, wire, cuts))
    sender.start()
    got = []
    try:
        for _ in range(messages):
            kind, m = packetizer.read_message()
            if kind == CHANNEL_DATA:
                m.get_int()
                got.append((kind, m.get_binary()))
            else:
                got.append((kind, m.get_remainder()))
    except BaseException:
        ours.close()  # first: a sender waiting on a reader that failed stops at once
        theirs.close()
        sender.join(120)
        raise
    sender.join(120)  # it has seen the last cut taken
    ours.close()
    theirs.close()
    state = {name: getattr(packetizer, "_Packetizer__" + name) for name in BOOKKEEPING}
    return got, state, reader


kinds = st.tuples(st.sampled_from([CHANNEL_DATA, CHANNEL_DATA, WINDOW_ADJUST, IGNORE]),
                  st.one_of(st.integers(min_value=0, max_value=200),
                            st.integers(min_value=20_000, max_value=300_000)))


@settings(max_examples=60, deadline=None)
@given(st.lists(kinds, min_size=1, max_size=10),
       st.lists(st.integers(min_value=1, max_value=70_000), max_size=30))
def test_any_recv_cuts_give_paramikos_messages_and_bookkeeping(
        spec: list[tuple[int, int]], cuts: list[int]) -> None:
    wire = _wire([_message(kind, size) for kind, size in spec])
    expected, expected_state, _ = _read(len(spec), wire, None, lean=False)
    got, state, reader = _read(len(spec), wire, cuts, lean=True)
    assert got == expected
    assert state == expected_state
    assert reader is not None and reader.fast_packets == len(spec) and not reader.other_packets


def test_a_packet_larger_than_the_buffer_grows_it() -> None:
    size = 3 * SMALL_BUFFER + 12_345
    wire = _wire([_message(CHANNEL_DATA, size), _message(WINDOW_ADJUST, 9)])
    expected, expected_state, _ = _read(2, wire, None, lean=False)
    got, state, reader = _read(2, wire, None, lean=True)
    assert got == expected and len(got[0][1]) == size
    assert state == expected_state
    assert reader is not None and reader.fast_packets == 2


def test_a_tampered_packet_is_refused_and_nothing_of_it_is_handed_on() -> None:
    wire = bytearray(_wire([_message(CHANNEL_DATA, 5000)]))
    wire[200] ^= 1  # inside the ciphertext
    with pytest.raises(SSHException, match="Mismatched MAC"):
        _read(1, bytes(wire), None, lean=True)


def test_bytes_read_ahead_go_back_to_paramikos_path_when_it_takes_over() -> None:
    """Two packets arrive in one read; paramiko's path (here: a rekey it asked for) must
    find the second one's bytes."""
    wire = _wire([_message(CHANNEL_DATA, 1000), _message(CHANNEL_DATA, 2000)])
    ours, theirs = socket.socketpair()
    with ours, theirs:
        packetizer, reader = _reader(ours, lean=True)
        theirs.sendall(wire)
        first, _ = packetizer.read_message()
        assert reader is not None and reader.end > reader.start  # the second is read ahead
        packetizer._Packetizer__need_rekey = True  # type: ignore[attr-defined]
        second, m = packetizer.read_message()
        assert (first, second) == (CHANNEL_DATA, CHANNEL_DATA)
        m.get_int()
        assert len(m.get_binary()) == 2000
        assert reader.fast_packets == 1 and reader.other_packets == 1
