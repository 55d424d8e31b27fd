"""`@record`: the client's own plain records (a run's request, the click context, a host key
line...), made as lager's messages are (lager/protocol/message_class.py): __init__, __eq__,
__repr__ and with frozen=True a hash and no assignment, from the annotations, as @dataclass
makes them; type checkers see a dataclass.

Not @dataclass: it compiles source for every class, ~0.4-0.6 ms each here, and eight of them
stood on `lager python`'s path before its first byte (~4 ms, issue 13); six are records now
(LagerContext and RunRequest stay dataclasses: the fleet derives dataclasses from them, and a
dataclass sees no record's fields). What @dataclass offers beyond that (__post_init__,
InitVar, ordering, a base class with fields) is a TypeError when the class is made, never a
class that silently differs."""
from __future__ import annotations

from lager.protocol.message_class import field as field
from lager.protocol.message_class import message as _made_as_messages_are

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T")
else:
    def dataclass_transform(**_kwargs: object) -> Callable[[Any], Any]:
        return lambda decorated: decorated

    def overload(func: Callable[..., Any]) -> Callable[..., Any]:
        return func  # the last definition, the real one, is what runs

__all__ = ["field", "record"]


@overload
def record(cls: type[_T], /) -> type[_T]: ...


@overload
def record(*, frozen: bool = False) -> Callable[[type[_T]], type[_T]]: ...  # noqa: F811


@dataclass_transform(field_specifiers=(field,))
def record(  # noqa: F811
        cls: type[_T] | None = None, /, *, frozen: bool = False
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """`@record` or `@record(frozen=True)`, as `@dataclass` / `@dataclass(frozen=True)`."""
    make: Any = _made_as_messages_are
    if cls is None:
        return lambda decorated: make(decorated, frozen=frozen)  # type: ignore[no-any-return]
    return make(cls, frozen=frozen)  # type: ignore[no-any-return]
