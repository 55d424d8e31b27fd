"""paramiko's package __init__ on a full connection's path (issue 13,
client/paramiko_package.py): a run the full way (LAGER_QUICK_RUN=0, or a box the quick client
cannot take) loads paramiko.transport and what it imports, not SSHClient, the SFTP server, the
agent, ProxyCommand or importlib.metadata; and `import paramiko` is still the whole package to
anyone who asks it for more.

The module sets are read from sys.modules inside the process: `-X importtime` reports only
the imports that go through the import statement, not importlib.import_module, which is how
the package module brings in a submodule it is asked for."""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import laptop_on_a_new_box, write_script

# `lager` as its entry point runs it, with sys.modules written out as the process ends (it
# ends through os._exit, past atexit), and the paramiko package's own names.
LAGER_REPORTING = """
import json, os, sys
exit_now = os._exit
def report_then_exit(code):
    paramiko = sys.modules.get("paramiko")
    with open(os.environ["MODULES_OUT"], "w") as f:
        json.dump({"modules": sorted(sys.modules),
                   "package_names": sorted(vars(paramiko)) if paramiko else []}, f)
    exit_now(code)
os._exit = report_then_exit
sys.argv = ["lager", *sys.argv[1:]]
from client.entry import main
main()
"""
# Each of these comes only with paramiko's __init__ (or, for the last ones, with what the
# run's path defers: an ssh-agent nobody needed, a ProxyCommand nobody gave).
NOT_ON_A_RUN = ("paramiko.client", "paramiko.sftp_server", "paramiko.auth_strategy",
                "paramiko.proxy", "paramiko.agent", "importlib.metadata", "tempfile",
                "subprocess")


def test_a_full_way_run_does_not_run_paramikos_package_init(tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    with laptop_on_a_new_box(tmp_path) as laptop:
        script = write_script(tmp_path, "hello.py", "print('hello from the box')\n")
        done = subprocess.run([sys.executable, "-c", LAGER_REPORTING, "python", str(script),
                               "--box", laptop.box],
                              env={**laptop.env, "MODULES_OUT": str(out), "LAGER_QUICK_RUN": "0"},
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "hello from the box\n"), done.stderr
    seen = json.loads(out.read_text())
    modules = set(seen["modules"])
    assert {"paramiko", "paramiko.transport", "paramiko.pkey", "client.follow"} <= modules
    assert modules.isdisjoint(NOT_ON_A_RUN), modules & set(NOT_ON_A_RUN)
    # The package module holds its version and the submodules, none of __init__'s names.
    names = set(seen["package_names"])
    assert {"__version__", "transport", "util"} <= names, names
    assert names.isdisjoint({"SSHClient", "Transport", "key_classes", "__author__"}), names


def _probe(code: str, **env: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**_clean_env(), **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_package_completes_itself_when_asked_for_more() -> None:
    """After a connection's import: a re-exported name is its submodule's object without the
    __init__ running; `import paramiko; paramiko.SSHClient` works; a name only the __init__
    makes runs it, into the same module; its version never asked importlib.metadata."""
    lines = _probe(
        "import sys\n"
        "from client import ssh\n"
        "p = ssh._paramiko()\n"
        "print('paramiko.client' in sys.modules, 'SSHClient' in vars(p))\n"
        "from paramiko import SSHException\n"
        "import paramiko.ssh_exception\n"
        "print(SSHException is paramiko.ssh_exception.SSHException, 'paramiko.client' in sys.modules)\n"
        "import paramiko\n"
        "print(paramiko is p, paramiko.SSHClient.__module__, 'key_classes' in vars(paramiko))\n"
        "print([c.__name__ for c in paramiko.key_classes], 'paramiko.sftp_server' in sys.modules)\n"
        "print('__getattr__' in vars(paramiko), paramiko.Transport is paramiko.transport.Transport)\n"
        "print(paramiko.__version__, 'importlib.metadata' in sys.modules)\n"
        "try:\n"
        "    paramiko.no_such_name\n"
        "except AttributeError as exc:\n"
        "    print('AttributeError', exc)\n"
        "import importlib.metadata\n"
        "print(importlib.metadata.version('click'))\n")
    real = importlib.metadata.version("paramiko")
    assert lines == [
        "False False",
        "True False",
        "True paramiko.client False",
        "['RSAKey', 'Ed25519Key', 'ECDSAKey'] True",
        "False True",
        f"{real} False",
        "AttributeError module 'paramiko' has no attribute 'no_such_name'",
        importlib.metadata.version("click")], lines


def test_a_paramiko_without_its_dist_info_imports_as_always(tmp_path: Path) -> None:
    """A layout the package module does not expect (here: a copy of paramiko with no
    dist-info beside it) is imported the usual way, __init__ and all."""
    import paramiko

    shutil.copytree(Path(paramiko.__file__).parent, tmp_path / "paramiko")
    lines = _probe(
        "import sys\n"
        "from client import paramiko_package, ssh\n"
        "print(paramiko_package.install())\n"
        "p = ssh._paramiko()\n"
        "print(p.__file__, 'SSHClient' in vars(p), 'paramiko.client' in sys.modules)\n",
        PYTHONPATH=str(tmp_path))
    assert lines == ["None", f"{tmp_path / 'paramiko' / '__init__.py'} True True"], lines
