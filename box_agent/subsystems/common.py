"""What every subsystem handler shares: its context, the id line, and the one-line failure."""
from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import asyncssh

from lager import protocol
from lager.errors import LagerError
from lager.protocol.events import NOTICE, record

from ..reservations import Reservations
from ..runs import Caller, Run, Supervisor

log = logging.getLogger("lager-box.subsystems")
_LINE_END = re.compile(rb"\r\n|\n|\r")


@dataclass(frozen=True)
class WindowChange:
    cols: int
    rows: int


class Interrupt:
    """A break or a signal from the client: Ctrl-C, whichever way the client sent it."""


INTERRUPT = Interrupt()


@dataclass
class Context:
    process: asyncssh.SSHServerProcess[bytes]
    supervisor: Supervisor
    caller: Caller
    env: dict[str, str]  # whitelisted channel env
    reservations: Reservations  # asked before every change and every new run
    pending: bytes = b""  # read past the end of a line; the next read returns it first
    framed: bool = False  # a run channel in the framed form: notices go as records too

    def write_line(self, text: str) -> None:
        self.process.stdout.write((text + "\n").encode())

    def write_json(self, data: Any) -> None:
        self.process.stdout.write((json.dumps(data) + "\n").encode())

    def notice(self, text: str) -> None:
        """A line from lager itself (not the script) on the channel's stderr."""
        data = f"lager: {text}\n".encode()
        if self.framed:
            self.process.stdout.write(record(NOTICE, data) + data)
        else:
            self.process.stderr.write(data)

    async def read_input(self, size: int) -> bytes | WindowChange | Interrupt:
        """The one reader of a channel's stdin: up to size bytes (b"" at EOF), or what the
        client did instead of sending data: a window change, or a break or signal (Ctrl-C,
        however the client sent it). asyncssh raises those from read(); unhandled, a window
        change would drop the whole connection."""
        if self.pending:
            data, self.pending = self.pending[:size], self.pending[size:]
            return data
        try:
            return await self.process.stdin.read(size)
        except asyncssh.TerminalSizeChanged as change:
            return WindowChange(change.width, change.height)
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            return INTERRUPT

    async def read(self, size: int) -> bytes:
        """Up to size bytes of the channel's stdin, b"" at EOF. A request being read has no
        console to interrupt or to size yet: those are passed over."""
        while True:
            got = await self.read_input(size)
            if isinstance(got, bytes):
                return got

    async def read_line(self, limit: int, what: str) -> bytes:
        """Read one line (ended by LF, or CR from a terminal) without ever buffering more
        than `limit` bytes of it; what follows the line stays for the next read."""
        buf = bytearray()
        while True:
            chunk = await self.read(limit + 1 - len(buf))
            if not chunk:
                return bytes(buf)
            searched = len(buf)
            buf += chunk
            # Only the new bytes can hold the end (a line of megabytes is not searched again
            # and again); a CR that ended the last chunk has already ended the line.
            end = _LINE_END.search(buf, searched)
            if end is not None:
                self.pending = bytes(buf[end.end():]) + self.pending
                return bytes(buf[:end.start()])
            if len(buf) > limit:
                raise LagerError(f"{what} is longer than {limit} bytes")

    async def run_from_request(self) -> Run:
        """The run a continue/console/attach request names: env LAGER_BREAKPOINT or line one."""
        return self.supervisor.find(await self.request_query())

    async def request_query(self) -> str:
        """The request's first line (or env LAGER_BREAKPOINT): the run id, maybe more words."""
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
        return query


def fail(process: asyncssh.SSHServerProcess[bytes], message: str, status: int = 1) -> None:
    """One line on stderr and the exit status; nothing when the client has already gone."""
    if process.is_closing():
        return
    line = " ".join(message.splitlines()) or "refused"
    try:
        process.stderr.write((line + "\n").encode("utf-8", "backslashreplace"))
        process.exit(status)
    except (BrokenPipeError, ConnectionError, asyncssh.Error):
        process.close()


def watch(task: asyncio.Task[None], what: str) -> asyncio.Task[None]:
    """A background task whose failure is logged once, in one line, instead of as a traceback
    when the task is collected."""

    def reap(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            exc = done.exception()
            log.error("%s failed: %s: %s", what, type(exc).__name__, exc)

    task.add_done_callback(reap)
    return task
