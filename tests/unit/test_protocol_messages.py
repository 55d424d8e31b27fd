"""Every message round-trips, and nothing a peer can send makes a decoder fail but in one
ProtocolError line (hypothesis generates the messages and the hostile input)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from message_strategies import JSON, message

from lager.errors import LagerError
from lager.protocol import channel, events, instrument, keeper, link, pauses, version
from lager.protocol.codec import Message, ProtocolError, message_fields

MODULES = (channel, events, instrument, keeper, link, pauses)
MESSAGES = sorted({obj for module in MODULES for obj in vars(module).values()
                   if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message},
                  key=lambda cls: cls.__name__)


def test_every_protocol_module_is_covered() -> None:
    assert {"RunHeader", "Enter", "Signal", "Stop", "KeeperRequest", "KeeperReply",
            "InstrumentRequest", "PauseMsg", "ResumedMsg", "ResumeMsg", "ConsoleMsg",
            "MonitorHello", "FromScript", "Window", "ToScript", "Hello", "PauseNotice",
            "ResumeNotice", "RunStarted", "DownloadRequest", "DownloadFile", "DownloadEnd",
            "DownloadMissing", "StreamOpen", "StreamExit", "PauseSnapshot"} <= {
               cls.__name__ for cls in MESSAGES}


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.__name__)
def test_round_trip(cls: type[Message]) -> None:
    @settings(max_examples=20, deadline=None)
    @given(message(cls))
    def check(msg: Message) -> None:
        data = msg.encode()
        assert data.endswith(b"\n") and data.count(b"\n") == 1  # one line, one datagram
        assert cls.decode(data) == msg

    check()


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.__name__)
def test_hostile_input_is_one_protocol_error(cls: type[Message]) -> None:
    @settings(max_examples=40, deadline=None)
    @given(st.one_of(st.binary(max_size=64), JSON.map(lambda v: json.dumps(v).encode()),
                     st.dictionaries(st.sampled_from([f.name for f in message_fields(cls)] + ["op"]),
                                     JSON, max_size=6).map(lambda d: json.dumps(d).encode())))
    def check(data: bytes) -> None:
        try:
            cls.decode(data)
        except ProtocolError as exc:
            assert isinstance(exc, LagerError) and "\n" not in str(exc) and str(exc)

    check()


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"a":' * 50_000, b"\xff\xfe", b"1e999999",
                                  b'{"main": "t.py", "timeout": NaN}',
                                  b'{"main": "t.py", "files": [{"path": "t", "size": 1e400}]}'])
def test_pathological_json(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        channel.RunHeader.decode(data)


def test_errors_name_the_message_and_the_field() -> None:
    with pytest.raises(ProtocolError, match=r"^malformed run request: files\[0\]\.size must be "
                                            r"an integer, not '3'$"):
        channel.RunHeader.decode(b'{"main": "t.py", "files": [{"path": "t.py", "size": "3"}]}')
    with pytest.raises(ProtocolError, match=r"^malformed control line: op 'jump' is not one of"):
        channel.decode_control(b'{"op": "jump"}')
    with pytest.raises(ProtocolError, match="must be an integer, not True"):
        link.PauseMsg.decode(b'{"op":"pause","seq":true,"file":"f","line":1,"timeout":0,'
                             b'"console":false}')


def test_todays_openssh_header_is_version_1_without_events() -> None:
    head = channel.RunHeader.decode(b'{"main": "t.py", "files": [{"path": "t.py", "size": 3}]}')
    assert head.v == 1 and head.events is False and head.files[0].mode == 0o644


def test_nets_request_line_keeps_only_what_is_set() -> None:
    line = channel.InstrumentRequest.ours(command="nets")
    assert json.loads(line) == {"command": "nets", "v": version.PROTOCOL_VERSION}


@pytest.mark.parametrize(("line", "expected"), [
    ("7f3a\u2026e9", ("7f3a\u2026e9", None)),
    ("7f3a 10 20", ("7f3a", [10, 20])),
    ("  abcd  ", ("abcd", None)),
])
def test_attach_line_forms(line: str, expected: tuple[str, list[int] | None]) -> None:
    request = channel.parse_attach(line)
    assert (request.id, request.have) == expected


def test_attach_line_with_extra_words_is_refused() -> None:
    with pytest.raises(ProtocolError, match="attach wants one line"):
        channel.parse_attach("7f3a 10")


def test_version_lines_name_both_versions_and_the_fix() -> None:
    assert version.client_refusal(1) is None
    line = version.client_refusal(1, box_v=3, oldest_client=2)
    assert line is not None and "protocol 1" in line and "protocol 3" in line \
        and "pip install -U lager" in line
    assert version.served_version(7) == version.PROTOCOL_VERSION
    assert version.served_version(1) == 1
    for bad in (0, -1, True, "2", 1.5, 2**40):
        with pytest.raises(ProtocolError):
            version.version_of({"v": bad})
    assert version.version_of({}) == 1


def test_download_answer_lines() -> None:
    file = channel.DownloadFile("logs/a.txt", 12, 0o644)
    end = channel.DownloadEnd(missing=[channel.DownloadMissing("x.csv", "no such file")])
    assert channel.decode_download(file.encode()) == file
    assert channel.decode_download(end.encode()) == end
    assert channel.decode_download(b'{"end": true}\n') == channel.DownloadEnd()
    for bad in (b'{"path": "a"}', b"[]", b'{"end": true, "missing": [{"path": 1}]}'):
        with pytest.raises(ProtocolError) as exc:
            channel.decode_download(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(ProtocolError, match="malformed download request: paths is missing"):
        channel.DownloadRequest.decode(b'{"id": "7f3a"}')
