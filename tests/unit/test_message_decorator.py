"""codec's `@message` (no dataclasses import, issue 13) makes the same class @dataclass would:
checked against a real @dataclass twin of every message, with its fresh defaults
(`field(default_factory=...)`), `frozen=True`, `replaced()`, and a TypeError for each thing
@dataclass does that it does not."""
from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from message_strategies import JSON
from message_strategies import message as messages

from lager.errors import LagerError
from lager.protocol import channel, events, instrument, keeper, link, pauses, reservation
from lager.protocol.codec import MISSING, Message, ProtocolError, field, message, message_fields

MODULES = (channel, events, instrument, keeper, link, pauses, reservation)
MESSAGES = sorted({obj for module in MODULES for obj in vars(module).values()
                   if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message},
                  key=lambda cls: cls.__name__)
FROZEN = {reservation.Hold, reservation.ForcedUnlock}  # @dataclass(frozen=True) before


def _twin(cls: type[Message]) -> type:
    """The same fields, defaults and annotations, made by dataclasses."""
    namespace: dict[str, object] = {
        "__annotations__": {f.name: f.annotation for f in message_fields(cls)},
        "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    for f in message_fields(cls):
        if f.default is not MISSING:
            namespace[f.name] = f.default
        elif f.default_factory is not MISSING:
            namespace[f.name] = dataclasses.field(default_factory=f.default_factory)
    return dataclasses.dataclass(frozen=cls in FROZEN)(type(cls.__name__, (), namespace))


def test_every_message_is_made_by_message() -> None:
    assert len(MESSAGES) >= 50 and {"RunHeader", "Hold", "PauseSnapshot", "ToScript",
                                    "KeeperRequest"} <= {cls.__name__ for cls in MESSAGES}
    assert not [cls for cls in MESSAGES if dataclasses.is_dataclass(cls)]


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.__name__)
def test_a_message_class_is_what_dataclass_makes(cls: type[Message]) -> None:
    twin = _twin(cls)
    assert not dataclasses.is_dataclass(cls)  # really our own, not dataclasses'

    def ours(value: object) -> object:
        return MISSING if value is dataclasses.MISSING else value

    assert [(f.name, f.default, f.default_factory) for f in message_fields(cls)] == [
        (f.name, ours(f.default), ours(f.default_factory)) for f in dataclasses.fields(twin)]
    if cls not in FROZEN:
        assert cls.__hash__ is None and twin.__hash__ is None  # mutable: unhashable, both

    @settings(max_examples=15, deadline=None)
    @given(messages(cls))
    def same(msg: Message) -> None:
        values = {f.name: getattr(msg, f.name) for f in message_fields(cls)}
        made = twin(**values)
        assert repr(msg) == repr(made)
        assert msg == cls(**values) == cls(*values.values()) and msg != made
        assert cls.decode(msg.encode()) == msg
        if cls in FROZEN:
            assert hash(msg) == hash(made) == hash(cls(**values))

    same()


def test_a_message_class_refuses_what_dataclass_refuses() -> None:
    with pytest.raises(TypeError, match="mutable default"):
        @message
        class Shared(Message):
            items: list[str] = []  # noqa: RUF012 (the mistake this test makes on purpose)

    with pytest.raises(TypeError, match="mutable default"):
        @message
        class SharedBytes(Message):
            data: bytearray = bytearray(b"x")  # on purpose, as above

    with pytest.raises(TypeError, match="mutable default"):
        @message
        class SharedMessage(Message):
            entry: channel.FileEntry = channel.FileEntry("a", 1)  # on purpose

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


def test_a_factory_default_is_made_afresh_and_an_absent_list_decodes_to_an_empty_one() -> None:
    one, two = channel.RunHeader("t.py"), channel.RunHeader("t.py")
    one.files.append(channel.FileEntry("t.py", 3))
    one.env["A"] = "1"
    assert (two.files, two.env, two.args) == ([], {}, [])
    assert "files" not in vars(channel.RunHeader)  # no shared value left on the class
    head = channel.RunHeader.decode(b'{"main": "t.py"}')
    assert (head.files, head.args, head.env) == ([], [], {})
    assert head.files is not channel.RunHeader.decode(b'{"main": "t.py"}').files
    status = reservation.ReservationStatus.decode(b'{"enabled": true, "held": false}')
    assert (status.holds, status.runs, status.queue, status.forced_unlocks) == ([], [], [], [])
    assert pauses.PauseSnapshot.decode(b'{"op": "snapshot", "v": 2}').paused == []
    assert link.ToScript.decode(b'{"op": "to_script"}').body == {}
    assert channel.DownloadEnd.decode(b'{"end": true}').missing == []
    # And the wire: the default is written out as it always was.
    assert json.loads(channel.RunHeader("t.py").encode())["files"] == []


FACTORY_MESSAGES = [cls for cls in MESSAGES
                    if any(f.default_factory is not MISSING for f in message_fields(cls))]


@pytest.mark.parametrize("cls", FACTORY_MESSAGES, ids=lambda cls: cls.__name__)
def test_hostile_input_to_a_message_with_fresh_defaults(cls: type[Message]) -> None:
    """Generated objects of the message's own keys and any JSON: one ProtocolError line, or a
    message whose absent factory fields are a fresh empty value, never None or shared."""
    names = [f.name for f in message_fields(cls)] + ["op"]
    made = {f.name: f.default_factory for f in message_fields(cls)
            if f.default_factory is not MISSING}

    @settings(max_examples=40, deadline=None)
    @given(st.dictionaries(st.sampled_from(names), JSON, max_size=8))
    def check(body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        try:
            first, second = cls.decode(data), cls.decode(data)
        except ProtocolError as exc:
            assert isinstance(exc, LagerError) and "\n" not in str(exc) and str(exc)
            return
        for name, factory in made.items():
            if name not in body:
                assert getattr(first, name) == factory()
                assert getattr(first, name) is not getattr(second, name)

    check()
    assert FACTORY_MESSAGES and channel.RunHeader in FACTORY_MESSAGES


def test_replaced_is_a_changed_copy() -> None:
    head = channel.RunHeader("t.py", args=["-v"], timeout=5.0)
    fleet = head.replaced(fleet="f-3c9a", timeout=1.0)
    assert type(fleet) is channel.RunHeader and fleet is not head
    assert (fleet.main, fleet.args, fleet.timeout, fleet.fleet) == ("t.py", ["-v"], 1.0, "f-3c9a")
    assert (head.timeout, head.fleet) == (5.0, None)  # the original is as it was
    assert head.replaced() == head
    with pytest.raises(TypeError, match="unexpected or repeated argument 'flet'"):
        head.replaced(flet="f-1")
    hold = reservation.Hold("key:SHA256:x", "alice", "SHA256:x", "ci", 0.0, "lock")
    assert hold.replaced(reason="firmware").reason == "firmware" and hold.reason == ""


def test_a_frozen_message_hashes_and_refuses_changes() -> None:
    hold = reservation.Hold("key:SHA256:x", "alice", "SHA256:x", "ci", 0.0, "lock")
    same = reservation.Hold.decode(hold.encode())
    assert hold == same and hash(hold) == hash(same) and len({hold, same}) == 1
    forced = reservation.ForcedUnlock(1.0, "key:SHA256:y", "bob", hold)
    assert forced in {reservation.ForcedUnlock.decode(forced.encode())}
    for change in (lambda: setattr(hold, "label", "other"), lambda: delattr(hold, "label"),
                   lambda: setattr(forced, "lock", None)):
        with pytest.raises(AttributeError, match="is frozen"):
            change()
    assert hold.label == "ci" and forced.lock is hold
    with pytest.raises(TypeError, match="unhashable"):
        hash(channel.RunHeader("t.py"))  # the others stay mutable and unhashable


def test_what_message_does_not_do_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="does not call __post_init__"):
        @message
        class Checked(Message):
            size: int

            def __post_init__(self) -> None:
                raise AssertionError("never called")

    with pytest.raises(TypeError, match="derives from Message alone, not from Base"):
        @message
        class Base(Message):
            first: int

        @message
        class Derived(Base):
            second: int

    class Mixin:
        extra: int = 0

    with pytest.raises(TypeError, match="not from Mixin"):
        @message
        class Mixed(Mixin, Message):
            first: int

    with pytest.raises(TypeError, match=r"KeywordOnly._: @message has no dataclasses.KW_ONLY"):
        @message
        class KeywordOnly(Message):
            first: int
            _: dataclasses.KW_ONLY

    with pytest.raises(TypeError, match=r"InitOnly.first: @message has no dataclasses.InitVar"):
        @message
        class InitOnly(Message):
            first: dataclasses.InitVar[int]

    with pytest.raises(TypeError, match=r"use lager\.protocol\.codec\.field"):
        @message
        class TheirField(Message):
            items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match=r"Equal.__eq__: @message makes its own"):
        @message
        class Equal(Message):
            first: int

            def __eq__(self, other: object) -> bool:
                return True

    with pytest.raises(TypeError, match=r"Late\.after: a required field after a default"):
        @message
        class Late(Message):
            items: list[int] = field(default_factory=list)
            after: int

    with pytest.raises(TypeError, match=r"is not made by lager\.protocol\.codec's @message"):
        @dataclasses.dataclass
        class Undecorated(Message):
            first: int

        message_fields(Undecorated)
