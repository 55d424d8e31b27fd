"""Bytes read ahead from a socket, several packets a syscall: the lean receive paths' buffer
(client/fast_recv.py under paramiko, client/quick_run.py under the quick client)."""
from __future__ import annotations

BUFFER_SIZE = 2 << 20  # a few of the box's 256 KiB packets per read


class ReadBuffer:
    """buffer[start:end] is read and not yet taken; view is a memoryview of buffer."""

    def __init__(self, size: int = BUFFER_SIZE) -> None:
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self.start = self.end = 0

    def make_room(self, need: int) -> None:
        """Room for `need` bytes from start on: what is unread moves to the front, or into a
        larger buffer when `need` is more than this one holds (a packet larger than it)."""
        held = self.end - self.start
        if need > len(self.buffer):
            bigger = bytearray(need + len(self.buffer))
            bigger[:held] = self.view[self.start:self.end]
            self.view.release()
            self.buffer, self.view = bigger, memoryview(bigger)
        else:
            self.buffer[:held] = self.view[self.start:self.end]
        self.start, self.end = 0, held
