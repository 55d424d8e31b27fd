"""__init__, __eq__ and __repr__ for a plain typed record, as @dataclass makes them, without
importing dataclasses (it brings inspect, ast, dis and tokenize: about 6 ms of a 40 ms short
command from a second terminal, issue 13).

Two decorators use it: lager.protocol.codec's `@message` (the messages a short command sends)
and client/config.py's records (every command reads a Box). The methods are closures, not
generated source as dataclasses compiles it: compiling costs ~0.13 ms a class, more than this
__init__ costs in a short command's whole life.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Factory:
    """A default made afresh for each record (dataclasses' default_factory)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def install(cls: type, names: tuple[str, ...], defaults: dict[str, Any]) -> None:
    """Give cls an __init__ taking `names` (positional or by keyword, `defaults` for those
    not given: a Factory is called), __eq__ and __repr__ over them, and no hash (mutable,
    as a dataclass)."""
    what = f"{cls.__name__}()"

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{what} takes {len(names)} arguments, not {len(args)}")
        given = dict(zip(names, args, strict=False))
        for key in kwargs:
            if key in given or key not in names:
                raise TypeError(f"{what} got an unexpected or repeated argument {key!r}")
        given.update(kwargs)
        missing = [name for name in names if name not in given and name not in defaults]
        if missing:
            raise TypeError(f"{what} is missing {', '.join(map(repr, missing))}")
        state = vars(self)
        for name in names:
            if name in given:
                state[name] = given[name]
            else:
                value = defaults[name]
                state[name] = value.make() if isinstance(value, Factory) else value

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__qualname__}({inner})"

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = __init__  # type: ignore[misc]
    cls.__eq__ = __eq__  # type: ignore[method-assign, assignment]
    cls.__repr__ = __repr__  # type: ignore[method-assign, assignment]
    cls.__hash__ = None  # type: ignore[assignment]
