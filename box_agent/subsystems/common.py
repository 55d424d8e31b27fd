"""What every subsystem handler shares: its context, the id line, and the one-line failure."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncssh

from lager import protocol
from lager.errors import LagerError

from ..runs import Caller, Run, Supervisor


@dataclass
class Context:
    process: asyncssh.SSHServerProcess[bytes]
    supervisor: Supervisor
    caller: Caller
    env: dict[str, str]  # whitelisted channel env
    box_name: str
    bench: Any

    def write_line(self, text: str) -> None:
        self.process.stdout.write((text + "\n").encode())

    def write_json(self, data: Any) -> None:
        self.process.stdout.write((json.dumps(data) + "\n").encode())

    def notice(self, text: str) -> None:
        """A line from lager itself (not the script) on the channel's stderr."""
        self.process.stderr.write(f"lager: {text}\n".encode())

    async def read_line(self, limit: int, what: str) -> bytes:
        """Read one line without ever buffering more than `limit` bytes of it."""
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = await self.process.stdin.read(limit + 1 - len(buf))
            except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived,
                    asyncssh.SignalReceived):
                continue
            if not chunk:
                break
            buf += chunk
            if len(buf) > limit and b"\n" not in buf[:limit + 1]:
                raise LagerError(f"{what} is longer than {limit} bytes")
        return buf.split(b"\n", 1)[0]

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
