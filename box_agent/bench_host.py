"""The bench the agent serves: a real one from --bench, or the simulated bench it starts."""
from __future__ import annotations

from pathlib import Path

from lager import protocol


class BenchHost:
    def __init__(self, config_path: Path | None, claims_dir: Path) -> None:
        self.config_path = config_path
        self.claims_dir = claims_dir

    @classmethod
    async def start(cls, bench_file: Path | None, claims_dir: Path) -> "BenchHost":
        return cls(bench_file, claims_dir)

    def script_env(self) -> dict[str, str]:
        env = {protocol.ENV_CLAIMS_DIR: str(self.claims_dir)}
        if self.config_path:
            env[protocol.ENV_BENCH_CONFIG] = str(self.config_path)
        return env

    async def stop(self) -> None:
        return None
