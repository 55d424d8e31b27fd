"""pathlib without urllib.parse (issue 13).

pathlib imports urllib.parse (with ipaddress) at its own import, for one function that only
Path.as_uri calls: ~3 ms of every `lager` start (12 of the ~190 million instructions of a
first-call `lager python --list`), and nothing lager runs calls as_uri. `load` imports pathlib
while urllib.parse is a stand-in whose quote_from_bytes imports the real module when first
called; any other name asked of it (a pathlib that imports more of it) is the real module's.
The stand-in is withdrawn once pathlib is loaded: whoever imports urllib.parse after that gets
the real module.
"""
from __future__ import annotations

import sys
import types

# Not typing.TYPE_CHECKING: this module is imported before typing would be (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_PARSE = "urllib.parse"


def load() -> None:
    """Import pathlib, with urllib.parse left for when it is used; nothing when pathlib is
    loaded already, or urllib.parse is (then there is nothing to save)."""
    if "pathlib" in sys.modules or _PARSE in sys.modules:
        return
    import importlib

    stand_in = types.ModuleType(_PARSE)

    def real() -> Any:
        if sys.modules.get(_PARSE) is stand_in:
            del sys.modules[_PARSE]
        return importlib.import_module(_PARSE)

    def quote_from_bytes(bs: bytes, safe: str | bytes = "/") -> str:
        return str(real().quote_from_bytes(bs, safe))

    stand_in.quote_from_bytes = quote_from_bytes  # type: ignore[attr-defined]
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            # The import system's probes (`from urllib.parse import X` asks for __path__):
            # what the real module answers, since it has none of them either.
            raise AttributeError(name)
        return getattr(real(), name)

    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[_PARSE] = stand_in
    try:
        import pathlib  # noqa: F401
    finally:
        if sys.modules.get(_PARSE) is stand_in:
            del sys.modules[_PARSE]
