"""A box whose link drops mid-run: the fleet reconnects to it as one box does (issue 11), the
others go on; when reconnecting gives up, the box is `lost` with its reattach command, 255."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StreamReader, script_gated_on_a_file, start_agent, wait_for, write_script
from test_fleet_rig import Rig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = start_rig(tmp_path / "rig", 2)
    yield r
    for proc in STARTED:  # a failing test must not leave its `lager` reconnecting
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    STARTED.clear()
    r.stop()


STARTED: list[subprocess.Popen[str]] = []


def _restart(rig: Rig, box: str) -> None:
    old = rig.agents[box]
    rig.agents[box] = start_agent(old.state_dir, listen=f"{old.host}:{old.port}")


def test_a_dropped_link_reconnects_and_the_run_goes_on(rig: Rig, tmp_path: Path) -> None:
    script, gate = script_gated_on_a_file(tmp_path)
    rig.laptop.env["LAGER_RECONNECT_FOR"] = "120"
    proc = rig.laptop.popen("python", str(script), "--box", "bench[01-02]")
    STARTED.append(proc)
    out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
    wait_for(lambda: out.text.count("ready") == 2, 60, what="both runs ready")
    rig.agents["bench02"].stop(keep_runs=True)  # the link drops; the run stays on the box
    err.wait_for("bench02: connection lost; reconnecting", 60)
    _restart(rig, "bench02")
    err.wait_for("bench02: reconnected", 60)
    gate.touch()
    assert proc.wait(60) == 0, err.text
    assert sorted(out.join().splitlines()) == ["bench01: finished", "bench01: ready",
                                               "bench02: finished", "bench02: ready"]
    assert re.search(r"^bench02 +ok +exit=0", err.join(), re.M)


def test_a_box_that_stays_away_is_lost_with_its_reattach_command(rig: Rig,
                                                                tmp_path: Path) -> None:
    script, gate = script_gated_on_a_file(tmp_path)
    rig.laptop.env["LAGER_RECONNECT_FOR"] = "1"
    proc = rig.laptop.popen("python", str(script), "--box", "bench[01-02]")
    STARTED.append(proc)
    out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
    wait_for(lambda: out.text.count("ready") == 2, 60, what="both runs ready")
    rig.agents["bench02"].stop(keep_runs=True)
    err.wait_for("bench02: lost: ", 60)
    gate.touch()  # bench01 was never held up
    assert proc.wait(60) == 255, err.text
    text = err.join()
    assert "bench01: finished" in out.join()
    row = re.search(r"^bench02 +lost .*lager python --reattach ([0-9a-f]{16}) --box bench02",
                    text, re.M)
    assert row, text
    assert re.search(r"^bench01 +ok +exit=0", text, re.M)
    _restart(rig, "bench02")  # the run went on there: reattach finds it and its end
    again = rig.laptop.run("python", "--reattach", row.group(1), "--box", "bench02")
    assert again.returncode == 0 and "finished" in again.stdout, again.stderr


def test_a_pause_survives_a_reconnect_once(rig: Rig, tmp_path: Path) -> None:
    """Paused when the link drops: after the reconnect the box's notice says so again, the line
    still counts it, Enter resumes it, and the pause and its banner are counted once."""
    script = write_script(tmp_path, "p.py", "from lager import pause\n"
                          "pause('check the DUT', timeout=0)\nprint('after')\n")
    rig.laptop.env["LAGER_RECONNECT_FOR"] = "120"
    proc = rig.laptop.popen("python", str(script), "--box", "bench[01-02]", "--output-dir",
                            str(tmp_path / "out"))
    STARTED.append(proc)
    out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
    err.wait_for("=== 2/2 paused at", 60)
    rig.agents["bench02"].stop(keep_runs=True)
    err.wait_for("bench02: connection lost; reconnecting", 60)
    _restart(rig, "bench02")
    err.wait_for("bench02: reconnected", 60)
    # The drop resumed nothing: the line never counted bench02 out (its notice, sent again on
    # the reattach, changes nothing), and Enter reaches it over the new connection.
    assert "=== 1/2" not in err.text.split("bench02: connection lost", 1)[1]
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(60) == 0, err.text
    assert out.join().count("after") == 2
    assert len(re.findall(r"^bench0[12] +ok +exit=0 .* pauses=1 ", err.join(), re.M)) == 2
    saved = (tmp_path / "out" / "bench02.stderr").read_text()
    assert saved.count("=== lager breakpoint") == 1 and saved.count("=== resumed") == 1, saved
