"""What a short command loads, read from CPython's own `-X importtime` (issue 13): through a
keeper (a keeper process, or an attached run serving as one) nothing of typing, dataclasses,
inspect, hashlib, click or paramiko; on a first call (no keeper) no dataclasses, inspect,
hashlib, click or paramiko (typing comes with cryptography there). A run needs paramiko, but
not the importlib.metadata its __init__ asks for its own version, nor click (its common form)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import LAGER, Client, laptop_on_a_new_box, wait_for, write_script
from keeper_rig import connections, keeper_sockets, run_serving, run_to_first_pause

KEEPER_PATH_NEVER = ("typing", "dataclasses", "inspect", "hashlib", "click", "paramiko")
FIRST_CALL_NEVER = ("dataclasses", "inspect", "hashlib", "click", "paramiko")
RUN_NEVER = ("click", "client.cli", "client.commands.python")


def _loaded(laptop: Client, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The command's result, and the top-level names of every module it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", LAGER, *args, "--box",
                           laptop.box], env=laptop.env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    modules = _imported(done.stderr)
    assert len(modules) > 20, done.stderr  # the interpreter really reported its imports
    return done, {name.split(".")[0] for name in modules}


def _imported(stderr: str) -> set[str]:
    """The full name of every module that `-X importtime` reported in stderr."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:")}


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
                (["python", "--console", "ffffffff"], 1, "no run with id", KEEPER_PATH_NEVER),
                (["nets", "--json"], 0, "[", KEEPER_PATH_NEVER),
                # An instrument kind's command loads its declaration (kinds/<kind>_spec.py),
                # which builds the request and renders the answer: still none of them.
                (["supply", "supply2", "state"], 0, "supply2: ", KEEPER_PATH_NEVER),
                (["battery", "battery1", "state"], 0, "battery1: ", KEEPER_PATH_NEVER),
                (["adc", "adc1"], 0, "adc1: ", KEEPER_PATH_NEVER),
                (["supply", "supply2", "voltage", "--json"], 0, '"set_voltage"',
                 KEEPER_PATH_NEVER)):
            done, names = _loaded(laptop, *args)
            assert (done.returncode, says in _answer(done)) == (status, True), _answer(done)
            assert names.isdisjoint(never), (args, names & set(never))
        assert connections(laptop) == before  # every one of them went through the keeper


def test_an_instrument_command_first_call_loads_none_of_them(tmp_path: Path) -> None:
    """No keeper at all (LAGER_MUX=0: each one a first call, over the quick client; a console
    to a run that is not there included). typing is
    allowed only because cryptography's own modules import it (checked: it is theirs)."""
    with laptop_on_a_new_box(tmp_path) as laptop:
        laptop.env["LAGER_MUX"] = "0"
        for args, says in ((["python", "--console", "ffffffff"], "no run with id"),
                           (["supply", "supply2", "state"], "Channel: "),
                           (["battery", "battery1", "state"], "SOC"),
                           (["adc", "adc1", "--json"], '"voltage"')):
            done, names = _loaded(laptop, *args)
            assert (done.returncode == 0, says in _answer(done)) == \
                (args[0] != "python", True), _answer(done)
            assert names.isdisjoint(FIRST_CALL_NEVER), (args, names & set(FIRST_CALL_NEVER))
            assert _typing_importers(done) <= {"cryptography"}, (args, _typing_importers(done))
        assert not keeper_sockets(laptop)


def _typing_importers(done: subprocess.CompletedProcess[str]) -> set[str]:
    """The top-level packages whose import brought typing in: importtime lists a module's
    imports before it, indented deeper, so typing's importer is the next line less indented."""
    lines = [line.split("|", 2)[-1] for line in done.stderr.splitlines()
             if line.startswith("import time:")]
    found: set[str] = set()
    for at, name in enumerate(lines):
        if name.strip() != "typing":
            continue
        depth = len(name) - len(name.lstrip())
        parent = next((n for n in lines[at + 1:] if len(n) - len(n.lstrip()) < depth), name)
        found.add(parent.strip().split(".")[0])
    return found


def test_a_second_terminal_beside_an_attached_run_loads_none_of_them(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        laptop.env["LAGER_MUX"] = "1"
        run, ident = run_to_first_pause(laptop, tmp_path)
        run_serving(laptop)
        before = connections(laptop)
        done, names = _loaded(laptop, "python", "--continue", ident)
        assert done.returncode == 0 and done.stdout.startswith("resumed run"), _answer(done)
        assert names.isdisjoint(KEEPER_PATH_NEVER), names & set(KEEPER_PATH_NEVER)
        assert connections(laptop) == before  # the run's own connection carried it
        run.err.wait_for("=== resumed")
        run.proc.kill()  # its second pause is not this test's business
        run.finish()


def test_a_run_imports_paramiko_without_importlib_metadata(tmp_path: Path) -> None:
    """`lager python` the full way (a box the quick client cannot take, or LAGER_QUICK_RUN=0:
    tests/test_quick_run.py has the quick way, with no paramiko at all) needs paramiko, whose
    __init__ reads its own version through importlib.metadata (~70 modules).
    client/paramiko_package.py reads that version from the dist-info beside the package (and
    a run does not run the __init__ at all: tests/test_import_paramiko.py): paramiko still
    says its real version, and the real importlib.metadata is what anything after it gets."""
    import importlib.metadata

    with laptop_on_a_new_box(tmp_path) as laptop:
        script = write_script(tmp_path, "hello.py", "print('hello from the box')\n")
        done = subprocess.run([sys.executable, "-X", "importtime", LAGER, "python", str(script),
                               "--box", laptop.box], env={**laptop.env, "LAGER_QUICK_RUN": "0"},
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (0, "hello from the box\n"), _answer(done)
    loaded = _imported(done.stderr)
    assert "paramiko.transport" in loaded
    assert "importlib.metadata" not in loaded
    # The common form of a run starts without click (client/script_fastpath.py), nor the
    # python command's click declaration.
    assert loaded.isdisjoint(RUN_NEVER), loaded & set(RUN_NEVER)
    # Nor does it build its records with @dataclass (~0.5 ms a class: it compiles source),
    # but as messages are (client/records.py).
    ours = sorted(name for name in loaded if name.split(".")[0] in ("client", "lager"))
    probe = subprocess.run([sys.executable, "-c", (
        "import dataclasses, importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    module = importlib.import_module(name)\n"
        "    for value in list(vars(module).values()):\n"
        "        if isinstance(value, type) and value.__module__ == name and "
        "dataclasses.is_dataclass(value):\n"
        "            print(name, value.__name__)\n"), *ours],
        capture_output=True, text=True, timeout=60)
    assert len(ours) > 20 and "client.run_client" in ours, ours
    # The two the fleet derives its own dataclasses from (client/fleet) stay dataclasses.
    assert (probe.returncode, probe.stdout) == (
        0, "client.context LagerContext\nclient.run_client RunRequest\n"), \
        probe.stdout + probe.stderr
    probe = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "from client import ssh\n"
        "p = ssh._paramiko()\n"
        "from paramiko.transport import Transport\n"
        "print(p.__version__, Transport._CLIENT_ID, 'importlib.metadata' in sys.modules)\n"
        "import importlib.metadata\n"
        "print(importlib.metadata.version('click'), hasattr(importlib.metadata, 'entry_points'))\n")],
        capture_output=True, text=True, timeout=60)
    real = importlib.metadata.version("paramiko")
    assert probe.stdout.splitlines() == [
        f"{real} paramiko_{real} False", f"{importlib.metadata.version('click')} True"], \
        probe.stderr


MESSAGE_MODULES = ("lager.protocol.channel", "lager.protocol.events",
                   "lager.protocol.reservation", "lager.protocol.link", "lager.protocol.pauses")


def test_the_message_modules_import_neither_dataclasses_nor_typing() -> None:
    """Every message is made by codec's @message: loading all of them (as `lager python` and
    the agent do) brings in no dataclasses (nor its inspect) and no typing."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import " + ", ".join(MESSAGE_MODULES)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = _imported(done.stderr)
    assert set(MESSAGE_MODULES) | {"lager.protocol.codec"} <= loaded, loaded
    assert loaded.isdisjoint({"dataclasses", "typing", "inspect"}), \
        loaded & {"dataclasses", "typing", "inspect"}
