"""HiSLIP (IVI-6.1) server side: message framing for code written for USB-TMC or VXI-11.

A client opens two connections: a synchronous one (Initialize, then Data/DataEnd messages
carrying SCPI) and an asynchronous one (AsyncInitialize with the session id, then status,
lock, clear and max-message-size requests). A message ends with its DataEnd, so no read
termination is needed; each response goes back in one DataEnd tagged with the message id of
the query that caused it. Only synchronized mode (no overlap) is offered.
"""
from __future__ import annotations

import asyncio
import itertools
import struct
from dataclasses import dataclass, field

from .instrument import Instrument

HEADER = struct.Struct("!2sBBIQ")
INITIALIZE, INITIALIZE_RESPONSE, FATAL_ERROR, ERROR = 0, 1, 2, 3
ASYNC_LOCK, ASYNC_LOCK_RESPONSE, DATA, DATA_END = 4, 5, 6, 7
DEVICE_CLEAR_COMPLETE, DEVICE_CLEAR_ACKNOWLEDGE = 8, 9
ASYNC_REMOTE_LOCAL_CONTROL, ASYNC_REMOTE_LOCAL_RESPONSE, TRIGGER = 10, 11, 12
ASYNC_MAX_MSG_SIZE, ASYNC_MAX_MSG_SIZE_RESPONSE = 15, 16
ASYNC_INITIALIZE, ASYNC_INITIALIZE_RESPONSE, ASYNC_DEVICE_CLEAR = 17, 18, 19
ASYNC_STATUS_QUERY, ASYNC_STATUS_RESPONSE, ASYNC_DEVICE_CLEAR_ACKNOWLEDGE = 21, 22, 23
ASYNC_LOCK_INFO, ASYNC_LOCK_INFO_RESPONSE = 24, 25
PROTOCOL_VERSION = 0x0100  # HiSLIP 1.0
VENDOR = b"SB"
MAX_MESSAGE = 1 << 20  # what we accept in one message; larger ones get an Error reply
MAX_SESSIONS = 64


def frame(kind: int, control: int = 0, parameter: int = 0, payload: bytes = b"") -> bytes:
    return HEADER.pack(b"HS", kind, control, parameter, len(payload)) + payload


class BadHeader(Exception):
    """Not HiSLIP: the spec's answer is a FatalError, then closing the connection."""


@dataclass
class Session:
    ident: int
    pending: bytearray = field(default_factory=bytearray)
    max_message: int = MAX_MESSAGE


class HislipServer:
    """Serves one instrument; every client session shares the instrument's state."""

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            kind, _control, parameter, _payload = await self._receive(reader)
            if kind == INITIALIZE:
                await self._sync_channel(reader, writer, parameter)
            elif kind == ASYNC_INITIALIZE and parameter in self.sessions:
                writer.write(frame(ASYNC_INITIALIZE_RESPONSE, 0,
                                   int.from_bytes(VENDOR.ljust(4, b"\0"), "big")))
                await self._async_channel(reader, writer, self.sessions[parameter])
            else:
                writer.write(frame(FATAL_ERROR, 3, 0, b"Invalid initialization sequence"))
        except BadHeader as exc:
            writer.write(frame(FATAL_ERROR, 1, 0, str(exc).encode()))  # poorly formed header
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: so does this connection
        finally:
            writer.close()

    async def _receive(self, reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
        prologue, kind, control, parameter, length = HEADER.unpack(
            await reader.readexactly(HEADER.size))
        if prologue != b"HS":
            raise BadHeader("not a HiSLIP message header")
        if length > MAX_MESSAGE + 64:
            raise BadHeader("message too large")
        payload = await reader.readexactly(length) if length else b""
        return kind, control, parameter, payload

    async def _sync_channel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            _parameter: int) -> None:
        if len(self.sessions) >= MAX_SESSIONS:
            writer.write(frame(FATAL_ERROR, 4, 0, b"Maximum number of clients exceeded"))
            return
        session = Session(next(self._ids) & 0xFFFF or next(self._ids))
        self.sessions[session.ident] = session
        try:
            writer.write(frame(INITIALIZE_RESPONSE, 0, PROTOCOL_VERSION << 16 | session.ident))
            while True:
                kind, _control, parameter, payload = await self._receive(reader)
                if kind in (DATA, DATA_END):
                    session.pending += payload
                    if len(session.pending) > session.max_message:
                        session.pending.clear()
                        writer.write(frame(ERROR, 4, 0, b"Message too large"))
                    elif kind == DATA_END:
                        self._execute(session, parameter, writer)
                elif kind == DEVICE_CLEAR_COMPLETE:
                    session.pending.clear()
                    writer.write(frame(DEVICE_CLEAR_ACKNOWLEDGE, 0))
                elif kind == TRIGGER:
                    self.instrument.handle("*TRG")
                else:
                    writer.write(frame(ERROR, 1, 0, b"Unrecognized Message Type"))
                await writer.drain()
        finally:
            del self.sessions[session.ident]

    def _execute(self, session: Session, message_id: int, writer: asyncio.StreamWriter) -> None:
        text = bytes(session.pending).decode("utf-8", "replace")
        session.pending.clear()
        # The DataEnd is the terminator; a trailing newline from a write_termination is too.
        reply = self.instrument.handle(text.rstrip("\r\n"))
        if reply is not None:
            writer.write(frame(DATA_END, 0, message_id, reply.encode() + b"\n"))

    async def _async_channel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             session: Session) -> None:
        while True:
            kind, _control, _parameter, payload = await self._receive(reader)
            if kind == ASYNC_MAX_MSG_SIZE and len(payload) == 8:
                session.max_message = min(MAX_MESSAGE, struct.unpack("!Q", payload)[0])
                writer.write(frame(ASYNC_MAX_MSG_SIZE_RESPONSE, 0, 0,
                                   struct.pack("!Q", session.max_message)))
            elif kind == ASYNC_STATUS_QUERY:
                writer.write(frame(ASYNC_STATUS_RESPONSE, self.instrument.stb()))
            elif kind == ASYNC_DEVICE_CLEAR:
                session.pending.clear()
                writer.write(frame(ASYNC_DEVICE_CLEAR_ACKNOWLEDGE, 0))
            elif kind == ASYNC_LOCK:
                # Claims (lager.bench.claims) are the bench's locks; a VISA lock always succeeds.
                writer.write(frame(ASYNC_LOCK_RESPONSE, 1))
            elif kind == ASYNC_LOCK_INFO:
                writer.write(frame(ASYNC_LOCK_INFO_RESPONSE, 0, 0))
            elif kind == ASYNC_REMOTE_LOCAL_CONTROL:
                writer.write(frame(ASYNC_REMOTE_LOCAL_RESPONSE))
            else:
                writer.write(frame(ERROR, 1, 0, b"Unrecognized Message Type"))
            await writer.drain()
