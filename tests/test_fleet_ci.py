"""The README's CI recipes, run: their YAML read as written, each `run:` / `script:` command
executed by a shell with the CI variables set, against three real boxes; the JUnit files they
write are read back with junitparser."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_script
from test_fleet_rig import REPO, Rig, start_rig

HW_TEST = "import os, sys\nprint('tested', os.environ['LAGER_BOX'])\n" \
          "sys.exit(1 if os.environ['LAGER_BOX'] == 'bench02' else 0)\n"


def recipes() -> list[dict[str, Any]]:
    text = (REPO / "README.md").read_text()
    section = text.split("### CI recipes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) == 3, "the README has three CI recipes"
    return [yaml.safe_load(block) for block in blocks]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    r = start_rig(tmp_path_factory.mktemp("fleetci"), 3,
                  {f"bench0{i}": ["line1"] for i in range(1, 4)})
    yield r
    r.stop()


def _checkout(tmp: Path) -> Path:
    repo = tmp / "checkout"
    write_script(repo, "tests/hw_test.py", HW_TEST)
    return repo


def _shell(rig: Rig, command: str, cwd: Path, **ci: str) -> subprocess.CompletedProcess[str]:
    env = {**rig.laptop.env, "CI": "true", **ci}
    return subprocess.run(["bash", "-ec", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)


def _cases(path: Path) -> dict[str, str]:
    """{box: "ok" | "failure" | "error"} from a JUnit file, read by junitparser."""
    from junitparser import Error, Failure, JUnitXml

    out = {}
    for suite in JUnitXml.fromfile(str(path)):
        for case in suite:
            kinds = {type(r) for r in case.result}
            out[case.classname.split(".")[-1]] = "failure" if Failure in kinds else \
                "error" if Error in kinds else "ok"
    return out


def _report_step(steps: list[dict[str, Any]]) -> dict[str, Any]:
    found = [s for s in steps if str(s.get("uses", "")).startswith("mikepenz/action-junit-report")]
    assert len(found) == 1 and found[0].get("if") == "always()"
    return found[0]


def test_github_one_job_fanning_out(rig: Rig, tmp_path: Path) -> None:
    job = recipes()[0]["jobs"]["bench"]
    repo = _checkout(tmp_path)
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert len(runs) == 1
    done = _shell(rig, runs[0], repo, GITHUB_ACTIONS="true")
    assert done.returncode == 1, done.stderr  # bench02 failed: the job fails
    report = repo / _report_step(job["steps"])["with"]["report_paths"]
    assert _cases(report) == {"bench01": "ok", "bench02": "failure", "bench03": "ok"}
    assert (repo / "logs" / "bench02.stdout").read_text() == "tested bench02\n"


def test_github_matrix_over_boxes(rig: Rig, tmp_path: Path) -> None:
    job = recipes()[1]["jobs"]["bench"]
    assert job["strategy"]["fail-fast"] is False
    assert "${{ matrix.box }}" in job["concurrency"]["group"]  # one job per box at a time
    repo = _checkout(tmp_path)
    (command,) = [s["run"] for s in job["steps"] if "run" in s]
    codes = {}
    for box in job["strategy"]["matrix"]["box"]:
        done = _shell(rig, command.replace("${{ matrix.box }}", box), repo,
                      GITHUB_ACTIONS="true")
        codes[box] = done.returncode
    assert codes == {"01": 0, "02": 1, "03": 0}
    pattern = _report_step(job["steps"])["with"]["report_paths"]
    files = sorted(repo.glob(pattern))
    assert len(files) == 3
    merged: dict[str, str] = {}
    for path in files:
        merged.update(_cases(path))
    assert merged == {"bench01": "ok", "bench02": "failure", "bench03": "ok"}


def test_gitlab_resource_group_per_box(rig: Rig, tmp_path: Path) -> None:
    job = recipes()[2]["bench"]
    assert "$BOX" in job["resource_group"]
    junit = job["artifacts"]["reports"]["junit"]
    assert job["artifacts"]["when"] == "always"
    found = {}
    for box in job["parallel"]["matrix"][0]["BOX"]:
        repo = _checkout(tmp_path / box)
        for command in job["script"]:
            done = _shell(rig, command, repo, GITLAB_CI="true", BOX=box)
        assert done.returncode == (1 if box == "02" else 0), done.stderr
        found.update(_cases(repo / junit))
    assert found == {"bench01": "ok", "bench02": "failure", "bench03": "ok"}
