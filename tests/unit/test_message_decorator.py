"""codec's own `@message` (no dataclasses import, issue 13) makes the same class @dataclass
would: checked against a real @dataclass twin of each message it makes."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from message_strategies import message as messages

from lager.protocol import instrument, keeper
from lager.protocol.codec import MISSING, Message, ProtocolError, message, message_fields

KEEPER_MESSAGES = [keeper.KeeperRequest, keeper.KeeperReply, keeper.StreamOpen,
                   keeper.StreamRefused, keeper.StreamResize, keeper.StreamExit,
                   instrument.InstrumentRequest]


def _twin(cls: type[Message]) -> type:
    """The same fields, defaults and annotations, made by dataclasses."""
    namespace = {"__annotations__": {f.name: f.annotation for f in message_fields(cls)},
                 "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    namespace.update({f.name: f.default for f in message_fields(cls) if f.default is not MISSING})
    return dataclasses.dataclass(type(cls.__name__, (), namespace))


@pytest.mark.parametrize("cls", KEEPER_MESSAGES, ids=lambda cls: cls.__name__)
def test_a_message_class_is_what_dataclass_makes(cls: type[Message]) -> None:
    twin = _twin(cls)
    assert not dataclasses.is_dataclass(cls)  # really our own, not dataclasses'
    assert [(f.name, f.default) for f in message_fields(cls)] == [
        (f.name, MISSING if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(twin)]
    assert cls.__hash__ is None and twin.__hash__ is None  # mutable: unhashable, both

    @settings(max_examples=25, deadline=None)
    @given(messages(cls))
    def same(msg: Message) -> None:
        values = {f.name: getattr(msg, f.name) for f in message_fields(cls)}
        assert repr(msg) == repr(twin(**values))
        assert msg == cls(**values) == cls(*values.values()) and msg != twin(**values)
        assert cls.decode(msg.encode()) == msg

    same()


def test_a_message_class_refuses_what_dataclass_refuses() -> None:
    with pytest.raises(TypeError, match="mutable default"):
        @message
        class Shared(Message):
            items: list[str] = []  # noqa: RUF012 (the mistake this test makes on purpose)

    with pytest.raises(TypeError, match="required field after a default"):
        @message
        class Backwards(Message):
            first: int = 0
            second: int

    # The calls a dataclass refuses: a missing field, an unknown one, one given twice, too many.
    twin = _twin(keeper.StreamResize)
    for args, kwargs in (((), {"cols": 80}), ((80, 24), {"depth": 1}), ((80,), {"cols": 80}),
                         ((80, 24, 1), {})):
        for make in (twin, keeper.StreamResize):
            with pytest.raises(TypeError):
                make(*args, **kwargs)


def test_a_bad_field_is_still_one_protocol_error_line() -> None:
    with pytest.raises(ProtocolError, match=r"^malformed keeper request: env must be an object "
                                            r"of a string or null, not \{'A': 1\}$"):
        keeper.KeeperRequest.decode(b'{"subsystem": "list", "env": {"A": 1}}')
    with pytest.raises(ProtocolError, match=r"^malformed window size: rows is missing$"):
        keeper.StreamResize.decode(b'{"cols": 80}')
    with pytest.raises(ProtocolError, match=r"^malformed keeper reply: status must be an "
                                            r"integer, not True$"):
        keeper.KeeperReply.decode(b'{"status": true}')
