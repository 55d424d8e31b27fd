"""A fleet meets shared boxes (#18's "Shared boxes", ISSUE-NOTES 17): three real agents, and a
second key identity (another laptop) holding bench02 with a paused run.

The fleet's laptop is refused there as one box would be: a `reserved` row naming the holder
(not a hang, not a failed script), `skipped` in JUnit (read back by junitparser), and exit 75
only when nothing else went wrong. Under CI=true bench02 waits in its own queue while the
others run, and starts once the holder's run ends. Instrument changes over the set: the held
box is one line naming the holder, and the same exit rule.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    Client,
    LiveRun,
    StreamReader,
    make_client,
    start_run,
    wait_for,
    write_script,
)
from test_fleet_rig import Rig, free_port, start_rig

RESERVED = 75
SET = "bench[01-03]"
HOLD = """\
from lager import pause
print("holding", flush=True)
pause("B holds bench02", timeout=600)
print("B done", flush=True)
"""


@dataclass
class Held:
    run: LiveRun
    ident: str  # the run's id as its banner shows it
    key: str  # the holder's key fingerprint, as the box names it


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    r = start_rig(tmp_path_factory.mktemp("fleetres"), 3, {f"bench0{i}": ["line1"]
                                                          for i in range(1, 4)})
    from client.config import Box, Config

    Config(r.laptop.config_dir).add_box(Box("down", "127.0.0.1", free_port()))  # no one there
    yield r
    r.stop()


@pytest.fixture(scope="module")
def other(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Client:
    """Laptop B: its own key, authorized on bench02 only."""
    return make_client(tmp_path_factory.mktemp("laptop-b"), rig.agents["bench02"])


def _rows(client: Client) -> list[dict]:
    listed = client.run("python", "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def held(other: Client, tmp_path: Path) -> Iterator[Held]:
    """B's run holds bench02, paused; resumed and ended after the test."""
    run = start_run(other, write_script(tmp_path, "hold.py", HOLD))
    run.out.wait_for("holding")
    ident = run.banner_id()
    key = next(r for r in _rows(other) if ident in (r["id"], r["short_id"]))[
        "started_by"]["fingerprint"]
    try:
        yield Held(run, ident, key)
    finally:
        if run.proc.poll() is None:
            other.run("python", "--continue", ident)
            run.finish(60)


def _recap(stdout: str) -> dict:
    return json.loads(stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _box_script(tmp: Path, name: str, codes: dict[str, int]) -> Path:
    return write_script(tmp, name, "import os, sys\nbox = os.environ['LAGER_BOX']\n"
                        "print(f'{box} ran', flush=True)\n"
                        f"sys.exit({codes!r}.get(box, 0))\n")


def test_a_held_box_is_a_reserved_row_skipped_in_junit_and_exit_75(
        rig: Rig, held: Held, tmp_path: Path) -> None:
    from junitparser import Failure, JUnitXml, Skipped

    script = _box_script(tmp_path, "fine.py", {})
    junit = tmp_path / "r.xml"
    done = rig.laptop.run("python", str(script), "--box", SET, "--json", "--junit-xml",
                          str(junit), timeout=180)
    # Nothing else went wrong: "try later", not a failure, and not a hang.
    assert done.returncode == RESERVED, done.stderr
    assert "bench02 ran" not in done.stdout
    recap = _recap(done.stdout)
    assert recap["exit"] == RESERVED
    row = recap["boxes"]["bench02"]
    assert row["state"] == "reserved" and row["exit"] == RESERVED
    assert held.key in row["holder"] and row["reason"].startswith("reserved by ")
    assert f"run {held.ident}" in row["reason"] and 'paused at "B holds bench02"' in row["reason"]
    assert row["holds"] and row["holds"][0]["fingerprint"] == held.key
    assert row["run_id"] == ""  # the refused run never existed
    assert {b: r["state"] for b, r in recap["boxes"].items()} == {
        "bench01": "ok", "bench02": "reserved", "bench03": "ok"}
    # One line on stderr names the holder; the recap row says the same.
    said = [ln for ln in done.stderr.splitlines() if ln.startswith("bench02: reserved by ")]
    assert len(said) == 1 and held.key in said[0], done.stderr
    assert re.search(r"^bench02 +reserved +exit=75 .*reserved by .*" + re.escape(held.key),
                     done.stderr, re.M), done.stderr
    assert "box reserved: held by" not in done.stderr  # the box's line became the row

    suite = next(iter(JUnitXml.fromfile(str(junit))))
    cases = {c.classname: c for c in suite}
    skipped = [r for r in cases["lager.line1.bench02"].result if isinstance(r, Skipped)]
    assert len(skipped) == 1 and held.key in (skipped[0].message or "")
    assert "reserved by" in (skipped[0].message or "")
    assert not cases["lager.line1.bench01"].result and not cases["lager.line1.bench03"].result
    assert suite.skipped == 1 and suite.failures == 0 and suite.errors == 0

    # A failure wins over "reserved", with the failed box's own code.
    failing = _box_script(tmp_path, "fails.py", {"bench03": 3})
    done = rig.laptop.run("python", str(failing), "--box", SET, "--json", "--junit-xml",
                          str(junit), timeout=180)
    assert done.returncode == 3, done.stderr
    states = {b: r["state"] for b, r in _recap(done.stdout)["boxes"].items()}
    assert states == {"bench01": "ok", "bench02": "reserved", "bench03": "failed"}
    cases = {c.classname: c for c in next(iter(JUnitXml.fromfile(str(junit))))}
    assert any(isinstance(r, Failure) for r in cases["lager.line1.bench03"].result)
    assert any(isinstance(r, Skipped) for r in cases["lager.line1.bench02"].result)

    # A script that itself exits 75 on a free box is a failed script, not a reserved box.
    own_75 = _box_script(tmp_path, "own75.py", {"bench01": RESERVED})
    done = rig.laptop.run("python", str(own_75), "--box", SET, "--json", timeout=180)
    assert done.returncode == RESERVED, done.stderr
    boxes = _recap(done.stdout)["boxes"]
    assert boxes["bench01"]["state"] == "failed" and boxes["bench01"]["holder"] == ""
    assert boxes["bench02"]["state"] == "reserved"

    # An unreachable box wins over "reserved" too (255).
    done = rig.laptop.run("python", str(script), "--box", f"{SET},down", "--json",
                          "--connect-timeout", "8", timeout=180)
    assert done.returncode == 255, done.stderr
    states = {b: r["state"] for b, r in _recap(done.stdout)["boxes"].items()}
    assert states["down"] == "unreachable" and states["bench02"] == "reserved"

    # --wait gives up on its own deadline: the same row, saying so.
    done = rig.laptop.run("python", str(script), "--box", SET, "--json", "--wait", "0.5",
                          timeout=180)
    assert done.returncode == RESERVED, done.stderr
    row = _recap(done.stdout)["boxes"]["bench02"]
    assert row["state"] == "reserved" and held.key in row["holder"]
    assert "gave up after waiting 0.5s" in row["reason"]

    # --detach over the set: the held box is refused the same way; the others start.
    done = rig.laptop.run("python", str(script), "--box", SET, "--detach", timeout=180)
    assert done.returncode == RESERVED, done.stderr
    assert "bench01: run " in done.stdout and "bench02: run" not in done.stdout
    assert re.search(r"^bench02: reserved by .*" + re.escape(held.key), done.stderr, re.M)
    # The holder's run was never touched by any of it.
    assert held.run.proc.poll() is None and "B done" not in held.run.out.text


def test_under_ci_the_held_box_waits_its_turn_and_runs_once_the_holder_ends(
        rig: Rig, held: Held, other: Client, tmp_path: Path) -> None:
    script = _box_script(tmp_path, "ci.py", {})
    env = {**rig.laptop.env, "CI": "true"}
    proc = subprocess.Popen(rig.laptop_cmd("python", str(script), "--box", SET, "--json"),
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
    try:
        # bench02 stands in its own box's queue, naming the holder; the others run meanwhile.
        err.wait_for("bench02: waiting for the box", 60)
        out.wait_for("bench01: bench01 ran", 60)
        out.wait_for("bench03: bench03 ran", 60)
        line = next(ln for ln in err.text.splitlines() if ln.startswith("bench02: waiting"))
        assert "1 run ahead" in line and held.key in line and f"run {held.ident}" in line
        queue = json.loads(other.run("boxes", "status", "--json").stdout)["queue"]
        assert len(queue) == 1 and proc.poll() is None
        assert "bench02 ran" not in out.text

        # The holder's run ends: bench02's turn comes, and it runs.
        assert other.run("python", "--continue", held.ident).returncode == 0
        assert held.run.finish(60) == 0
        assert proc.wait(120) == 0, err.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out.join()
    err.join()
    assert "bench02: bench02 ran" in out.text
    recap = _recap(out.text)
    assert recap["exit"] == 0
    assert {b: r["state"] for b, r in recap["boxes"].items()} == {
        "bench01": "ok", "bench02": "ok", "bench03": "ok"}
    assert "bench02: its turn came" in err.text
    # Its run started only after the holder's had ended.
    rows = _rows(other)
    ours = next(r for r in rows if r.get("fleet") == recap["fleet"])
    theirs = next(r for r in rows if held.ident in (r["id"], r["short_id"]))
    assert ours["started_at"] >= theirs["started_at"] and theirs["state"] == "exited"
    status = json.loads(other.run("boxes", "status", "--json").stdout)
    assert status["queue"] == [] and not status["held"]


def test_an_instrument_change_over_the_set_names_the_holder(rig: Rig, held: Held,
                                                            other: Client) -> None:
    # Reading is open to every key: the whole set answers.
    read = rig.laptop.run("supply", "supply2", "state", "--json", "--box", SET)
    assert read.returncode == 0, read.stderr
    assert set(json.loads(read.stdout)) == {"bench01", "bench02", "bench03"}

    change = rig.laptop.run("supply", "supply2", "voltage", "2.5", "--box", SET)
    assert change.returncode == RESERVED, change.stderr
    lines = [ln for ln in change.stderr.splitlines() if ln.startswith("bench02: ")]
    assert len(lines) == 1 and lines[0].startswith("bench02: reserved by "), change.stderr
    assert held.key in lines[0] and f"run {held.ident}" in lines[0]
    after = json.loads(rig.laptop.run("supply", "supply2", "state", "--json", "--box",
                                      SET).stdout)
    assert after["bench01"]["set_voltage"] == pytest.approx(2.5)
    assert after["bench03"]["set_voltage"] == pytest.approx(2.5)
    assert after["bench02"]["set_voltage"] != pytest.approx(2.5)  # refused, so unchanged

    as_json = rig.laptop.run("supply", "supply2", "voltage", "2.6", "--json", "--box", SET)
    assert as_json.returncode == RESERVED, as_json.stderr
    data = json.loads(as_json.stdout)
    assert held.key in data["bench02"]["holder"]
    assert data["bench02"]["reserved"][0]["fingerprint"] == held.key
    assert data["bench01"]["set_voltage"] == pytest.approx(2.6)

    # The exit rule: an unreachable box comes before "reserved".
    with_down = rig.laptop.run("supply", "supply2", "voltage", "2.7", "--box", f"{SET},down",
                               "--connect-timeout", "8")
    assert with_down.returncode == 255, with_down.stderr
    assert re.search(r"^bench02: reserved by ", with_down.stderr, re.M)
    # Once the holder's run is over, the change goes through on bench02 too.
    assert other.run("python", "--continue", held.ident).returncode == 0
    assert held.run.finish(60) == 0
    freed = rig.laptop.run("supply", "supply2", "voltage", "2.8", "--json", "--box", SET)
    assert freed.returncode == 0, freed.stderr
    assert json.loads(freed.stdout)["bench02"]["set_voltage"] == pytest.approx(2.8)


def test_ctrl_c_while_a_box_waits_leaves_its_queue_and_still_prints_the_recap(
        rig: Rig, held: Held, other: Client, tmp_path: Path) -> None:
    script = _box_script(tmp_path, "ci.py", {})
    boxes_dir = tmp_path / "out"
    proc = subprocess.Popen(rig.laptop_cmd("python", str(script), "--box", SET, "--json",
                                           "--wait", "600", "--output-dir", str(boxes_dir)),
                            env=rig.laptop.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
    try:
        err.wait_for("bench02: waiting for the box", 60)
        # The others are over (BOX.json is written as a box's thread ends): the Ctrl-C
        # meets only the box still waiting.
        wait_for(lambda: all((boxes_dir / f"{b}.json").exists() for b in ("bench01",
                                                                          "bench03")),
                 60, what="bench01 and bench03 to end")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, err.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out.join()
    err.join()
    boxes = _recap(out.text)["boxes"]
    assert boxes["bench02"]["state"] == "skipped", err.text
    assert "left the box's queue" in boxes["bench02"]["reason"]
    assert boxes["bench01"]["state"] == boxes["bench03"]["state"] == "ok"
    # The box saw it go (as soon as it reads the close): its queue empties; the holder's run
    # is untouched.
    wait_for(lambda: json.loads(other.run("boxes", "status", "--json").stdout)["queue"] == [],
             60, what="bench02's queue to empty")
    assert held.run.proc.poll() is None
    assert "bench02 ran" not in out.text
