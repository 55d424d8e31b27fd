"""The quick run's reader of the box's packets after login (client/quick_run.py): AES-GCM
packets read into one large buffer, several a syscall when they are queued, and decrypted from
it, a large one into a pool buffer (client/plain_pool.py) whose payload is then a view of it,
as the lean path under paramiko does (client/fast_recv.py)."""
from __future__ import annotations

import os
import struct

from . import quick_ssh as q
from .plain_pool import SMALLEST, PlainPool
from .read_buffer import ReadBuffer

_LENGTH = struct.Struct(">I")


class Packets(ReadBuffer):
    """The box's packets after login, read into one large buffer (several a syscall when they
    are queued) and decrypted from it: a large one into a pool buffer, whose payload is then a
    view of it; others as new bytes. The transport's own reader (the handshake's, and a
    rekey's) gets back what this one read ahead."""

    def __init__(self, transport: q.Transport, pool: PlainPool) -> None:
        super().__init__()
        self.t = transport
        self.pool = pool

    def take_over(self) -> None:
        held = self.t.inbuf
        if self.end + len(held) > len(self.buffer):
            self.make_room(self.end - self.start + len(held))
        self.buffer[self.end:self.end + len(held)] = held
        self.end += len(held)
        del held[:]

    def give_back(self) -> None:
        self.t.inbuf[:0] = self.view[self.start:self.end]
        self.start = self.end = 0

    def next(self) -> bytes | memoryview:
        """The next payload (IGNORE and DEBUG skipped); Lost on a bad packet or a lost link,
        TimeoutError when the socket's timeout passed with nothing read."""
        while True:
            self._fill(4)
            length = _LENGTH.unpack_from(self.buffer, self.start)[0]
            total = self.t.check_length(length)
            self._fill(total)
            keys = self.t.recv_keys
            assert keys is not None  # after login
            packet = self.view[self.start:self.start + total]
            try:
                body: bytes | memoryview
                if length >= SMALLEST and hasattr(keys.aead, "decrypt_into"):
                    body = memoryview(self.pool.take(length))[:length]
                    keys.aead.decrypt_into(keys.nonce(), packet[4:], packet[:4], body)
                else:
                    body = keys.aead.decrypt(keys.nonce(), packet[4:], packet[:4])
            except q.InvalidTag:
                raise q.Lost("a packet failed its integrity check") from None
            finally:
                packet.release()
            self.start += total
            if self.start == self.end:
                self.start = self.end = 0
            payload = self.t.payload_of(body)
            if payload is not None:
                return payload

    def _fill(self, need: int) -> None:
        if self.start + need > len(self.buffer):
            self.make_room(need)
        sock = self.t.sock
        while self.end - self.start < need:
            into = self.view[self.end:]
            try:
                # readv first: a socket with a timeout polls before each recv, needless while
                # data is queued (its fd is non-blocking then).
                got = os.readv(sock.fileno(), [into])
            except BlockingIOError:
                try:
                    got = sock.recv_into(into)
                except TimeoutError:
                    raise
                except OSError as exc:
                    raise q.Lost(str(exc)) from None
            except OSError as exc:
                raise q.Lost(str(exc)) from None
            finally:
                into.release()
            if got == 0:
                raise q.Lost("the box closed the connection")
            self.end += got
