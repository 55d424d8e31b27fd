"""How every lager message is written down once: a typed class whose field types are the check.

A message class derives from Message and is made by `@message` (lager.protocol.message_class,
importable from here: the one way to define a message), which gives it the __init__, __eq__
and __repr__ @dataclass would (and, with `frozen=True`, a hash and no assignment) without
importing dataclasses or typing: every lager command loads messages, and those imports and
making each class cost start-up time (issue 13). A default made afresh for each message is
`field(default_factory=list)`; `msg.replaced(name=value)` is a copy with some fields changed
(dataclasses.replace's role). `message_fields()` and `field_types()` list the fields.

A message class lists its fields with their types; `encode()` writes one JSON object (with its
`op` tag when it has one) and `decode()`/`from_dict()` check every field against its declared
type. Any message that does not decode raises ProtocolError, one line that names the message
and the field, so a peer gets one clear reason instead of a KeyError somewhere later.

Rules the decoder applies, the same for every message:
- unknown keys are ignored (a newer peer may add fields; the version says what changed);
- a missing field takes its default (a list made afresh for a `default_factory=list` one);
  a field without a default is required;
- `int` never takes a bool, `float` takes an int but never a bool or NaN;
- nested messages and lists of them are checked the same way.
"""
from __future__ import annotations

import json
import math
import sys
import types

from ..errors import LagerError

# A message class is made by message_class's @message; these names are still codec's.
from .message_class import MISSING as MISSING
from .message_class import MessageField, message_fields
from .message_class import field as field
from .message_class import message as message

# `typing` (~5 ms) is never imported at run time here: every lager command loads this module
# (issue 13). Its names are for type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, ClassVar, TypeVar

    M = TypeVar("M", bound="Message")

_MAX_SHOWN = 60


class _AnyValue:
    """`Any` in an annotation, resolved without importing typing."""

    def __repr__(self) -> str:
        return "Any"


_ANY = _AnyValue()


class ProtocolError(LagerError):
    """A message that does not decode: the one line the peer is told."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _is_any(tp: Any) -> bool:
    if tp is _ANY:
        return True
    typing = sys.modules.get("typing")  # typing.Any only comes from a module that loaded it
    return typing is not None and tp is typing.Any


def _is_union(tp: Any) -> bool:
    if isinstance(tp, types.UnionType):
        return True
    typing = sys.modules.get("typing")  # Optional[X] / Union[X, Y], from typing
    return typing is not None and getattr(tp, "__origin__", None) is typing.Union


def _origin(tp: Any) -> Any:
    return tp.__origin__ if isinstance(tp, types.GenericAlias) else None


def type_name(tp: Any) -> str:
    if _is_union(tp):
        return " or ".join(type_name(a) for a in tp.__args__)
    origin = _origin(tp)
    if origin is list:
        return f"a list of {type_name(tp.__args__[0])}"
    if origin is dict:
        return f"an object of {type_name(tp.__args__[1])}"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, Message):
        return "an object"
    if _is_any(tp):
        return "anything"
    return {str: "a string", int: "an integer", float: "a number",
            bool: "true or false"}.get(tp, str(tp))


def _check(tp: Any, value: Any, where: str) -> Any:
    """value as type tp, or ProtocolError naming `where`."""
    if _is_any(tp):
        return value
    origin = _origin(tp)
    if _is_union(tp):
        for option in tp.__args__:
            try:
                return _check(option, value, where)
            except ProtocolError:
                continue
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer of hundreds of digits
                number = math.nan
            if not math.isnan(number):
                return number
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = tp.__args__
            return [_check(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            _, item = tp.__args__
            return {k: _check(item, v, f"{where}.{k}") for k, v in value.items()}
    elif isinstance(tp, type) and issubclass(tp, Message):
        if isinstance(value, dict):
            return tp.from_dict(value, where)
        raise ProtocolError(f"{where} must be an object, not {_shown(value)}")
    raise ProtocolError(f"{where} must be {type_name(tp)}, not {_shown(value)}")


def _resolve(cls: type, name: str, annotation: Any) -> Any:
    """A field's type from its annotation as written, the way typing.get_type_hints would,
    without importing typing: evaluated among the builtins and the class's module, with `Any`
    as our own marker. Anything this does not cover (typing's other forms) goes to
    typing.get_type_hints."""
    if not isinstance(annotation, str):
        return annotation
    names = dict(vars(sys.modules[cls.__module__]))
    names["Any"] = _ANY
    try:
        return eval(annotation, names)  # our own class's annotation, never input
    except (NameError, TypeError, AttributeError, SyntaxError):
        import typing

        # Message's own ClassVar annotations, and `Any`, are names only type checkers import.
        return typing.get_type_hints(cls, localns={"ClassVar": typing.ClassVar,
                                                   "Any": typing.Any})[name]


def field_types(cls: type[Message]) -> dict[str, Any]:
    """Each field's type, as the decoder checks it (typing.get_type_hints' role: a message's
    module imports typing's names for type checkers only)."""
    return {f.name: tp for f, tp in cls._fields()}


class Message:
    """Base of every message. Subclasses are made by `@message`; OP is the `op` tag, if any,
    and WHAT names the message in errors ("run request")."""

    OP: ClassVar[str | None] = None
    WHAT: ClassVar[str] = "message"
    _message_fields: ClassVar[tuple[MessageField, ...] | None] = None
    _types: ClassVar[list[tuple[MessageField, Any]] | None] = None

    @classmethod
    def _fields(cls) -> list[tuple[MessageField, Any]]:
        # Resolved once per class, on first use: scripts that never decode never pay for it.
        found = cls.__dict__.get("_types")
        if found is None:
            found = [(f, _resolve(cls, f.name, f.annotation)) for f in message_fields(cls)]
            cls._types = found
        return found  # type: ignore[no-any-return]

    def replaced(self: M, **changes: Any) -> M:
        """A copy with `changes` (dataclasses.replace's role); a name that is not a field is
        a TypeError, as from __init__."""
        values = {f.name: getattr(self, f.name) for f in message_fields(self)}
        values.update(changes)
        return type(self)(**values)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {} if self.OP is None else {"op": self.OP}
        for f in message_fields(self):
            body[f.name] = _plain(getattr(self, f.name))
        return body

    def as_line(self) -> str:
        """The message as one line of text, without its newline."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def encode(self) -> bytes:
        """One JSON object and a newline: a line on a channel, a datagram on a socket."""
        return (json.dumps(self.to_dict(), separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_dict(cls: type[M], body: Any, where: str | None = None) -> M:
        """Check body field by field. `where` names a nested message (`files[0]`) in errors;
        a top-level one is named by WHAT."""
        top = where is None
        name = f"malformed {cls.WHAT}" if top else where
        if not isinstance(body, dict):
            raise ProtocolError(f"{name}: send one JSON object" if top
                                else f"{name} must be an object")
        if cls.OP is not None and body.get("op", cls.OP) != cls.OP:
            raise ProtocolError(f"{name}: op is {_shown(body.get('op'))}, not {cls.OP!r}")
        values: dict[str, Any] = {}
        for f, tp in cls._fields():
            field_name = f"{name}: {f.name}" if top else f"{name}.{f.name}"
            if f.name in body:
                values[f.name] = _check(tp, body[f.name], field_name)
            elif f.required:
                raise ProtocolError(f"{field_name} is missing")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"{name}: {exc}") from None

    @classmethod
    def decode(cls: type[M], data: bytes | str) -> M:
        return cls.from_dict(load_object(data, cls.WHAT))


def _plain(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def load_object(data: bytes | str, what: str) -> dict[str, Any]:
    """One JSON object, or ProtocolError: bad UTF-8, bad JSON, nesting deeper than the parser
    goes, or something that is not an object."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # ValueError covers bad UTF-8 and bad JSON
        body = None
    if not isinstance(body, dict):
        raise ProtocolError(f"malformed {what}: send one JSON object")
    return body


def decode_one_of(data: bytes | str, classes: Sequence[type[Message]],
                  what: str) -> Message:
    """The message among `classes` that the `op` tag names."""
    body = load_object(data, what)
    op = body.get("op")
    for cls in classes:
        if op == cls.OP:
            return cls.from_dict(body)
    known = ", ".join(str(c.OP) for c in classes)
    raise ProtocolError(f"malformed {what}: op {_shown(op)} is not one of {known}")
