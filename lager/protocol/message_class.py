"""How a message class is made: `@message`, the one way to define a message (issue 13).

It gives the class the __init__, __eq__ and __repr__ @dataclass would (and, with `frozen=True`,
a hash of the fields and no assignment), from its annotations, without importing dataclasses
(with inspect, ast, dis and tokenize, ~6 ms) or typing (~5 ms), and without compiling source
for each class as dataclasses does (~0.13 ms a class; lager python loads some forty). Type
checkers see a dataclass (dataclass_transform) and check every constructor call.

What @dataclass offers and @message does not (__post_init__, InitVar, KW_ONLY, dataclasses'
own field(), fields inherited from another class) is a TypeError when the class is made,
never a class that silently differs.
"""
from __future__ import annotations

from ..plain_record import Factory, install

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    from .codec import Message

    _C = TypeVar("_C", bound="type[Message]")
    _T = TypeVar("_T")
else:
    def dataclass_transform(**_kwargs: object) -> Callable[[_C], _C]:
        return lambda decorated: decorated

    def overload(func: Callable[..., Any]) -> Callable[..., Any]:
        return func  # the last definition, the real one, is what runs


class _Missing:
    """A field without a default (dataclasses.MISSING's role, without importing dataclasses)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class MessageField:
    """One field of a message: what docs/protocol.md and the codec need of dataclasses.Field."""

    __slots__ = ("annotation", "default", "default_factory", "name")

    def __init__(self, name: str, annotation: Any, default: Any = MISSING,
                 default_factory: Any = MISSING) -> None:
        self.name = name
        self.annotation = annotation  # as written (a string, under `from __future__`)
        self.default = default
        self.default_factory = default_factory

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.default_factory is MISSING


def _is_class_var(annotation: Any) -> bool:
    return str(annotation).startswith(("ClassVar", "typing.ClassVar"))


def message_fields(cls: type[Message] | Message) -> tuple[MessageField, ...]:
    """The fields of a message class (or message) in order, as `@message` found them."""
    if not isinstance(cls, type):
        cls = type(cls)
    found = cls.__dict__.get("_message_fields")
    if found is None:
        raise TypeError(f"{cls.__name__} is not made by lager.protocol.codec's @message")
    return found  # type: ignore[no-any-return]


def field(*, default_factory: Callable[[], _T]) -> _T:
    """A default made afresh for each message (`field(default_factory=list)`), as
    dataclasses.field's: a list shared by every message would be changed through all of them."""
    return Factory(default_factory)  # type: ignore[return-value]


# What @dataclass does that @message does not: refused with a TypeError, never ignored.
_UNSUPPORTED_ANNOTATIONS = ("KW_ONLY", "dataclasses.KW_ONLY", "InitVar", "dataclasses.InitVar")
# @dataclass keeps a method the class defines itself; @message writes its own over these.
_WRITTEN = ("__init__", "__eq__", "__repr__", "__hash__", "__setattr__", "__delattr__")


def _refuse_what_is_not_supported(cls: type) -> None:
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: @message does not call __post_init__")
    for name in _WRITTEN:
        if name in cls.__dict__:
            raise TypeError(f"{cls.__name__}.{name}: @message makes its own")
    for base in cls.__mro__[1:]:
        # Message itself has no fields: its annotations are all ClassVars.
        annotations = base.__dict__.get("__annotations__", {})  # noqa: RUF063
        if base.__dict__.get("_message_fields") or \
                not all(_is_class_var(a) for a in annotations.values()):
            raise TypeError(f"{cls.__name__}: a message derives from Message alone, not from "
                            f"{base.__name__} (@message would leave out its fields)")


def _field_of(cls: type, name: str, annotation: Any) -> MessageField:
    if str(annotation).startswith(_UNSUPPORTED_ANNOTATIONS):
        raise TypeError(f"{cls.__name__}.{name}: @message has no {annotation}")
    default = cls.__dict__.get(name, MISSING)
    if isinstance(default, Factory):
        delattr(cls, name)  # as @dataclass leaves it: the class has no shared value
        return MessageField(name, annotation, default_factory=default.make)
    if type(default).__hash__ is None:  # dataclasses' own test: a list, a bytearray, a message
        raise TypeError(f"{cls.__name__}.{name}: a mutable default is shared by every "
                        "message; use field(default_factory=...)")
    if type(default).__module__ == "dataclasses":  # its field(), which @message cannot read
        raise TypeError(f"{cls.__name__}.{name}: use lager.protocol.codec.field")
    return MessageField(name, annotation, default)


def _freeze(cls: type, names: tuple[str, ...]) -> None:
    """What @dataclass(frozen=True) gives: a hash of the fields, and no assignment after
    __init__ (which writes the instance's dict directly)."""
    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in names))

    def refuse(self: Any, name: str, *_value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot change {name!r} "
                             "(make a changed copy with .replaced())")

    cls.__hash__ = __hash__  # type: ignore[method-assign, assignment]
    cls.__setattr__ = refuse  # type: ignore[method-assign, assignment]
    cls.__delattr__ = refuse  # type: ignore[method-assign, assignment]


# `@message` or `@message(frozen=True)`. At run time `overload` is this module's own stand-in,
# which ruff does not know for typing's: hence the noqa.
@overload
def message(cls: _C, /) -> _C: ...


@overload
def message(*, frozen: bool = False) -> Callable[[_C], _C]: ...  # noqa: F811


@dataclass_transform(field_specifiers=(field,))
def message(  # noqa: F811
        cls: _C | None = None, /, *, frozen: bool = False) -> _C | Callable[[_C], _C]:
    """A message class without dataclasses: __init__, __eq__, __repr__ and the field list from
    its annotations, as @dataclass makes them (fields in order, defaults as written, a
    field(default_factory=...)'s made afresh; mutable and unhashable, or with frozen=True
    hashable and never changed). Its own fields only: a message derives from Message alone."""
    if cls is None:
        return lambda decorated: _make(decorated, frozen)
    return _make(cls, frozen)


def _make(cls: _C, frozen: bool) -> _C:
    _refuse_what_is_not_supported(cls)
    # Not inspect.get_annotations: inspect is what this module avoids importing.
    fields = [_field_of(cls, name, annotation)
              for name, annotation in cls.__dict__.get("__annotations__", {}).items()  # noqa: RUF063
              if not _is_class_var(annotation)]
    names = tuple(f.name for f in fields)
    required = [f.name for f in fields if f.required]
    if required and names.index(required[-1]) >= len(required):
        raise TypeError(f"{cls.__name__}.{required[-1]}: a required field after a default")
    install(cls, names, {f.name: f.default if f.default is not MISSING
                         else Factory(f.default_factory) for f in fields if not f.required})
    if frozen:
        _freeze(cls, names)
    cls._message_fields = tuple(fields)
    return cls
