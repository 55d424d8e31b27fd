"""The `paramiko` package module without running paramiko's __init__ until something needs it.

`import paramiko` runs the package's __init__, which imports all of paramiko (SSHClient and
its policies, the agent, the SFTP server, ProxyCommand, the auth strategies...) and asks
importlib.metadata (~70 modules) for paramiko's own version. A connection needs
paramiko.transport and what it imports; the rest cost some 10 ms of a `lager python` start
before its key exchange could leave (issue 13).

So `install` puts in sys.modules the package module the import system would have made
(module_from_spec: same spec, __path__, __file__), with `__version__` read from the one
paramiko-VERSION.dist-info beside it, and without running __init__. Submodules import into
it as usual (`import paramiko.transport`, `from paramiko import util`). A name it does not
have yet, on first use (PEP 562 __getattr__):
  - a submodule (`paramiko.util`): imported, as the import system does for `from . import`;
  - a name the __init__ only re-exports from a submodule (`paramiko.SSHException`, and the
    `from paramiko import Ed25519Key` that paramiko's own PKey.from_path does): that
    submodule's object, the very one the __init__ binds to that name;
  - anything else (`paramiko.key_classes`, `__author__`): the real __init__ runs into this
    same module object, which is then the complete package, as if imported the usual way.

Anything unexpected (no single dist-info, not a plain source package, an __init__ that
re-exports in a form not read here) and `install` declines: the caller imports paramiko as
always (client/ssh.py).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types

# Not typing.TYPE_CHECKING: as the other modules a start loads, without typing (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

PACKAGE = "paramiko"
_METADATA = "importlib.metadata"
_lock = threading.RLock()


def dist_info_version(spec: Any) -> str | None:
    """paramiko's version, as the name of the one paramiko-VERSION.dist-info beside the
    package; None when that is not so (an egg, a zip, two installs)."""
    origin = getattr(spec, "origin", None)
    if not origin:
        return None
    site = os.path.dirname(os.path.dirname(origin))
    try:
        found = [name for name in os.listdir(site)
                 if name.startswith(f"{PACKAGE}-") and name.endswith(".dist-info")]
    except OSError:
        return None
    if len(found) != 1:
        return None
    return found[0][len(PACKAGE) + 1:-len(".dist-info")]


def install() -> types.ModuleType | None:
    """The paramiko package module in sys.modules, its __init__ not run; None (and nothing
    changed) when paramiko is imported already or is not laid out as expected."""
    if PACKAGE in sys.modules:
        return None
    spec = importlib.util.find_spec(PACKAGE)
    loader = getattr(spec, "loader", None)
    if spec is None or not spec.submodule_search_locations or \
            not isinstance(loader, importlib.machinery.SourceFileLoader) or \
            not spec.origin or os.path.basename(spec.origin) != "__init__.py":
        return None
    version = dist_info_version(spec)
    if version is None:
        return None
    try:
        with open(spec.origin, encoding="utf-8") as f:
            source = f.read()
    except OSError:
        return None
    exports = _reexports(source)
    if exports is None:
        return None
    module = importlib.util.module_from_spec(spec)
    module.__version__ = version  # type: ignore[attr-defined]
    module.__getattr__ = _resolver(module, spec, exports, version)  # type: ignore[method-assign]
    sys.modules[PACKAGE] = module
    return module


def _reexports(source: str) -> dict[str, str] | None:
    """Each name the __init__ binds by `from paramiko.SUB import NAME` (or a parenthesised list
    of names) at the start of a line, to SUB; None when a re-export is in a form this does not
    read (`A as B`, a comment among the names), or a name is bound twice. Read with string
    operations: compiling a regular expression for it cost more (~0.2 ms) than reading."""
    found: dict[str, str] = {}
    for statement in ("\n" + source).split("\nfrom paramiko.")[1:]:
        sub, sep, rest = statement.partition(" import ")
        if not sep or not sub.isidentifier():
            return None
        names = rest.partition("\n")[0]
        if rest.startswith("("):
            names, closed, _ = rest[1:].partition(")")
            if not closed:
                return None
        for name in names.replace("\n", " ").split(","):
            name = name.strip()
            if not name:
                continue
            if not name.isidentifier() or name in found:
                return None  # `A as B`, a comment, a name bound again: not ours to guess
            found[name] = sub
    return found or None


def _submodule(name: str) -> types.ModuleType:
    """paramiko.NAME, imported. By __import__, not importlib.import_module: `python -X
    importtime` reports only the former (the tests read what a command loads from it)."""
    __import__(f"{PACKAGE}.{name}")
    return sys.modules[f"{PACKAGE}.{name}"]


def _resolver(module: types.ModuleType, spec: Any, exports: dict[str, str], version: str
              ) -> Any:
    running = False  # the __init__ runs (in the thread holding _lock)

    def __getattr__(name: str) -> Any:
        nonlocal running
        sub = exports.get(name)
        if sub is not None:
            return getattr(_submodule(sub), name)
        if name.isidentifier() and importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
            return _submodule(name)
        with _lock:  # a completion under way in another thread ends before this one looks
            if running:  # this thread's own, under way: as a partly imported module answers
                raise AttributeError(f"partially initialized module {PACKAGE!r} has no "
                                     f"attribute {name!r}")
            if module.__dict__.get("__getattr__") is __getattr__:
                running = True
                try:
                    with metadata_answering(version):
                        spec.loader.exec_module(module)
                finally:
                    running = False
                # The complete package: it answers as paramiko always has from here on.
                del module.__dict__["__getattr__"]
        try:
            return module.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    return __getattr__


@contextlib.contextmanager
def metadata_answering(version: str) -> Iterator[None]:
    """While the block runs, importlib.metadata is a stand-in that answers
    `version("paramiko")` with `version` and passes any other question to the real module.

    paramiko's __init__ asks importlib.metadata for its own version (paramiko 4 on), only to
    put it in the SSH version string: importing importlib.metadata loads some 70 modules
    (email, zipfile, csv...), 8 to 15 ms of a `lager python` start (issue 13). The real
    module is what anyone gets once the block is over, and within it on any other question.
    Nothing is stood in for when importlib.metadata is loaded already."""
    if _METADATA in sys.modules:
        yield
        return
    stand_in = types.ModuleType(_METADATA)

    def withdraw() -> None:
        """The stand-in out of the way: the real module is what anyone gets from here on."""
        if sys.modules.get(_METADATA) is stand_in:
            sys.modules.pop(_METADATA, None)
        if getattr(importlib, "metadata", None) is stand_in:
            with contextlib.suppress(AttributeError):
                delattr(importlib, "metadata")

    def real() -> Any:
        withdraw()
        return importlib.import_module(_METADATA)

    def version_of(name: str) -> str:
        return version if name == PACKAGE else str(real().version(name))

    stand_in.version = version_of  # type: ignore[attr-defined]
    # Anything else a module imported meanwhile might ask (PEP 562): the real module's.
    stand_in.__getattr__ = lambda attr: getattr(real(), attr)  # type: ignore[method-assign]
    sys.modules[_METADATA] = stand_in
    # Also as the package's attribute: `import importlib.metadata` then `importlib.metadata.X`
    # reads it there.
    setattr(importlib, "metadata", stand_in)  # noqa: B010
    try:
        yield
    finally:
        withdraw()
