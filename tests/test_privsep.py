"""Privilege separation (issue 10): scripts run under a uid of their own, never as the agent.

The agent runs as root here with `--run-as nobody`; each run gets a fresh uid, so a script can
read neither the host key nor another run's files, cannot leave a key in authorized_keys, and
still shares the bench (claims and busy messages) with the other runs.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Agent, Client, make_client, start_agent, start_run, wait_for, write_script

if os.geteuid() != 0:
    if os.environ.get("CI") == "true":
        raise RuntimeError("the privilege-separation tier needs root in CI (it switches users)")
    pytest.skip("privilege separation needs root to switch users", allow_module_level=True)


def _let_runs_reach(path: Path) -> None:
    """A box installs the agent where every user can read it (/opt/lager in the image). Here
    Python may live under /root (pyenv), 0700: give its ancestors the pass-through bit only."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if parent.is_dir() and not mode & 0o001:
            os.chmod(parent, mode | 0o001)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Agent, Client, Path]]:
    import sys

    import lager
    _let_runs_reach(Path(os.path.realpath(sys.executable)).parent)
    _let_runs_reach(Path(lager.__file__).resolve().parent)
    # pytest's tmp dirs are 0700 root; a run's uid must be able to walk to its own run dir.
    root = Path(tempfile.mkdtemp(prefix="lager-privsep-"))
    os.chmod(root, 0o711)
    agent = start_agent(root / "state", "--run-as", "nobody")
    laptop = make_client(root / "laptop", agent)
    yield agent, laptop, root
    agent.stop()
    shutil.rmtree(root, ignore_errors=True)


HOLDER = """
import os, pathlib
from lager import Net, NetType, pause
pathlib.Path("secret.txt").write_text("run A's data")
supply = Net.get("supply2", type=NetType.PowerSupply)
print("uid", os.getuid(), "pid", os.getpid(), flush=True)
pause("hold", timeout=0)
"""

PROBE = """
import json, os, pathlib, sys
from lager import Net, NetType, LagerError
state, other_pid, other_id = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
tries = {
    "read host key": lambda: (state / "ssh_host_ed25519_key").read_bytes(),
    "append authorized_keys": lambda: (state / "authorized_keys").open("a").write("ssh-ed25519 AAAA x\\n"),
    "list the state dir": lambda: os.listdir(state),
    "list the runs": lambda: os.listdir(state / "runs"),
    "read another run's dir": lambda: (state / "runs" / other_id / "secret.txt").read_text(),
    "read through /proc/PID/cwd": lambda: pathlib.Path(f"/proc/{other_pid}/cwd/secret.txt").read_text(),
    "read another run's environ": lambda: pathlib.Path(f"/proc/{other_pid}/environ").read_bytes(),
}
result = {}
for what, attempt in tries.items():
    try:
        attempt()
        result[what] = "ALLOWED"
    except PermissionError:
        result[what] = "denied"
try:
    Net.get("supply2", type=NetType.PowerSupply)
    result["supply2"] = "opened"
except LagerError as exc:
    result["supply2"] = str(exc)
with Net.get("supply1", type=NetType.PowerSupply) as s3:
    s3.set_voltage(1.5)
    result["supply1"] = s3.state().set_voltage
result["uid"] = os.getuid()
result["ids"] = [os.getgid(), os.getegid(), *os.getgroups()]
print(json.dumps(result))
"""


def test_a_script_cannot_reach_the_agent_or_another_run(world: tuple[Agent, Client, Path],
                                                        tmp_path: Path) -> None:
    agent, laptop, _ = world
    holder = start_run(laptop, write_script(tmp_path, "holder.py", HOLDER))
    holder_id = holder.banner_id()
    words = holder.out.wait_for("pid").split()
    holder_uid, holder_pid = int(words[1]), words[3]
    rows = json.loads(laptop.run("python", "--list", "--json").stdout)
    full_id = next(r["id"] for r in rows if r["state"] == "paused")
    probe = laptop.run("python", str(write_script(tmp_path, "probe.py", PROBE)),
                       str(agent.state_dir), holder_pid, full_id)
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.splitlines()[-1])  # after state()'s printed block
    denied = {k: v for k, v in result.items() if v in ("denied", "ALLOWED")}
    assert set(denied.values()) == {"denied"}, result
    assert len(denied) == 7
    # Each run has a uid of its own, neither root nor the holder's.
    assert result["uid"] not in (0, holder_uid) and holder_uid != 0
    assert 0 not in result["ids"], "root's groups must not follow the script"
    # The bench is still shared: the busy rule names the holder, a free instrument just works.
    assert "busy" in result["supply2"] and "holder.py" in result["supply2"], result
    assert result["supply1"] == 1.5
    assert laptop.run("python", "--continue", holder_id).returncode == 0
    assert holder.finish() == 0
    # Nothing a script could write reached the agent's keys.
    assert "AAAA x" not in (agent.state_dir / "authorized_keys").read_text()


def test_run_dirs_are_private_and_the_log_says_separation_is_on(
        world: tuple[Agent, Client, Path], tmp_path: Path) -> None:
    agent, laptop, _ = world
    script = write_script(tmp_path, "whoami.py", "import os\nprint(os.getuid(), os.stat('.').st_mode & 0o777)\n")
    first = laptop.run("python", str(script))
    second = laptop.run("python", str(script))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    uid1, mode1 = first.stdout.split()
    uid2, _ = second.stdout.split()
    assert uid1 != uid2 and mode1 == str(0o700)
    assert "privilege separation is off" not in agent.log()


def test_an_agent_without_run_as_says_separation_is_off(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "state")
    try:
        wait_for(lambda: "privilege separation is off" in agent.log(), 10,
                 what="the warning at start")
    finally:
        agent.stop()
