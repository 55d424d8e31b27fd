"""The simulated bench: the instrument models served over TCP on loopback.

State is per process, so the bench is one process that every script, the agent and every
terminal reach through pyvisa-py, and all of them see the same instrument state. Each
instrument is served twice: as a raw SCPI socket (`TCPIP0::127.0.0.1::PORT::SOCKET`, newline
terminated) and as HiSLIP (`TCPIP0::127.0.0.1::hislip0,PORT::INSTR`, framed messages); the bench
file picks one per instrument. Run: `python -m box_agent.simbench [MODELS]`; it prints one JSON
line {device: port, device_hislip: port} when listening and exits when its stdin closes.
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from .hislip import HislipServer
from .instrument import Instrument
from .keithley_2281s import Keithley2281S
from .meters import KeithleyDAQ6510, Keysight34461A
from .models import DeviceSpec, load_models
from .physics import Bench
from .rigol_dl3021 import RigolDL3021
from .rigol_dp821 import RigolDP821
from .scpi import ScpiError

MODELS = Path(__file__).with_name("models") / "bench.yaml"
MAX_LINE = 64 * 1024
KINDS: dict[str, Callable[[DeviceSpec, Bench], Instrument]] = {
    "keithley_2281s": Keithley2281S, "rigol_dp821": RigolDP821,
    "keithley_daq6510": KeithleyDAQ6510, "keysight_34461a": Keysight34461A,
    "rigol_dl3021": RigolDL3021,
}


def build_bench(models: Path) -> Bench:
    devices, wiring = load_models(models)
    bench = Bench(wiring)
    for name, spec in devices.items():
        kind = KINDS.get(name, Instrument)
        bench.instruments[name] = kind(spec, bench)
    return bench


async def serve_socket(inst: Instrument, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    """Raw SOCKET: one program message per line, one response line per message that asks."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            if sock is not None:
                quick_ack(sock)
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                # A line longer than the input buffer: a real instrument reports the overrun
                # and discards the message; so do we, up to its end.
                inst.push_error(ScpiError(-363, "message longer than 64 KiB"))
                await _discard_line(reader)
                continue
            except asyncio.IncompleteReadError:
                break
            reply = inst.handle(raw.decode("utf-8", "replace").rstrip("\r\n"))
            if reply is not None:
                writer.write(reply.encode() + b"\n")
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def quick_ack(sock: socket.socket) -> None:
    """Acknowledge what arrives at once instead of after Linux's 40 ms delayed-ACK timer.

    A client that writes a command and then a query (a setting, then SYST:ERR?) sends the
    query only when the command's ACK is back (Nagle), and pyvisa-py cannot turn Nagle off on
    a SOCKET session; without this each such pair costs ~40 ms. Linux drops quick-ack mode
    on its own, so it is set again before each read.
    """
    if hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


async def _discard_line(reader: asyncio.StreamReader) -> None:
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)


Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


Clients = dict["asyncio.Task[None]", asyncio.StreamWriter]


def tracked(handler: Connection, clients: Clients) -> Connection:
    """Remember each client's task and writer, so shutting down can end them cleanly."""

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        clients[task] = writer
        try:
            await handler(reader, writer)
        finally:
            clients.pop(task, None)

    return run


async def serve(models: Path, host: str = "127.0.0.1", wanted: dict[str, int] | None = None,
                record: Path | None = None) -> None:
    """Serve until stdin closes, or, with `record`, until SIGTERM: the agent then writes no
    stdin, and the bench outlives it (a restarted agent adopts it through the record)."""
    bench = build_bench(models)
    ports: dict[str, int] = {}
    servers = []
    clients: Clients = {}
    wanted = wanted or {}
    for name, inst in bench.instruments.items():
        raw = await asyncio.start_server(
            tracked(functools.partial(serve_socket, inst), clients), host,
            wanted.get(name, 0), limit=MAX_LINE)
        framed = await asyncio.start_server(tracked(HislipServer(inst).serve, clients), host,
                                            wanted.get(f"{name}_hislip", 0))
        servers += [raw, framed]
        ports[name] = raw.sockets[0].getsockname()[1]
        ports[f"{name}_hislip"] = framed.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    if record is not None:
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "ports": ports}))
        os.replace(tmp, record)
        def on_term() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_signal_handler(signal.SIGTERM, on_term)
    else:
        # Tied to whoever started us: its end of our stdin closing ends us.
        def on_stdin() -> None:
            if not done.done() and os.read(sys.stdin.fileno(), 4096) == b"":
                done.set_result(None)

        loop.add_reader(sys.stdin.fileno(), on_stdin)
    print(json.dumps(ports), flush=True)
    await done
    for server in servers:
        server.close()
    # Closing each client's transport lets its handler see EOF and return, instead of being
    # cancelled mid-read (which asyncio reports as an error for each open connection).
    for writer in clients.values():
        writer.transport.abort()
    if clients:
        await asyncio.wait(list(clients), timeout=2)


def main() -> None:
    """`python -m box_agent.simbench [MODELS] [--ports JSON] [--record FILE]`"""
    args = sys.argv[1:]
    wanted: dict[str, int] = {}
    record = None
    if "--ports" in args:
        i = args.index("--ports")
        wanted = json.loads(args[i + 1])
        del args[i:i + 2]
    if "--record" in args:
        i = args.index("--record")
        record = Path(args[i + 1])
        del args[i:i + 2]
    models = Path(args[0]) if args else MODELS
    asyncio.run(serve(models, wanted=wanted, record=record))


if __name__ == "__main__":
    main()
