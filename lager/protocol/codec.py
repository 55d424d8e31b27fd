"""How every lager message is written down once: a dataclass whose field types are the check.

A message class lists its fields with their types; `encode()` writes one JSON object (with its
`op` tag when it has one) and `decode()`/`from_dict()` check every field against its declared
type. Any message that does not decode raises ProtocolError, one line that names the message
and the field, so a peer gets one clear reason instead of a KeyError somewhere later.

Rules the decoder applies, the same for every message:
- unknown keys are ignored (a newer peer may add fields; the version says what changed);
- a missing field takes its default; a field without a default is required;
- `int` never takes a bool, `float` takes an int but never a bool or NaN;
- nested messages and lists of them are checked the same way.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, ClassVar, TypeVar, Union

from ..errors import LagerError

M = TypeVar("M", bound="Message")
_MAX_SHOWN = 60


class ProtocolError(LagerError):
    """A message that does not decode: the one line the peer is told."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"an object of {type_name(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, Message):
        return "an object"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            Any: "anything"}.get(tp, str(tp))


def _check(tp: Any, value: Any, where: str) -> Any:
    """value as type tp, or ProtocolError naming `where`."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
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
            (item,) = typing.get_args(tp)
            return [_check(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            _, item = typing.get_args(tp)
            return {k: _check(item, v, f"{where}.{k}") for k, v in value.items()}
    elif isinstance(tp, type) and issubclass(tp, Message):
        if isinstance(value, dict):
            return tp.from_dict(value, where)
        raise ProtocolError(f"{where} must be an object, not {_shown(value)}")
    raise ProtocolError(f"{where} must be {type_name(tp)}, not {_shown(value)}")


class Message:
    """Base of every message. Subclasses are dataclasses; OP is the `op` tag, if any, and
    WHAT names the message in errors ("run request")."""

    OP: ClassVar[str | None] = None
    WHAT: ClassVar[str] = "message"
    _hints: ClassVar[dict[str, Any] | None] = None

    @classmethod
    def _fields(cls) -> list[tuple[dataclasses.Field[Any], Any]]:
        # Resolved once per class, on first use: scripts that never decode never pay for it.
        if cls.__dict__.get("_hints") is None:
            cls._hints = typing.get_type_hints(cls)
        hints = cls._hints
        assert hints is not None
        return [(f, hints[f.name]) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                if f.init]

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {} if self.OP is None else {"op": self.OP}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
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
            elif f.default is dataclasses.MISSING and \
                    f.default_factory is dataclasses.MISSING:
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


def decode_one_of(data: bytes | str, classes: typing.Sequence[type[Message]],
                  what: str) -> Message:
    """The message among `classes` that the `op` tag names."""
    body = load_object(data, what)
    op = body.get("op")
    for cls in classes:
        if op == cls.OP:
            return cls.from_dict(body)
    known = ", ".join(str(c.OP) for c in classes)
    raise ProtocolError(f"malformed {what}: op {_shown(op)} is not one of {known}")
