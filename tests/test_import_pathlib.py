"""pathlib without urllib.parse and ipaddress at a `lager` start (issue 13,
client/lean_imports.py): neither a first call nor a run loads them, and Path.as_uri and
urllib.parse still work in full for whoever uses them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import laptop_on_a_new_box, write_script
from test_import_paramiko import LAGER_REPORTING

NEVER_AT_A_START = ("urllib.parse", "ipaddress")


def _modules(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[str, set[str]]:
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", LAGER_REPORTING, *args],
                          env={**env, "MODULES_OUT": str(out)}, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout, set(json.loads(out.read_text())["modules"])


def test_neither_a_first_call_nor_a_run_loads_urllib_parse(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        laptop.env["LAGER_MUX"] = "0"
        script = write_script(tmp_path, "hello.py", "print('hello from the box')\n")
        # A run the quick way (the default) and the full way (paramiko), then short requests.
        for args, says, quick in ((["python", str(script)], "hello from the box\n", "1"),
                                  (["python", str(script)], "hello from the box\n", "0"),
                                  (["python", "--list"], "hello.py", "1"),
                                  (["nets", "--json"], "[", "1")):
            env = {**laptop.env, "LAGER_QUICK_RUN": quick}
            out, modules = _modules(tmp_path, env, *args, "--box", laptop.box)
            assert says in out, (args, out)
            assert "pathlib" in modules, args
            assert modules.isdisjoint(NEVER_AT_A_START), (args, modules & set(NEVER_AT_A_START))


def test_path_as_uri_and_urllib_parse_work_after_it() -> None:
    done = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "from client import lean_imports\n"
        "lean_imports.pathlib()\n"
        "import pathlib\n"
        "print('urllib.parse' in sys.modules, 'ipaddress' in sys.modules)\n"
        "print(pathlib.Path('/a b/c%').as_uri())\n"
        "print(type(sys.modules['urllib.parse'].quote).__name__)\n"
        "import urllib.parse\n"
        "print(urllib.parse.urlsplit('ssh://[::1]:22/x').hostname)\n")],
        capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["False False", "file:///a%20b/c%25", "function", "::1"], \
        done.stdout + done.stderr



def test_dataclasses_load_inspect_only_for_a_class_without_docs() -> None:
    """client/lean_imports.py's other stand-in: a documented dataclass needs no inspect, an
    undocumented one gets the docstring dataclasses always writes, and inspect is whole."""
    done = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "from client import lean_imports\n"
        "lean_imports.dataclasses()\n"
        "from dataclasses import dataclass, field\n"
        "print('inspect' in sys.modules)\n"
        "@dataclass\n"
        "class Told:\n"
        "    \"Its own words.\"\n"
        "    x: int\n"
        "print(Told.__doc__, Told(1), 'inspect' in sys.modules)\n"
        "from client.context import LagerContext\n"
        "print('inspect' in sys.modules)\n"
        "@dataclass\n"
        "class Untold:\n"
        "    x: int\n"
        "    y: list = field(default_factory=list)\n"
        "print(Untold.__doc__, 'inspect' in sys.modules)\n"
        "import inspect, dataclasses\n"
        "print(inspect.signature(Untold), dataclasses.inspect.isclass(Untold))\n")],
        capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [
        "False", "Its own words. Told(x=1) False", "False",
        "Untold(x: int, y: list = <factory>) True",
        "(x: int, y: list = <factory>) -> None True"], done.stdout + done.stderr
