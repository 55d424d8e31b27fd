"""Hypothesis strategies for protocol messages (lager.protocol.codec.Message), shared by the
message tests: any JSON value, values of a field's declared type, and whole messages."""
from __future__ import annotations

import types
import typing

from hypothesis import strategies as st

from lager.protocol.codec import Message, field_types, message_fields

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                    | st.floats(allow_nan=False, allow_infinity=False),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


def strategy(tp: typing.Any) -> st.SearchStrategy[typing.Any]:
    """Values of a field's declared type (the codec's own vocabulary of types)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy(a) for a in typing.get_args(tp)))
    if origin is list:
        return st.lists(strategy(typing.get_args(tp)[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=6), strategy(typing.get_args(tp)[1]),
                               max_size=3)
    if isinstance(tp, type) and issubclass(tp, Message):
        return message(tp)
    return {str: st.text(max_size=20), int: st.integers(), bool: st.booleans(),
            float: st.floats(allow_nan=False), type(None): st.none()}.get(tp, JSON)


def message(cls: type[Message]) -> st.SearchStrategy[Message]:
    hints = field_types(cls)
    return st.builds(cls, **{f.name: strategy(hints[f.name]) for f in message_fields(cls)})
