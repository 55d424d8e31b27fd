"""What a short command loads, read from CPython's own `-X importtime` (issue 13): through a
keeper (a keeper process, or an attached run serving as one) nothing of typing, dataclasses,
inspect, hashlib, click or paramiko; on a first call (no keeper) no dataclasses, inspect,
hashlib, click or paramiko (typing comes with cryptography there)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import LAGER, Client, laptop_on_a_new_box, wait_for
from keeper_rig import connections, keeper_sockets, run_to_first_pause

KEEPER_PATH_NEVER = ("typing", "dataclasses", "inspect", "hashlib", "click", "paramiko")
# An instrument kind's command (`lager supply NET VERB`) also loads the kinds registry
# (lager/bench/kinds/spec.py: frozen dataclasses, typing), which builds its request.
KIND_COMMAND_NEVER = ("hashlib", "click", "paramiko")
FIRST_CALL_NEVER = ("dataclasses", "inspect", "hashlib", "click", "paramiko")


def _loaded(laptop: Client, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The command's result, and the top-level names of every module it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", LAGER, *args, "--box",
                           laptop.box], env=laptop.env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    timings = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert len(timings) > 20, done.stderr  # the interpreter really reported its imports
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timings}
    return done, names


def _answer(done: subprocess.CompletedProcess[str]) -> str:
    """stdout, or the error line: without importtime's own lines."""
    return done.stdout + "".join(line for line in done.stderr.splitlines(keepends=True)
                                 if not line.startswith("import time:"))


def test_the_keeper_path_loads_none_of_the_heavy_modules(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        first, names = _loaded(laptop, "python", "--list")
        assert first.returncode == 0, _answer(first)
        assert names.isdisjoint(FIRST_CALL_NEVER), names & set(FIRST_CALL_NEVER)
        wait_for(lambda: keeper_sockets(laptop), what="the keeper's socket")
        before = connections(laptop)
        for args, status, says, never in (
                (["python", "--list"], 0, "", KEEPER_PATH_NEVER),
                (["python", "--continue", "ffffffff"], 1, "no run with id", KEEPER_PATH_NEVER),
                (["python", "--kill", "ffffffff"], 1, "no run with id", KEEPER_PATH_NEVER),
                (["nets", "--json"], 0, "[", KEEPER_PATH_NEVER),
                (["supply", "supply2", "state"], 0, "", KIND_COMMAND_NEVER)):
            done, names = _loaded(laptop, *args)
            assert (done.returncode, says in _answer(done)) == (status, True), _answer(done)
            assert names.isdisjoint(never), (args, names & set(never))
        assert connections(laptop) == before  # every one of them went through the keeper


def test_a_second_terminal_beside_an_attached_run_loads_none_of_them(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        laptop.env["LAGER_MUX"] = "1"
        run, ident = run_to_first_pause(laptop, tmp_path)
        wait_for(lambda: keeper_sockets(laptop), what="the attached run's keeper socket")
        before = connections(laptop)
        done, names = _loaded(laptop, "python", "--continue", ident)
        assert done.returncode == 0 and done.stdout.startswith("resumed run"), _answer(done)
        assert names.isdisjoint(KEEPER_PATH_NEVER), names & set(KEEPER_PATH_NEVER)
        assert connections(laptop) == before  # the run's own connection carried it
        run.err.wait_for("=== resumed")
        run.proc.kill()  # its second pause is not this test's business
        run.finish()
