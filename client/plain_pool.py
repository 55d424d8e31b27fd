"""Plaintext buffers for packets whose channel data is handed on as views (issue 13).

A reader that takes views (client/chan_buffer.py take_views: the run follower) gets each
packet's data as a memoryview of the buffer the packet was decrypted into, so the data is not
copied between the decryption and the write to stdout. Each packet then needs a buffer that
nobody reads any more. New bytes from AESGCM.decrypt would do, but cryptography zero-fills
them first (a memset as costly as the copy it saved), and a new bytearray is zero-filled too.
So the buffers are reused, oldest first, as the reader releases them in the order they came:
a buffer is free when no view of it is left, which Python tells by refusing to resize a
bytearray that has live exports.

Only packets of SMALLEST bytes or more take a pool buffer. The pool keeps at most `keep`
buffers (enough for the client's whole window of such packets); past that, a packet gets a
buffer of its own that is not kept. They stay with the process once made: at most the window
(about 20 MiB in the box's full-size packets), as much as a full window of bytes would take.
"""
from __future__ import annotations

from collections import deque

from lager import protocol

BUFFER_SIZE = protocol.MAX_PACKET + 1024  # the box's largest data packet and its framing
# Packets smaller than this are copied out of one reused buffer instead (cheap at that size,
# and a pool buffer each would hold many times their size).
SMALLEST = 128 * 1024
# Enough for the client's whole window in such packets, plus what the writers hold: past it,
# a packet gets a buffer that is not kept.
KEEP = protocol.CLIENT_WINDOW // SMALLEST + 16


def _unexported(buffer: bytearray) -> bool:
    """True when no memoryview of `buffer` is alive (so it may be written again)."""
    try:
        buffer.append(0)  # a bytearray with live exports cannot be resized: BufferError
    except BufferError:
        return False
    del buffer[-1]
    return True


class PlainPool:
    def __init__(self, size: int = BUFFER_SIZE, keep: int = KEEP) -> None:
        self.size = size
        self.keep = keep
        self._ring: deque[bytearray] = deque()  # oldest use first
        self.made = self.reused = 0  # counts for tests and measurements

    def take(self, need: int) -> bytearray:
        """A buffer of at least `need` bytes that no view refers to, to decrypt into. Only
        the oldest is looked at: views are released in the order the packets came, so while
        it is still read, so are the newer ones."""
        ring = self._ring
        if ring and _unexported(ring[0]):
            oldest = ring.popleft()
            if len(oldest) >= need:
                ring.append(oldest)  # now the newest
                self.reused += 1
                return oldest
            # too small for this packet: dropped, a larger one takes its place
        fresh = bytearray(max(need, self.size) + 1)
        del fresh[-1]  # room for _unexported's probe byte without a reallocation
        self.made += 1
        if len(ring) < self.keep:
            ring.append(fresh)
        return fresh
