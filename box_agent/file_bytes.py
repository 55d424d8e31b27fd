"""Bytes of a run log still on disk: where they are, read only when a packet is built.

The agent's feed (box_agent/output_log.py) hands the viewers a long record's data as a
FileBytes instead of reading it first: the packet builder (box_agent/fast_send.py) reads each
packet's share with preadv straight into the buffer the packet is encrypted from. Read first,
every byte of a stream was copied by the kernel into a bytes object and then again into that
buffer (issue 13: the second copy was a tenth of the agent's CPU per MB).

The descriptor belongs to whoever opened it (OutputLog.feed_to, for one batch): a FileBytes is
read while its batch is written, never kept past it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FileBytes:
    fd: int
    pos: int  # its first byte's position in the file
    length: int

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, part: slice) -> FileBytes:
        """A stretch of it, as a slice of bytes would be (no step)."""
        start, stop, step = part.indices(self.length)
        if step != 1:
            raise ValueError("FileBytes takes no step")
        return FileBytes(self.fd, self.pos + start, max(0, stop - start))

    def read_into(self, buffer: memoryview) -> None:
        """All of it into `buffer` (exactly its length): short is an OSError, never a packet
        with bytes that are not the log's."""
        done = 0
        while done < self.length:
            got = os.preadv(self.fd, [buffer[done:self.length]], self.pos + done)
            if got <= 0:
                raise OSError(f"the run log ended {self.length - done} bytes short")
            done += got

    def read(self) -> bytes:
        data = os.pread(self.fd, self.length, self.pos)
        if len(data) < self.length:
            raise OSError(f"the run log ended {self.length - len(data)} bytes short")
        return data


# What a viewer may be given: bytes, a view of a larger read, or a stretch still on disk.
Data = bytes | memoryview | FileBytes


def as_bytes(data: Data) -> bytes | memoryview:
    return data.read() if isinstance(data, FileBytes) else data
