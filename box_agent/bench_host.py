"""The bench the agent serves: a real one from --bench, or the simulated bench it starts."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from lager import protocol
from lager.bench.config import load_bench
from lager.errors import LagerError

SIM_NETS = Path(__file__).parent / "simbench" / "models" / "nets.yaml"


class BenchHost:
    def __init__(self, config_path: Path, claims_dir: Path,
                 sim: asyncio.subprocess.Process | None) -> None:
        self.config_path = config_path
        self.claims_dir = claims_dir
        self.sim = sim

    @classmethod
    async def start(cls, bench_file: Path | None, state_dir: Path,
                    claims_dir: Path) -> BenchHost:
        sim = None
        if bench_file is None:
            sim, ports = await _start_simulator()
            bench_file = state_dir / "bench-simulated.yaml"
            text = SIM_NETS.read_text()
            for device, port in ports.items():
                text = text.replace("{" + device + "}", str(port))
            bench_file.write_text(text)
        host = cls(bench_file.resolve(), claims_dir, sim)
        # The agent's own instrument commands use the same bench and claims as scripts do.
        os.environ.update(host.script_env())
        try:
            load_bench(host.config_path)
        except LagerError:
            await host.stop()
            raise
        return host

    def script_env(self) -> dict[str, str]:
        return {protocol.ENV_CLAIMS_DIR: str(self.claims_dir),
                protocol.ENV_BENCH_CONFIG: str(self.config_path)}

    async def stop(self) -> None:
        if self.sim is not None and self.sim.returncode is None:
            assert self.sim.stdin is not None
            self.sim.stdin.close()  # its stdin closing is what tells the simulator to end
            try:
                await asyncio.wait_for(self.sim.wait(), 5)
            except TimeoutError:
                self.sim.kill()
                await self.sim.wait()


async def _start_simulator() -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "box_agent.simbench", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    try:
        ports = json.loads(line)
    except ValueError:
        proc.kill()
        raise LagerError("the simulated bench did not start") from None
    return proc, ports
