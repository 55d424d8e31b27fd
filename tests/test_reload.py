"""`lager-box reload` (issue 19, deploy gap 1), without systemd: a real agent, the real `lager`.

`reload` returns once the new agent serves: a login and `--list` work the moment it exits 0,
with no wait. A new agent that refuses its arguments, or never takes over, makes it exit 1 in
one line while the old agent keeps serving and a paused run stays paused. The same command is
the unit's ExecReload (tests/test_deploy.py checks it under systemd).
"""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    LAGER_BOX,
    Agent,
    Client,
    LiveRun,
    make_client,
    start_agent,
    start_run,
    wait_for,
    write_script,
)

PAUSED = "from lager import pause\nprint('before', flush=True)\npause('reload here')\nprint('after')\n"


def _reload(agent: Agent, tmp: Path, *serve_extra: str, timeout: str = "120",
            serve: tuple[str, ...] | None = None) -> tuple[int, str]:
    """`lager-box reload` as ExecReload runs it; its exit status and its own lines (the new
    agent inherits its stdout and stderr, so they go to a file, as to the journal)."""
    command = serve if serve is not None else (
        LAGER_BOX, "serve", "--listen", f"{agent.host}:{agent.port}", "--state-dir",
        str(agent.state_dir), "--name", "testbox", *serve_extra)
    log = tmp / "reload.log"
    with open(log, "w") as out:
        code = subprocess.run([LAGER_BOX, "reload", "--state-dir", str(agent.state_dir),
                               "--timeout", timeout, "--", *command],
                              stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                              timeout=300).returncode
    return code, log.read_text()


def _direct(client: Client) -> Client:
    """The same laptop without its connection keeper: every command is a new login."""
    direct = Client(client.config_dir, client.agent, client.box)
    direct.env["LAGER_MUX"] = "0"
    return direct


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def paused(tmp_path: Path) -> Iterator[tuple[Agent, Client, LiveRun, str]]:
    agent = start_agent(tmp_path / "state")
    successors: list[int] = []
    try:
        client = make_client(tmp_path / "laptop", agent)
        run = start_run(client, write_script(tmp_path, "p.py", PAUSED))
        ident = run.banner_id(60)
        yield agent, client, run, ident
    finally:
        for pid in _agents_on(agent.state_dir):
            if pid != agent.proc.pid:
                successors.append(pid)
                os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not any(_alive(p) for p in successors), 60, what="the new agents' exit")
        agent.stop()


def _agents_on(state_dir: Path) -> list[int]:
    from conftest import pids_with_cmdline

    return pids_with_cmdline("lager-box", "serve", str(state_dir))


def test_reload_returns_once_the_new_agent_serves(paused, tmp_path: Path) -> None:
    agent, client, run, ident = paused
    code, said = _reload(agent, tmp_path, "--max-auth-tries", "5")
    assert code == 0, said
    line = [x for x in said.splitlines() if x.startswith("lager-box reload:")]
    assert len(line) == 1 and "serves" in line[0], said
    new_pid = int(line[0].split("pid ", 1)[1].split(")")[0])
    # No wait: a new login, and the run list from the new agent, work at once.
    listed = _direct(client).run("python", "--list")
    assert listed.returncode == 0 and ident in listed.stdout and "paused" in listed.stdout, listed
    cmdline = Path(f"/proc/{new_pid}/cmdline").read_bytes().split(b"\0")
    assert b"--replace" in cmdline and b"--max-auth-tries" in cmdline, cmdline
    assert agent.proc.wait(60) == 0  # the old agent handed over and left
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish(60) == 0 and run.out.text == "before\nafter\n"


@pytest.mark.parametrize("broken", ["arguments", "never_takes_over", "missing"])
def test_a_broken_upgrade_fails_and_the_old_agent_keeps_serving(
        paused, tmp_path: Path, broken: str) -> None:
    agent, client, run, ident = paused
    if broken == "arguments":  # a serve option the new agent refuses (a unit's typo)
        code, said = _reload(agent, tmp_path, "--run-log-limit", "lots")
        reason = "exited (status 2) before it took over"
    elif broken == "never_takes_over":  # hangs before asking for the socket
        code, said = _reload(agent, tmp_path, timeout="2",
                             serve=("sh", "-c", "sleep 600; :", str(tmp_path)))
        reason = "did not take over within 2 s and was killed"
    else:
        code, said = _reload(agent, tmp_path, serve=(str(tmp_path / "no-such-agent"),))
        reason = "cannot start the new agent"
    assert code == 1, said
    line = [x for x in said.splitlines() if x.startswith("lager-box reload:")]
    assert len(line) == 1 and reason in line[0], said
    assert "the running agent keeps serving" in line[0]
    assert agent.proc.poll() is None  # the old agent serves on
    assert _agents_on(agent.state_dir) == [agent.proc.pid]
    # The hung one was killed with its process group (`sh` names tmp_path: only ours).
    assert not [p for p in _pids_running("sleep 600; :", str(tmp_path)) if _alive(p)]
    listed = _direct(client).run("python", "--list")
    assert listed.returncode == 0 and ident in listed.stdout and "paused" in listed.stdout, listed
    # ... and can still be upgraded for real afterwards.
    code, said = _reload(agent, tmp_path)
    assert code == 0, said
    assert agent.proc.wait(60) == 0
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish(60) == 0 and run.out.text == "before\nafter\n"


def _pids_running(*needles: str) -> list[int]:
    from conftest import pids_with_cmdline

    return pids_with_cmdline(*needles)


def test_reload_with_no_agent_running_says_so(tmp_path: Path) -> None:
    result = subprocess.run([LAGER_BOX, "reload", "--state-dir", str(tmp_path), "--",
                             LAGER_BOX, "serve"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"lager-box reload: no agent runs on {tmp_path} (no agent.sock): nothing to reload; "
        "start one with `lager-box serve`")
    missing = subprocess.run([LAGER_BOX, "reload", "--state-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "SERVE_COMMAND" in missing.stderr
