"""The simulated bench: pyvisa-sim instruments served as SCPI over TCP on loopback.

pyvisa-sim keeps state per process, so the bench is one process that every script, the agent
and every terminal reach through pyvisa-py with ordinary TCPIP SOCKET resources, and all of
them see the same instrument state. Run: `python -m box_agent.simbench [MODELS]`; it prints one
JSON line {device name: port} when listening and exits when its stdin closes (its agent died).
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from pathlib import Path

from pyvisa_sim.devices import Device
from pyvisa_sim.parser import get_devices

from .physics import RULES

MODELS = Path(__file__).with_name("models") / "bench.yaml"
MAX_LINE = 64 * 1024


class SimInstrument:
    def __init__(self, name: str, device: Device) -> None:
        self.name = name
        self.device = device
        self.rules = RULES.get(name, [])

    def _raw(self, command: str) -> str | None:
        self.device.write(command.encode() + b"\n")
        out = bytearray()
        while True:
            byte, end = self.device.read()
            if not byte:
                break
            out += byte
            if end:
                break
        return out.decode().rstrip("\n") if out else None

    def _ask(self, query: str) -> str:
        return self._raw(query) or ""

    def handle(self, line: str) -> str | None:
        """One SCPI message in; the reply for a query, None for a command."""
        replies = []
        for part in (p.strip() for p in line.split(";")):
            if not part:
                continue
            if "?" not in part:
                # Instruments do not answer commands; an unknown one goes to their error queue.
                self._raw(part)
                continue
            for pattern, rule in self.rules:
                match = pattern.match(part)
                if match:
                    replies.append(rule(match, self._ask))
                    break
            else:
                replies.append(self._raw(part) or "")
        return ";".join(replies) if replies else None


async def _serve_client(inst: SimInstrument, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                break
            except asyncio.IncompleteReadError:
                break
            reply = inst.handle(raw.decode("utf-8", "replace").strip())
            if reply is not None:
                writer.write(reply.encode() + b"\n")
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(models: Path, host: str = "127.0.0.1") -> None:
    devices = get_devices(models, False)
    ports: dict[str, int] = {}
    servers = []
    for resource in devices.list_resources():
        device = devices[resource]
        inst = SimInstrument(device.name, device)
        server = await asyncio.start_server(
            functools.partial(_serve_client, inst), host, 0, limit=MAX_LINE)
        servers.append(server)
        ports[device.name] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()
    # Tied to the agent's lifetime: the agent holds our stdin, and its end closing ends us.

    def on_stdin() -> None:
        if not stdin_closed.done() and os.read(sys.stdin.fileno(), 4096) == b"":
            stdin_closed.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stdin_closed
    for server in servers:
        server.close()


def main() -> None:
    models = Path(sys.argv[1]) if len(sys.argv) > 1 else MODELS
    asyncio.run(serve(models))


if __name__ == "__main__":
    main()
