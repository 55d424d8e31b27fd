"""Standard modules imported without a dependency they load only for a rarely used function
(issue 13): the dependency is a stand-in while the module imports, and the real module the
first time anything asks the stand-in for something.

- pathlib imports urllib.parse (with ipaddress) for Path.as_uri alone: ~3 ms of every `lager`
  start (9 of the ~170 million instructions of a first-call `lager python --list`).
- dataclasses imports inspect (with ast, dis, tokenize: 33 of the ~240 million instructions
  of a quick `lager python hello.py`) only to write the docstring of a dataclass that has
  none. A run's start makes two dataclasses (LagerContext, and run_client's RunRequest): with
  a docstring each, inspect is never loaded. On the full way cryptography's own undocumented
  dataclasses (loaded with paramiko) load it all the same.

The stand-in is withdrawn from sys.modules once the module is imported: whoever imports the
dependency after that gets the real module. The module itself keeps the stand-in as its
global, and each name asked of it is the real module's.
"""
from __future__ import annotations

import sys
import types

# Not typing.TYPE_CHECKING: this module is imported before typing would be (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def pathlib() -> None:
    """Import pathlib, urllib.parse left for when as_uri (or anything else) asks for it."""
    _import_sparing("pathlib", "urllib.parse", ("quote_from_bytes",))


def dataclasses() -> None:
    """Import dataclasses, inspect left for the first dataclass without a docstring."""
    _import_sparing("dataclasses", "inspect")


def _import_sparing(name: str, spared: str, called: tuple[str, ...] = ()) -> None:
    """Import `name` while `spared` is a stand-in. `called`: the functions `name` takes from
    `spared` at its import (`from spared import f`), each a wrapper that calls the real one.
    Nothing when either is loaded already (nothing to save, or too late to)."""
    if name in sys.modules or spared in sys.modules:
        return
    stand_in = types.ModuleType(spared)

    # __import__, not importlib.import_module: `python -X importtime` reports only the
    # former, and the tests read what a command loads from it (tests/test_keeper_imports.py).
    def real() -> Any:
        if sys.modules.get(spared) is stand_in:
            del sys.modules[spared]
        __import__(spared)
        return sys.modules[spared]

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            # The import system's probes (`from M import X` asks M for __path__): answered
            # as the real module answers them, without loading it.
            raise AttributeError(attr)
        return getattr(real(), attr)

    def calls_the_real(function: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return getattr(real(), function)(*args, **kwargs)

        wrapper.__name__ = wrapper.__qualname__ = function
        return wrapper

    for function in called:
        setattr(stand_in, function, calls_the_real(function))
    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[spared] = stand_in
    try:
        __import__(name)
    finally:
        if sys.modules.get(spared) is stand_in:
            del sys.modules[spared]
