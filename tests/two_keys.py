"""Two laptops with keys of their own on one real agent: the set-up the shared-box tests share
(tests/test_reservations*.py). A holds the box with HOLDER's paused run; B is the other key."""
from __future__ import annotations

import copy
import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Agent, Client, LiveRun, make_client, start_agent, start_run, write_script

RESERVED = 75

# A's run, as the issue has it: supply2 set to 3.3 V, enabled and closed; supply1 (the
# Keithley) still open in the run, so the spec's busy rule applies to it; then a pause.
HOLDER = """\
from lager import Net, NetType, pause
with Net.get("supply2", type=NetType.PowerSupply) as psu:
    psu.set_voltage(3.3)
    psu.enable()
held = Net.get("supply1", type=NetType.PowerSupply)
print("holding", flush=True)
pause("A holds the box", timeout=600)
held.close()
print("A done", flush=True)
"""
QUICK = "print('{name} ran', flush=True)\n"
WAITER = """\
from lager import pause
print("{name} started", flush=True)
pause("{name} turn", timeout=600)
print("{name} done", flush=True)
"""


@dataclass
class Pair:
    agent: Agent
    a: Client
    b: Client
    root: Path

    def restart(self, kill: bool) -> None:
        if kill:
            self.agent.proc.send_signal(signal.SIGKILL)
            self.agent.proc.wait()
        else:
            self.agent.stop(keep_runs=True)
        self.agent = start_agent(self.root / "state", listen=f"127.0.0.1:{self.agent.port}")
        self.a.agent = self.b.agent = self.agent
        for laptop in (self.a, self.b):
            # A request that is safe to send twice: the connection keeper finds the new agent
            # (a lock or unlock is never re-sent on a keeper's lost answer).
            assert laptop.run("python", "--list").returncode == 0


@pytest.fixture(name="pair")
def pair_fixture(tmp_path: Path) -> Iterator[Pair]:
    agent = start_agent(tmp_path / "state")
    found = Pair(agent, make_client(tmp_path / "a", agent), make_client(tmp_path / "b", agent),
                 tmp_path)
    try:
        yield found
    finally:
        found.agent.stop()


def env_of(client: Client, **extra: str) -> Client:
    """The same laptop (same key) with more variables set: a CI job, or a spoofer."""
    other = copy.copy(client)
    other.env = {**client.env, **extra}
    return other


def rows(client: Client) -> list[dict]:
    listed = client.run("python", "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)  # type: ignore[no-any-return]


def run_row(client: Client, run_id: str) -> dict:
    """The --list row of a run, by its id or the banner's short form of it."""
    return next(r for r in rows(client) if run_id in (r["id"], r["short_id"]))


def fingerprint(client: Client) -> str:
    """The key's SHA256 fingerprint as the box names it (from a run it started)."""
    script = write_script(client.config_dir, "who.py", "print('me')\n")
    done = client.run("python", str(script))
    assert done.returncode == 0, done.stderr
    return next(r for r in reversed(rows(client)) if r["script"].endswith("who.py")) \
        ["started_by"]["fingerprint"]


def hold_box(pair: Pair) -> tuple[LiveRun, str]:
    script = write_script(pair.root, "holder.py", HOLDER)
    run = start_run(pair.a, script)
    run.out.wait_for("holding")
    return run, run.banner_id()


def status(client: Client) -> dict:
    answer = client.run("boxes", "status", "--json")
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)  # type: ignore[no-any-return]


def refused_naming(result: subprocess.CompletedProcess[str], who: str, run_id: str | None) -> str:
    """One line, exit 75, naming the holder's key and the run, and the remedy."""
    assert result.returncode == RESERVED, (result.returncode, result.stdout, result.stderr)
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, result.stderr
    assert who in line and "since" in line and "--wait" in line and "lager boxes status" in line
    if run_id is not None:
        assert f"run {run_id}" in line
    return line
