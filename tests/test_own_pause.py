"""The last costs of the resume path (issues 13 and 11, ISSUE-NOTES 9):

- an attached run numbers a bare `--continue` of its own run from the notices its follower saw
  (client/own_pause.py), with no round trip to the box; other ids are numbered from the box's
  list, as a standalone keeper numbers them;
- a restarted agent learns the highest resumed pause number from the run's monitor (C and
  Python), so a stale `ID#N` gets "already resumed" (stdout, exit 0) from the box itself, also
  through OpenSSH, while the run is running.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import (
    Client,
    laptop_on_a_new_box,
    runs_by_id,
    wait_for,
    write_script,
)
from keeper_rig import (
    PAUSES_THREE_TIMES,
    keeper_socket_path,
    laptop_behind_a_holding_proxy,
    pin_pause,
    run_to_first_pause,
)
from sshclients import openssh
from test_keeper_restart import restart

from box_agent import monitor_build

# Resumed from pause 1, the script runs (waits for a file) before it pauses again.
RUNS_BETWEEN = ("import pathlib, sys, time\nfrom lager import pause\npause('one', timeout=0)\n"
                "go = pathlib.Path(sys.argv[1], 'go')\nwhile not go.exists():\n"
                "    time.sleep(0.05)\npause('two', timeout=0)\nprint('done')\n")


def state_of(client: Client, run_id: str) -> tuple[str, int | None]:
    row = runs_by_id(client)[run_id]
    return row["state"], (row.get("pause") or {}).get("seq")


def test_an_attached_run_numbers_its_own_pause_without_the_box(tmp_path: Path) -> None:
    with laptop_behind_a_holding_proxy(tmp_path) as (_, proxy, laptop):
        run, ident = run_to_first_pause(laptop, tmp_path)
        path = keeper_socket_path(laptop)
        wait_for(path.exists, what="the run's keeper socket")
        # Another run on the box: its id is numbered from the box's list, as before.
        other_script = write_script(tmp_path, "o.py", PAUSES_THREE_TIMES)
        other = laptop.run("python", str(other_script), "--detach")
        assert other.returncode == 0, other.stderr
        other_id = wait_for(lambda: next((i for i, r in runs_by_id(laptop).items()
                                          if r["state"] == "paused" and
                                          not i.startswith(ident[:4])), None),
                            what="the other run's pause")
        assert pin_pause(path, "mybox", other_id[:8]) == f"{other_id}#1"

        # Its own run: numbered with every byte on its link held, so the box was not asked
        # (a `list` would wait for the reply deadline and leave the id bare). The id stays as
        # typed, for the box to resolve as it would the bare one.
        wait_for(lambda: pin_pause(path, "mybox", ident) == f"{ident}#1",
                 what="the run's own number")
        proxy.hold_all()
        assert pin_pause(path, "mybox", ident) == f"{ident}#1"
        assert pin_pause(path, "mybox", f" {ident} ") == f"{ident}#1"
        proxy.release_all()

        resumed = laptop.run("python", "--continue", ident)
        assert resumed.returncode == 0 and resumed.stdout.startswith("resumed run"), \
            resumed.stderr
        wait_for(lambda: pin_pause(path, "mybox", ident) == f"{ident}#2",
                 what="the second pause's number")
        # The number it gave is the box's: a stale one is "already resumed", never pause 3.
        stale = laptop.run("python", "--continue", f"{ident}#1")
        assert stale.returncode == 0 and stale.stdout.startswith("already resumed"), stale
        assert laptop.run("python", "--continue", ident).returncode == 0
        wait_for(lambda: pin_pause(path, "mybox", ident) == f"{ident}#3",
                 what="the third pause's number")
        assert laptop.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0 and "done" in run.out.text
        assert laptop.run("python", "--kill", other_id).returncode == 0


@pytest.mark.parametrize(("monitor", "how"), [("c", "sigkill"), ("c", "sigterm"),
                                              ("python", "sigkill")])
def test_a_restarted_agent_knows_the_pauses_resumed_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor: str, how: str) -> None:
    if monitor == "python":
        monkeypatch.setenv(monitor_build.ENV_PYTHON_MONITOR, "1")
    else:
        monkeypatch.delenv(monitor_build.ENV_PYTHON_MONITOR, raising=False)
    with laptop_on_a_new_box(tmp_path) as laptop:
        started = laptop.run("python", str(write_script(tmp_path, "r.py", RUNS_BETWEEN)),
                             "--detach", str(tmp_path))
        assert started.returncode == 0, started.stderr
        run_id = wait_for(lambda: next(iter(runs_by_id(laptop)), None), what="the run")
        wait_for(lambda: state_of(laptop, run_id) == ("paused", 1), what="pause 1")
        assert laptop.run("python", "--continue", f"{run_id}#1").returncode == 0
        wait_for(lambda: state_of(laptop, run_id)[0] == "running", what="the run running")

        laptop.agent = restart(laptop.agent, how)
        # OpenSSH, the number typed: the new agent says it itself, on stdout, exit 0.
        stale = openssh(laptop, "continue", f"{run_id}#1\n")
        assert stale.returncode == 0, stale.stderr
        assert stale.stdout.decode() == f"already resumed: run {run_id[:4]}\u2026{run_id[-2:]}" \
            " pause 1\n", stale.stdout
        # The lager CLI, the number typed by the user (no client-side guess applies to it).
        typed = laptop.run("python", "--continue", f"{run_id[:8]}#1")
        assert typed.returncode == 0 and typed.stdout.startswith("already resumed"), typed
        # A number not reached yet is still refused, one line, exit 1; the run goes on.
        early = openssh(laptop, "continue", f"{run_id}#2\n")
        assert early.returncode == 1 and early.stdout == b"", early
        assert early.stderr.decode().count("\n") == 1, early.stderr
        assert state_of(laptop, run_id)[0] == "running"

        (tmp_path / "go").touch()
        wait_for(lambda: state_of(laptop, run_id) == ("paused", 2), what="pause 2")
        again = laptop.run("python", "--continue", f"{run_id}#2")
        assert again.returncode == 0 and again.stdout.startswith("resumed run"), again
        wait_for(lambda: state_of(laptop, run_id)[0] not in ("running", "paused"),
                 what="the run's end")


def test_bad_ids_to_number_get_the_boxs_own_answer(tmp_path: Path) -> None:
    """Hostile ids through an attached run: never numbered, so the box says what is wrong."""
    with laptop_on_a_new_box(tmp_path) as laptop:
        run, ident = run_to_first_pause(laptop, tmp_path)
        path = keeper_socket_path(laptop)
        wait_for(path.exists, what="the run's keeper socket")
        for bad in ("", "\u2026", "zz", ident + "zz", "ffffffff"):
            assert pin_pause(path, "mybox", bad) == bad
        refused = laptop.run("python", "--continue", "zz")
        assert refused.returncode == 1 and refused.stdout == "", refused
        assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("Error:")
        for n in (1, 2, 3):
            wait_for(lambda n=n: pin_pause(path, "mybox", ident) == f"{ident}#{n}",
                     what=f"pause {n}")
            assert laptop.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0
