"""The bench the agent serves: a real one from --bench, or the simulated bench it starts."""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from lager import protocol
from lager.bench import claims, saved_nets
from lager.bench.net import use_bench
from lager.errors import LagerError

log = logging.getLogger("lager-box.bench")
SIM_NETS = Path(__file__).parent / "simbench" / "models" / "nets.yaml"


SIM_RECORD = "simbench.json"  # the running simulator's pid and ports, in the state dir
WATCH_EVERY = 2.0  # seconds between looks at the simulator


class BenchHost:
    def __init__(self, config_path: Path, claims_dir: Path, sim: Simulator | None) -> None:
        self.config_path = config_path
        self.claims_dir = claims_dir
        self.sim = sim
        self._watchdog: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, bench_file: Path | None, state_dir: Path,
                    claims_dir: Path) -> BenchHost:
        sim = None
        if bench_file is None:
            sim = await Simulator.adopt_or_start(state_dir / SIM_RECORD)
            bench_file = state_dir / "bench-simulated.yaml"
            text = SIM_NETS.read_text()
            for device, port in sim.ports.items():
                text = text.replace("{" + device + "}", str(port))
            bench_file.write_text(text)
        host = cls(bench_file.resolve(), claims_dir, sim)
        # The agent's own instrument commands use the same bench and claims as scripts do:
        # given to lager.bench here, and to scripts in their env (script_env).
        host.saved_nets_path().parent.mkdir(mode=0o755, exist_ok=True)
        claims.use_claims_dir(claims_dir)
        saved_nets.use_saved_nets(host.saved_nets_path())
        try:
            use_bench(host.config_path)
        except LagerError:
            await host.stop()
            raise
        if sim is not None:
            host._watchdog = asyncio.ensure_future(sim.watch())
        return host

    def script_env(self) -> dict[str, str]:
        return {protocol.ENV_CLAIMS_DIR: str(self.claims_dir),
                protocol.ENV_BENCH_CONFIG: str(self.config_path),
                protocol.ENV_SAVED_NETS: str(self.saved_nets_path())}

    def saved_nets_path(self) -> Path:
        """The nets scripts save (Net.save_local_net): in a dir of their own in the state dir,
        the one place of it every run may write (box_agent/privsep.py)."""
        return self.claims_dir.parent / "saved-nets" / protocol.SAVED_NETS_FILE

    async def stop(self) -> None:
        """The agent is going: the simulated bench stays, for the runs that outlive us."""
        if self._watchdog is not None:
            self._watchdog.cancel()


class Simulator:
    """The simulated bench's process: its own session, so it outlives an agent crash (the
    runs using it do too); the record in the state dir lets the next agent adopt it."""

    def __init__(self, record: Path, pid: int, ports: dict[str, int]) -> None:
        self.record = record
        self.pid = pid
        self.ports = ports

    @classmethod
    async def adopt_or_start(cls, record: Path) -> Simulator:
        known = _read_record(record)
        if known and _is_simulator(int(known["pid"])):
            return cls(record, int(known["pid"]), dict(known["ports"]))
        # Same ports as before when we can: a script's open instruments then keep working.
        wanted = dict(known["ports"]) if known else {}
        try:
            return await cls._start(record, wanted)
        except LagerError:
            if not wanted:
                raise
            return await cls._start(record, {})

    @classmethod
    async def _start(cls, record: Path, wanted: dict[str, int]) -> Simulator:
        record.unlink(missing_ok=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "box_agent.simbench", "--ports", json.dumps(wanted),
            "--record", str(record), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, start_new_session=True)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            ports = json.loads(line)
        except (ValueError, TimeoutError):
            if proc.returncode is None:
                proc.kill()
            raise LagerError("the simulated bench did not start") from None
        # We read nothing more from it; its exit is reaped by asyncio's child watcher.
        asyncio.ensure_future(proc.wait())  # noqa: RUF006
        return cls(record, proc.pid, ports)

    async def watch(self) -> None:
        """Restart the simulator if it really died (on the same ports), and say so."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            if _is_simulator(self.pid):
                continue
            log.warning("the simulated bench (pid %d) died; restarting it", self.pid)
            try:
                fresh = await Simulator._start(self.record, self.ports)
            except LagerError as exc:
                log.warning("cannot restart the simulated bench: %s", exc)
                continue
            self.pid, self.ports = fresh.pid, fresh.ports


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data and "ports" in data else None


def _is_simulator(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"box_agent.simbench" in f.read()
    except (OSError, IndexError):
        return False
