"""What every subsystem handler shares: its context, the id line, and the one-line failure."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import asyncssh

from lager import protocol
from lager.errors import LagerError

from ..runs import Caller, Run, Supervisor

_LINE_END = re.compile(rb"\r\n|\n|\r")


@dataclass
class Context:
    process: asyncssh.SSHServerProcess[bytes]
    supervisor: Supervisor
    caller: Caller
    env: dict[str, str]  # whitelisted channel env
    pending: bytes = b""  # read past the end of a line; the next read returns it first

    def write_line(self, text: str) -> None:
        self.process.stdout.write((text + "\n").encode())

    def write_json(self, data: Any) -> None:
        self.process.stdout.write((json.dumps(data) + "\n").encode())

    def notice(self, text: str) -> None:
        """A line from lager itself (not the script) on the channel's stderr."""
        self.process.stderr.write(f"lager: {text}\n".encode())

    async def read(self, size: int) -> bytes:
        """Up to size bytes of the channel's stdin, b"" at EOF."""
        if self.pending:
            data, self.pending = self.pending[:size], self.pending[size:]
            return data
        while True:
            try:
                return await self.process.stdin.read(size)
            except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived,
                    asyncssh.SignalReceived):
                continue

    async def read_line(self, limit: int, what: str) -> bytes:
        """Read one line (ended by LF, or CR from a terminal) without ever buffering more
        than `limit` bytes of it; what follows the line stays for the next read."""
        buf = b""
        while not _LINE_END.search(buf):
            chunk = await self.read(limit + 1 - len(buf))
            if not chunk:
                return buf
            buf += chunk
            if len(buf) > limit and not _LINE_END.search(buf[:limit + 1]):
                raise LagerError(f"{what} is longer than {limit} bytes")
        end = _LINE_END.search(buf)
        assert end is not None
        self.pending = buf[end.end():] + self.pending
        return buf[:end.start()]

    async def run_from_request(self) -> Run:
        """The run a continue/console/attach request names: env LAGER_BREAKPOINT or line one."""
        query = self.env.get(protocol.ENV_BREAKPOINT_ID)
        if query is None:
            raw = await self.read_line(protocol.MAX_ID_LINE, "the id line")
            try:
                query = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise LagerError("the id line is not text; send the run id from the banner") \
                    from None
        query = query.strip()
        if not query:
            raise LagerError("no run id given: send the id from the banner as the first line "
                             f"or set {protocol.ENV_BREAKPOINT_ID}")
        return self.supervisor.find(query)


def fail(process: asyncssh.SSHServerProcess[bytes], message: str, status: int = 1) -> None:
    process.stderr.write((message.replace("\n", " ") + "\n").encode())
    process.exit(status)
