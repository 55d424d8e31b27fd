"""What a box keeps of its runs (issue 11), as configured: `lager-box serve --run-log-limit`
bounds each run's output log (newest bytes kept, a reattach says how many went), and
`--keep-finished` / `--keep-finished-runs` bound how long and how many finished runs stay
listable. Real agents, real runs under both monitors (C, and Python with
LAGER_BOX_PYTHON_MONITOR=1), the real `lager` client and OpenSSH's `ssh -s attach`; the
deploy role's variables go through the real Ansible into the unit's ExecStart.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    BIN,
    LAGER_BOX,
    Agent,
    Client,
    make_client,
    runs_by_id,
    start_agent,
    wait_for,
    write_script,
)
from sshclients import openssh

from box_agent import monitor_build

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "deploy" / "ansible" / "roles" / "lager_box"
MiB = 1 << 20
LINES = 65536  # of 64 bytes: 4 MiB of stdout, four times the 1M limit
DROPPED = re.compile(r"^lager: \[(\d+) bytes of earlier output were dropped from the box's "
                     r"log\]\n", re.MULTILINE)
# asyncssh's import sets off cryptography's DSA deprecation warning on every start of
# lager-box: third-party noise, not our message, so it is silenced by its exact text.
QUIET_IMPORTS = {"PYTHONWARNINGS": "ignore:DSA is deprecated"}

# Prints 4 MiB of numbered lines once `go` exists (at once without it), and notes which
# program monitors it: its parent's executable.
FLOOD = """
import os, sys, time
from pathlib import Path
Path(sys.argv[1]).write_text(os.readlink(f"/proc/{os.getppid()}/exe"))
go = Path(sys.argv[2]) if len(sys.argv) > 2 else None
while go is not None and not go.exists():
    time.sleep(0.05)
out = sys.stdout
for i in range(LINES):
    out.write(f"line {i:07d} " + "z" * 50 + "\\n")
out.flush()
print("END", file=sys.stderr)
""".replace("LINES", str(LINES))


def expected_stdout() -> str:
    return "".join(f"line {i:07d} " + "z" * 50 + "\n" for i in range(LINES))


@pytest.fixture(params=["c", "python"])
def monitor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The agents a test starts monitor their runs with this program."""
    if request.param == "python":
        monkeypatch.setenv(monitor_build.ENV_PYTHON_MONITOR, "1")
    else:
        monkeypatch.delenv(monitor_build.ENV_PYTHON_MONITOR, raising=False)
    yield request.param


def assert_monitored_by(kind: str, exe_file: Path) -> None:
    exe = exe_file.read_text()
    if kind == "c":
        assert Path(exe).name.startswith("lager-box-monitor-"), exe
    else:
        assert Path(exe).name.startswith("python"), exe


def run_id_of(client: Client, script_name: str) -> str:
    [found] = [r["id"] for r in runs_by_id(client).values() if r["script"].endswith(script_name)]
    return found


def reattach(client: Client, run_id: str) -> tuple[str, str, int | None]:
    """A finished run's output: stdout, stderr without the note, and the note's count."""
    got = client.run("python", "--reattach", run_id, timeout=120)
    assert got.returncode == 0, got.stderr
    note = DROPPED.search(got.stderr)
    return got.stdout, DROPPED.sub("", got.stderr), int(note.group(1)) if note else None


def assert_newest_bytes_kept(stdout: str, stderr: str, dropped: int | None,
                             limit: int) -> None:
    """Only the newest output stayed: a tail of each stream, about `limit` of it (at least the
    limit less the records' 8-byte headers, at most a segment and a record more), and the
    note counts exactly what went."""
    full = expected_stdout()
    assert stderr == "END\n"
    assert full.endswith(stdout) and len(stdout) < len(full)
    kept = len(stdout) + len(stderr)
    assert 0.8 * limit <= kept <= limit + limit // 8 + MiB
    assert dropped == len(full) + len("END\n") - kept


def test_a_small_log_limit_keeps_the_newest_bytes_and_a_reattach_counts_the_rest(
        tmp_path: Path, monitor: str) -> None:
    """--run-log-limit 1M, a run printing 4 MiB: the client that followed it got every byte
    (its window is under the limit, so the limit never drops what it has not seen), and a
    reattach afterwards gets the newest ~1 MiB and says how many bytes were dropped."""
    box = start_agent(tmp_path / "state", "--run-log-limit", "1M")
    try:
        laptop = make_client(tmp_path / "laptop", box)
        script = write_script(tmp_path, "flood.py", FLOOD)
        followed = laptop.run("python", str(script), str(tmp_path / "exe"), timeout=180)
        assert followed.returncode == 0, followed.stderr[-2000:]
        assert followed.stdout == expected_stdout()
        assert followed.stderr.endswith("END\n") and not DROPPED.search(followed.stderr)
        assert_monitored_by(monitor, tmp_path / "exe")
        run_id = run_id_of(laptop, "flood.py")
        kept = reattach(laptop, run_id)
        assert_newest_bytes_kept(*kept, limit=MiB)
        # OpenSSH's own client on the attach subsystem: the same bytes and the same count.
        plain = openssh(laptop, "attach", f"{run_id}\n", timeout=120)
        assert plain.returncode == 0, plain.stderr[-2000:]
        note = DROPPED.search(plain.stderr.decode())
        assert note is not None and int(note.group(1)) == kept[2]
        assert plain.stdout.decode() == kept[0]
        assert DROPPED.sub("", plain.stderr.decode()) == kept[1]
        monitor_dir = box.state_dir / "runs" / f"{run_id}.monitor"
        on_disk = sum(p.stat().st_size for p in monitor_dir.glob("log.*"))
        assert on_disk <= MiB + MiB // 8 + MiB
    finally:
        box.stop()


@pytest.mark.parametrize("restart", ["sigterm", "replace"])
def test_a_run_keeps_its_log_limit_across_an_agent_restart(tmp_path: Path, monitor: str,
                                                           restart: str) -> None:
    """A run started under --run-log-limit 1M keeps that limit when the agent is restarted
    (SIGTERM then start, or --replace) without the option: its monitor holds it, and the new
    agent reads it from the run's record. A run the new agent starts has the default (64M)
    and keeps all 4 MiB."""
    first = start_agent(tmp_path / "state", "--run-log-limit", "1M")
    second: Agent | None = None
    try:
        laptop = make_client(tmp_path / "laptop", first)
        script = write_script(tmp_path, "flood.py", FLOOD)
        go = tmp_path / "go"
        started = laptop.run("python", str(script), str(tmp_path / "exe"), str(go),
                             "--detach")
        assert started.returncode == 0, started.stderr
        run_id = run_id_of(laptop, "flood.py")
        wait_for(lambda: (tmp_path / "exe").exists(), 60, what="the run to start")
        if restart == "sigterm":
            first.stop(keep_runs=True)
            second = start_agent(tmp_path / "state", listen=f"127.0.0.1:{first.port}")
        else:
            second = start_agent(tmp_path / "state", "--replace")
            first.proc.wait(60)
        assert second.port == first.port  # the laptop's box entry still holds
        assert runs_by_id(laptop)[run_id]["state"] == "running"
        go.write_text("go")
        wait_for(lambda: runs_by_id(laptop)[run_id]["state"] == "exited", 120,
                 what="the run to finish")
        assert runs_by_id(laptop)[run_id]["exit_code"] == 0
        assert_monitored_by(monitor, tmp_path / "exe")
        assert_newest_bytes_kept(*reattach(laptop, run_id), limit=MiB)

        (tmp_path / "exe").unlink()
        fresh = laptop.run("python", str(script), str(tmp_path / "exe"), timeout=180)
        assert fresh.returncode == 0 and fresh.stdout == expected_stdout()
        fresh_id = next(i for i, r in runs_by_id(laptop).items() if i != run_id)
        stdout, stderr, dropped = reattach(laptop, fresh_id)
        assert (stdout, stderr, dropped) == (expected_stdout(), "END\n", None)
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_the_third_finished_run_pushes_out_the_oldest(tmp_path: Path, monitor: str) -> None:
    """--keep-finished-runs 2: three runs finish, the oldest leaves --list, cannot be
    reattached, and its dirs are gone; the two newest stay reattachable."""
    box = start_agent(tmp_path / "state", "--keep-finished-runs", "2")
    try:
        laptop = make_client(tmp_path / "laptop", box)
        ids: list[str] = []
        for n in range(3):
            script = write_script(tmp_path, f"run{n}.py", f"print('run {n}')\n")
            done = laptop.run("python", str(script))
            assert done.returncode == 0 and done.stdout == f"run {n}\n", done.stderr
            [new] = [i for i in runs_by_id(laptop) if i not in ids]  # the oldest may be gone now
            ids.append(new)
        oldest, *newest = ids
        wait_for(lambda: oldest not in runs_by_id(laptop), 60, what="the oldest run to go")
        assert sorted(runs_by_id(laptop)) == sorted(newest)
        gone = laptop.run("python", "--reattach", oldest)
        assert gone.returncode != 0 and len(gone.stderr.strip().splitlines()) == 1
        assert "no run with id" in gone.stderr
        runs_dir = box.state_dir / "runs"
        assert not (runs_dir / oldest).exists() and not (runs_dir / f"{oldest}.monitor").exists()
        for n, run_id in enumerate(newest, start=1):
            stdout, _, _ = reattach(laptop, run_id)
            assert stdout == f"run {n}\n"
    finally:
        box.stop()


def test_a_finished_run_leaves_the_list_after_its_keep_time(tmp_path: Path,
                                                            monitor: str) -> None:
    """--keep-finished 2s: a finished run leaves --list (and its dirs go) once its time is up,
    with nothing else happening on the box; a run still running all that while stays, since
    the keep time counts from a run's end; once it ends, it goes too."""
    box = start_agent(tmp_path / "state", "--keep-finished", "2s")
    try:
        laptop = make_client(tmp_path / "laptop", box)
        go = tmp_path / "go"
        waiting = write_script(tmp_path, "waits.py", f"""
import pathlib, time
while not pathlib.Path({str(go)!r}).exists():
    time.sleep(0.05)
print("went")
""")
        started = laptop.run("python", str(waiting), "--detach")
        assert started.returncode == 0, started.stderr
        long_id = run_id_of(laptop, "waits.py")
        quick = write_script(tmp_path, "quick.py", "print('quick')\n")
        assert laptop.run("python", str(quick)).returncode == 0
        quick_id = next(i for i in runs_by_id(laptop) if i != long_id)
        wait_for(lambda: quick_id not in runs_by_id(laptop), 60, what="the finished run to go")
        assert not (box.state_dir / "runs" / quick_id).exists()
        assert runs_by_id(laptop)[long_id]["state"] == "running"  # older than 2 s, not finished
        go.write_text("go")
        wait_for(lambda: long_id not in runs_by_id(laptop), 60, what="the long run to go once done")
    finally:
        box.stop()


def test_a_restarted_agent_applies_its_own_retention_to_the_runs_it_finds(
        tmp_path: Path, monitor: str) -> None:
    """Three runs finish under the defaults; the agent restarted with --keep-finished-runs 1
    keeps the one that ended last (by the end its monitor recorded), and drops the others
    with their dirs."""
    first = start_agent(tmp_path / "state")
    second: Agent | None = None
    try:
        laptop = make_client(tmp_path / "laptop", first)
        ids: list[str] = []
        for n in range(3):
            script = write_script(tmp_path, f"run{n}.py", f"print('run {n}')\n")
            assert laptop.run("python", str(script)).returncode == 0
            [new] = [i for i in runs_by_id(laptop) if i not in ids]
            ids.append(new)
        assert sorted(runs_by_id(laptop)) == sorted(ids)
        first.stop(keep_runs=True)
        second = start_agent(tmp_path / "state", "--keep-finished-runs", "1",
                             listen=f"127.0.0.1:{first.port}")
        wait_for(lambda: list(runs_by_id(laptop)) == ids[-1:], 60, what="only the newest run")
        assert reattach(laptop, ids[-1])[0] == "run 2\n"
        runs_dir = second.state_dir / "runs"
        assert sorted(p.name for p in runs_dir.iterdir()) == [ids[-1], f"{ids[-1]}.monitor"]
    finally:
        if second is not None:
            second.stop()
        first.stop()


BAD_VALUES = [
    ("--run-log-limit", "0"), ("--run-log-limit", "-1M"), ("--run-log-limit", "lots"),
    ("--run-log-limit", "512K"), ("--run-log-limit", "5000T"), ("--run-log-limit", "9" * 400),
    ("--keep-finished", "0"), ("--keep-finished", "-5m"), ("--keep-finished", "soon"),
    ("--keep-finished", "400d"), ("--keep-finished-runs", "0"), ("--keep-finished-runs", "-2"),
    ("--keep-finished-runs", "ten"), ("--keep-finished-runs", "1000001"),
    ("--rekey-limit", "1K"), ("--rekey-limit", "2T"), ("--rekey-limit", "1G soon"),
    ("--rekey-limit", "1G 1h 2"), ("--rekey-limit", ""),
]


@pytest.mark.parametrize(("option", "value"), BAD_VALUES)
def test_a_bad_value_is_one_line_and_exit_2(tmp_path: Path, option: str, value: str) -> None:
    """Before anything is touched: no state dir is made, nothing listens."""
    state = tmp_path / "state"
    done = subprocess.run([LAGER_BOX, "serve", "--listen", "127.0.0.1:0", "--state-dir",
                           str(state), option, value], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **QUIET_IMPORTS})
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"lager-box serve: {option}: ")
    assert not state.exists()


@pytest.mark.parametrize("value", ["12", "abc", "", "-1048576", "99999999999999999",
                                   "1048576x", "\u0661048576"])
@pytest.mark.parametrize("kind", ["c", "python"])
def test_a_monitor_refuses_a_bad_log_limit_in_one_line(tmp_path: Path, kind: str,
                                                       value: str) -> None:
    """The agent only passes limits it parsed; a monitor started by hand with anything else
    says so in one line and exits 2, before it makes a file or starts a script."""
    program = [str(monitor_build.build())] if kind == "c" else \
        [str(BIN / "python"), "-m", "box_agent.monitor"]
    marker = tmp_path / "ran"
    done = subprocess.run([*program, f"--log-limit={value}", "0", str(tmp_path),
                           str(tmp_path), "-", "--", "touch", str(marker)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "bad log limit" in line
    assert list(tmp_path.iterdir()) == []


def test_serve_help_lists_the_options() -> None:
    shown = subprocess.run([LAGER_BOX, "serve", "--help"], capture_output=True, text=True,
                           timeout=60).stdout
    for option in ("--run-log-limit SIZE", "--keep-finished DURATION",
                   "--keep-finished-runs N", "--rekey-limit 'SIZE [TIME]'"):
        assert option in shown


def test_the_deploy_role_passes_its_variables_to_serve(tmp_path: Path) -> None:
    """The role's defaults and a playbook's overrides, rendered by the real Ansible into the
    unit's ExecStart, are options `lager-box serve` takes."""
    unit = tmp_path / "lager-box.service"
    rendered = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "template",
         "-a", f"src={ROLE / 'templates' / 'lager-box.service.j2'} dest={unit}",
         "-e", f"@{ROLE / 'defaults' / 'main.yml'}",
         "-e", f"ansible_python_interpreter={BIN / 'python'}",
         "-e", "lager_box_run_log_limit=1G", "-e", "lager_box_keep_finished_runs=7",
         "-e", json.dumps({"lager_box_rekey_limit": "256M 30m"}),  # a space: not key=value
         # Set by the role's install task (the versioned venv this wheel went into).
         "-e", "lager_box_venv_current=/opt/lager-venvs/lager-test"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stdout[-3000:] + rendered.stderr[-3000:]
    [exec_start] = [line for line in unit.read_text().splitlines()
                    if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    given = dict(itertools.pairwise(argv))
    assert given["--run-log-limit"] == "1G"
    assert given["--keep-finished"] == "24h"
    assert given["--keep-finished-runs"] == "7"
    # Each value as the role wrote it, through the agent's own parser.
    from box_agent.run_limits import parse_count, parse_duration, parse_size
    assert parse_size(given["--run-log-limit"]) == 1 << 30
    assert parse_duration(given["--keep-finished"]) == 24 * 3600
    assert parse_count(given["--keep-finished-runs"]) == 7
    from box_agent.rekey_limit import RekeyLimit, parse_rekey_limit
    assert parse_rekey_limit(given["--rekey-limit"]) == RekeyLimit(256 << 20, 1800.0)
