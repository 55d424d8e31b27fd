"""The `reservation` subsystem's messages (lager.protocol.reservation): every one round-trips,
hostile input is one ProtocolError line, and the box reads a request the way the client wrote
it (hypothesis generates the messages and the hostile bytes)."""
from __future__ import annotations

import json
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from message_strategies import JSON, message

from box_agent.subsystems.reservation import _seconds
from lager.errors import LagerError
from lager.protocol import reservation
from lager.protocol.codec import Message, ProtocolError, message_fields

MESSAGES = sorted((obj for obj in vars(reservation).values()
                   if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message
                   and obj.__module__ == reservation.__name__), key=lambda cls: cls.__name__)


def test_every_reservation_message_is_covered() -> None:
    assert {"Hold", "StatusRequest", "LockRequest", "UnlockRequest", "WaitRequest", "Place",
            "Waiting", "Granted", "Locked", "Unlocked", "Queued", "ForcedUnlock",
            "ReservationStatus", "Refusal"} == {cls.__name__ for cls in MESSAGES}


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.__name__)
def test_round_trip(cls: type[Message]) -> None:
    @settings(max_examples=15, deadline=None)
    @given(message(cls))
    def check(msg: Message) -> None:
        data = msg.encode()
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        assert cls.decode(data) == msg
        if cls.OP is not None:
            assert reservation.decode_request(data) == msg
        if cls in (reservation.Waiting, reservation.Granted, reservation.Refusal):
            assert reservation.decode_queue_line(data) == msg

    check()


DECODERS: list[typing.Callable[[bytes], object]] = [
    *(cls.decode for cls in MESSAGES), reservation.decode_request,
    reservation.decode_queue_line]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda d: getattr(d, "__qualname__", str(d)))
def test_hostile_input_is_one_protocol_error(decode: typing.Callable[[bytes], object]) -> None:
    names = sorted({f.name for cls in MESSAGES for f in message_fields(cls)} | {"op"})

    @settings(max_examples=30, deadline=None)
    @given(st.one_of(
        st.binary(max_size=64), JSON.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from(names), JSON, max_size=6)
        .map(lambda d: json.dumps(d).encode()),
        st.fixed_dictionaries({"op": st.sampled_from(["status", "lock", "unlock", "wait"])},
                              optional={n: JSON for n in names if n != "op"})
        .map(lambda d: json.dumps(d).encode())))
    def check(data: bytes) -> None:
        try:
            decode(data)
        except ProtocolError as exc:
            assert isinstance(exc, LagerError) and "\n" not in str(exc) and str(exc)

    check()


@pytest.mark.parametrize(("line", "says"), [
    (b'{"op": "unlock", "force": "yes"}', "malformed reservation request: force must be true "
                                          "or false, not 'yes'"),
    (b'{"op": "wait", "wait": NaN}', "malformed reservation request: wait must be a number"),
    (b'{"op": "lock", "label": ["a"]}', "malformed reservation request: label must be a string"),
    (b'{"op": "grab"}', "malformed reservation request: op 'grab' is not one of status, lock, "
                        "unlock, wait"),
    (b'{"wait": 5}', "malformed reservation request: op None is not one of"),
    (b"[" * 100_000, "malformed reservation request: send one JSON object"),
    (b"\xff\xfe", "malformed reservation request: send one JSON object"),
])
def test_a_bad_request_names_the_field(line: bytes, says: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        reservation.decode_request(line)
    assert str(caught.value).startswith(says), str(caught.value)


def test_the_box_takes_only_a_sane_wait() -> None:
    assert _seconds(None) == 1800.0
    assert _seconds(0.0) == 0.0 and _seconds(12.5) == 12.5
    for bad in (float("inf"), -1.0):
        with pytest.raises(LagerError, match="wait must be 0 or more seconds"):
            _seconds(bad)
    # Infinity passes the codec (a float), so the box's own check is what refuses it.
    request = reservation.decode_request(b'{"op": "wait", "wait": Infinity}')
    assert isinstance(request, reservation.WaitRequest) and request.wait == float("inf")


def test_the_wire_keeps_the_shapes_openssh_users_type() -> None:
    """The README's hand-typed requests and the box's answers keep their JSON shape."""
    assert reservation.decode_request(b'{"op": "status"}') == reservation.StatusRequest()
    assert reservation.decode_request(b'{"op": "wait", "wait": 60, "label": "bench"}') == \
        reservation.WaitRequest(label="bench", wait=60.0)
    assert json.loads(reservation.Granted("ab12").encode()) == {"granted": "ab12"}
    hold = reservation.Hold("key:SHA256:x", "alice", "SHA256:x", "ci job 7", 0.0, "run",
                            run_id="7f3a00000000e9", script="t.py", paused="A")
    assert json.loads(reservation.Refusal([hold]).encode())["reserved"][0]["identity"] == \
        "key:SHA256:x"
    assert hold.who() == "alice (SHA256:x) [ci job 7]"
    assert hold.what() == 'run 7f3a\u2026e9 (t.py, paused at "A")'
    status = reservation.ReservationStatus(enabled=True, held=True, holds=[hold, hold])
    assert status.locked_by() == "alice (SHA256:x) [ci job 7] (run) +1"
    assert reservation.ReservationStatus(enabled=True, held=False).locked_by() == "-"
    assert reservation.ReservationStatus(enabled=False, held=False).locked_by() == "(off)"
