"""How client/paramiko_package.py reads the names paramiko's __init__ re-exports (a name it
reads wrongly would be answered with the wrong object, without the __init__ ever running)."""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from client.paramiko_package import _reexports


def test_each_form_of_reexport_is_read() -> None:
    source = ("from importlib import metadata\n"
              "__version__ = metadata.version('paramiko')\n"
              "from paramiko.transport import (\n    SecurityOptions,\n    Transport,\n)\n"
              "from paramiko.client import SSHClient, AutoAddPolicy\n"
              "from paramiko.common import io_sleep\n"
              "key_classes = [1]\n")
    assert _reexports(source) == {"SecurityOptions": "transport", "Transport": "transport",
                                  "SSHClient": "client", "AutoAddPolicy": "client",
                                  "io_sleep": "common"}


def test_a_form_not_read_here_declines_them_all() -> None:
    """Renamed, commented, bound twice, relative only: None (paramiko imports as always)."""
    for source in ("from paramiko.client import SSHClient as Client\n",
                   "from paramiko.client import (\n    SSHClient,  # the client\n)\n",
                   "from paramiko.client import SSHClient\nfrom paramiko.other import SSHClient\n",
                   "from .client import SSHClient\n"):
        assert _reexports(source) is None, source


def test_the_installed_paramiko_reexports_what_its_modules_define() -> None:
    """Every name read from the installed __init__ is defined by the submodule named for it,
    and the names paramiko's own PKey.from_path asks the package for are among them."""
    spec = importlib.util.find_spec("paramiko")
    assert spec is not None and spec.origin is not None
    found = _reexports(Path(spec.origin).read_text())
    assert found is not None
    assert {"ECDSAKey", "Ed25519Key", "RSAKey", "SSHClient", "SSHException"} <= set(found)
    for name, sub in found.items():
        assert hasattr(importlib.import_module(f"paramiko.{sub}"), name), (name, sub)
