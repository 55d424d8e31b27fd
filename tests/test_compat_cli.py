"""Compatibility tier, the command line's smaller habits from the real lager: `--download` with
and without `--allow-overwrite` (a file already here is never lost), `boxes add|remove|delete
--json`, and `boxes add --ip HOST:PORT`. Real parts only: a box of our own, `lager` as a
subprocess in a working dir of its own."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LAGER, Client, laptop_on_a_new_box, write_script


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with laptop_on_a_new_box(tmp_path_factory.mktemp("cli")) as laptop:
        yield laptop


WRITER = """\
import os, pathlib
pathlib.Path("results.csv").write_text("new\\n")
os.makedirs("logs", exist_ok=True)
pathlib.Path("logs/a.txt").write_text("new a")
pathlib.Path("logs/b.txt").write_text("new b")
print("wrote")
"""


def lager_in(client: Client, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAGER, *args, "--box", client.box], cwd=cwd, env=client.env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_download_keeps_a_file_already_here_unless_allowed(box: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "writer.py", WRITER)
    here = tmp_path / "here"
    (here / "logs").mkdir(parents=True)
    (here / "results.csv").write_text("old\n")
    (here / "logs" / "a.txt").write_text("old a")
    refused = lager_in(box, here, "python", str(script), "--download", "results.csv")
    assert (refused.returncode, refused.stdout) == (2, "")  # the run never started
    assert refused.stderr == ("Error: --download results.csv: results.csv already exists here; "
                              "--allow-overwrite replaces it\n")
    assert (here / "results.csv").read_text() == "old\n"
    # A clash seen only as the files come (inside a downloaded dir): that file is kept.
    late = lager_in(box, here, "python", str(script), "--download", "logs")
    assert (late.returncode, late.stdout) == (0, "wrote\n")
    assert late.stderr == ("lager: download: logs/a.txt: already exists here, kept "
                           "(--allow-overwrite replaces it)\n")
    assert (here / "logs" / "a.txt").read_text() == "old a"
    assert (here / "logs" / "b.txt").read_text() == "new b"
    allowed = lager_in(box, here, "python", str(script), "--download", "results.csv",
                       "--download", "logs", "--allow-overwrite")
    assert (allowed.returncode, allowed.stdout, allowed.stderr) == (0, "wrote\n", "")
    assert (here / "results.csv").read_text() == "new\n"
    assert (here / "logs" / "a.txt").read_text() == "new a"
    alone = lager_in(box, here, "python", str(script), "--allow-overwrite")
    assert (alone.returncode, alone.stdout) == (2, "")
    assert alone.stderr == "Error: --allow-overwrite goes with --download\n"


def test_boxes_json_and_host_port(box: Client) -> None:
    address = f"{box.agent.host}:{box.agent.port}"
    added = box.run("boxes", "add", "--name", "hp", "--ip", address, "--user", "lab", "--json",
                    box=False)
    assert added.returncode == 0, added.stderr
    row = json.loads(added.stdout)  # progress went to stderr: stdout is the JSON alone
    assert (row["name"], row["host"], row["port"], row["user"]) == (
        "hp", box.agent.host, box.agent.port, "lab")
    assert "ready" in added.stderr
    listed = {b["name"]: b for b in json.loads(box.run("boxes", "list", "--json",
                                                       box=False).stdout)}
    assert listed["hp"] == row
    ran = box.run("python", "--list", "--box", "hp", box=False)
    assert ran.returncode == 0, ran.stderr
    clash = box.run("boxes", "add", "x", "--ip", address, "--port", "1", box=False)
    assert (clash.returncode, clash.stdout) == (2, "")
    assert clash.stderr == (f"Error: --host {address} says port {box.agent.port} but --port "
                            "says 1; give one\n")
    gone = box.run("boxes", "delete", "--name", "hp", "--json", box=False)
    assert gone.returncode == 0 and json.loads(gone.stdout) == {"removed": "hp",
                                                                "unpinned": False}
    assert box.run("python", "--list").returncode == 0  # mybox keeps the shared pin
