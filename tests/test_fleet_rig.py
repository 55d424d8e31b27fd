"""The fleet tests' rig (no tests here): several real agents on loopback, each with its own
keys in a temp dir, one laptop config dir with them added as bench01.. and grouped, and the
real `lager` CLI. Plus the unfriendly boxes: nothing listening, a black hole, a delay proxy."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import CI_VARIABLES, LAGER, LAGER_BOX, Agent, start_agent

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Laptop:
    config_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The venv's bin first, as in a shell where lager's venv is active: ansible-inventory
        # (a test dependency) is found on PATH, as lager looks for it.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "LAGER_CONFIG_DIR": str(self.config_dir), "LAGER_MUX": "0",
                    "PATH": path}
        for name in ("LAGER_BOX", "LAGER_INVENTORY", *CI_VARIABLES):
            self.env.pop(name, None)

    def run(self, *args: str, input: str | None = None, timeout: float = 120,
            env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAGER, *args], env=env or self.env, input=input,
                              capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([LAGER, *args], env=self.env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=cwd)

    def add(self, name: str, host: str, port: int, *groups: str) -> None:
        flags = [a for g in groups for a in ("--group", g)]
        done = self.run("boxes", "add", name, "--host", host, "--port", str(port), *flags)
        assert done.returncode == 0, done.stderr

    def public_key(self) -> Path:
        return self.config_dir / "id_ed25519.pub"


def authorize(agent: Agent, laptop: Laptop) -> None:
    subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(agent.state_dir),
                    str(laptop.public_key())], check=True, capture_output=True)


@dataclass
class Rig:
    laptop: Laptop
    agents: dict[str, Agent]

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()

    @staticmethod
    def laptop_cmd(*args: str) -> list[str]:
        return [LAGER, *args]


def start_rig(tmp: Path, count: int, groups: dict[str, list[str]] | None = None) -> Rig:
    """bench01..benchNN, each its own agent; groups: {box: [group, ...]}."""
    laptop = Laptop(tmp / "laptop")
    agents: dict[str, Agent] = {}
    try:
        for i in range(1, count + 1):
            name = f"bench{i:02d}"
            where = tmp / name
            where.mkdir(parents=True)
            agents[name] = start_agent(where / "state")
        for name, agent in agents.items():
            laptop.add(name, agent.host, agent.port, *(groups or {}).get(name, []))
            authorize(agent, laptop)
    except BaseException:
        for agent in agents.values():
            agent.stop()
        raise
    return Rig(laptop, agents)


def runs_on(agent: Agent, laptop: Laptop, box: str) -> list[dict[str, object]]:
    done = laptop.run("python", "--list", "--json", "--box", box)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


@contextlib.contextmanager
def delay_proxy(agent: Agent, delay_ms: int) -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "delay_proxy.py"),
                             "--delay-ms", str(delay_ms), "--to", f"{agent.host}:{agent.port}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("delay-proxy listening on "), line
        yield int(line.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        proc.wait(10)
