"""SCPI round trips to the simulated bench, beside baselines measured in the same run.

Prints one table of medians (and 90th percentiles); nothing is asserted. The target is a
median SCPI round trip through pyvisa-py of at most 0.5 ms. Baselines: a line echoed by an
asyncio server in its own process (the transport and event loop alone), plain socket and
through pyvisa-py (pyvisa's own share).
Run: .venv/bin/python bench/scpi_bench.py [--quick]   (from the repository root)
"""
from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pyvisa

from lager.bench.config import InstrumentSpec
from lager.bench.session import InstrumentSession

QUICK = "--quick" in sys.argv
N = 500 if QUICK else 3000

ECHO_SERVER = """
import asyncio, sys

async def echo(reader, writer):
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()

async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def measure(call: Callable[[], object], n: int = N) -> tuple[float, float]:
    for _ in range(min(200, n)):  # warm up: caches, allocators, TCP windows
        call()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1e3, times[int(len(times) * 0.9)] * 1e3


def socket_echo(port: int) -> Callable[[], object]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rb")

    def call() -> bytes:
        sock.sendall(b"*OPC?\n")
        return stream.readline()

    return call


def main() -> None:
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    sim = subprocess.Popen([sys.executable, "-m", "box_agent.simbench"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None and sim.stdout is not None
    echo_port = int(echo.stdout.readline())
    ports = json.loads(sim.stdout.readline())
    rm = pyvisa.ResourceManager("@py")

    def raw(port: int) -> Any:
        return rm.open_resource(f"TCPIP0::127.0.0.1::{port}::SOCKET", read_termination="\n",
                                write_termination="\n", timeout=5000)

    def hislip(device: str) -> Any:
        return rm.open_resource(f"TCPIP0::127.0.0.1::hislip0,{ports[device + '_hislip']}::INSTR",
                                timeout=5000)

    echo_visa, dp, daq, dmm_h, dp_h = (raw(echo_port), raw(ports["rigol_dp821"]),
                                       raw(ports["keithley_daq6510"]), hislip("keysight_34461a"),
                                       hislip("rigol_dp821"))

    def set_and_check() -> None:
        dp.write(":SOUR1:VOLT 1.250")
        assert dp.query(":SYST:ERR?") == '0,"No error"'

    lager = InstrumentSession(InstrumentSpec(
        "dp821", "rigol_dp821", f"TCPIP0::127.0.0.1::{ports['rigol_dp821']}::SOCKET"))

    rows = [
        ("baseline: line echo, plain socket", measure(socket_echo(echo_port))),
        ("baseline: line echo, pyvisa-py SOCKET", measure(lambda: echo_visa.query("*OPC?"))),
        ("simbench *OPC?, pyvisa-py SOCKET", measure(lambda: dp.query("*OPC?"))),
        ("simbench :MEAS:ALL? CH1, SOCKET", measure(lambda: dp.query(":MEAS:ALL? CH1"))),
        ("simbench :SOURce1:VOLTage:LEVel? long form", measure(
            lambda: dp.query(":SOURce1:VOLTage:LEVel:IMMediate:AMPLitude?"))),
        ("simbench :MEAS:VOLT? (@101:103), DAQ6510",
         measure(lambda: daq.query(":MEAS:VOLT? (@101:103)"))),
        ("simbench *OPC?, pyvisa-py HiSLIP", measure(lambda: dp_h.query("*OPC?"))),
        ("simbench MEAS:VOLT:DC? DEF,DEF, HiSLIP 34461A",
         measure(lambda: dmm_h.query("MEAS:VOLT:DC? DEF,DEF"))),
        ("setting + :SYST:ERR?, pyvisa-py (2 trips)", measure(set_and_check, N // 2)),
        ("lager driver setting (configure, 2 trips)",
         measure(lambda: lager.configure("supply2", ":SOUR1:VOLT 1.250"), N // 2)),
        ("lager driver read (:MEAS:VOLT? CH1)",
         measure(lambda: lager.query_float("supply2", ":MEAS:VOLT? CH1"))),
    ]
    lager.close()
    for res in (echo_visa, dp, daq, dmm_h, dp_h):
        res.close()
    for proc in (sim, echo):
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)

    print(f"SCPI round trips, {N} each (target: simbench via pyvisa-py median <= 0.5 ms)")
    print(f"{'exchange':48} {'median ms':>10} {'p90 ms':>8}")
    for name, (median, p90) in rows:
        print(f"{name:48} {median:10.3f} {p90:8.3f}")


if __name__ == "__main__":
    main()
