"""The run channel's framed form, read back however the bytes are split: the output exactly,
events in order, banners left out byte for byte when asked, and an older box's plain form."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.run_stream import RunStream
from lager.protocol.codec import ProtocolError
from lager.protocol.events import (
    EVENT,
    NOTICE,
    STDERR,
    STDOUT,
    FrameDecoder,
    Hello,
    PauseNotice,
    ResumeNotice,
    event_record,
    record,
)

BANNER = b'=== lager breakpoint "x" at t.py:4  (id 7f3a\xe2\x80\xa6e9)\n    auto-resume in 5s\n'
RESUMED = b"=== resumed\n"


def framed_run() -> tuple[bytes, list[object]]:
    """What a box sends for: stdout, stderr, a pause with its banner, a notice, the resume."""
    out: list[bytes] = []
    notices: list[object] = [Hello(v=2, run_id="7f3a00e9")]
    out.append(event_record(notices[0]))  # type: ignore[arg-type]
    for stream, data in ((STDOUT, b"before\n"), (STDERR, b"warn\n")):
        out += [record(stream, data), data]
    pause = PauseNotice(run_id="7f3a00e9", seq=1, file="t.py", line=4, label="x", timeout=5,
                        remaining=5.0, banner=BANNER.decode(), banner_at=[5, 5 + len(BANNER)])
    resume = ResumeNotice(run_id="7f3a00e9", seq=1, how="continue", by="me",
                          banner=RESUMED.decode(),
                          banner_at=[5 + len(BANNER), 5 + len(BANNER) + len(RESUMED)])
    note = b"lager: a notice of the box's own\n"
    out += [event_record(pause), record(STDERR, BANNER), BANNER, record(NOTICE, note), note,
            event_record(resume), record(STDERR, RESUMED), RESUMED,
            record(STDOUT, b"after\n"), b"after\n", record(STDERR, b""), b"bye\n"[:0]]
    return b"".join(out), [notices[0], pause, resume]


def read(data: bytes, cuts: list[int], show_banners: bool = True) -> tuple[
        dict[int, bytes], list[object], RunStream]:
    stream = RunStream(asked_events=True, show_banners=show_banners)
    shown = {STDOUT: b"", STDERR: b""}
    seen: list[object] = []
    bounds = sorted({0, len(data), *[c % (len(data) + 1) for c in cuts]})
    for start, end in itertools.pairwise(bounds):
        for kind, piece in stream.stdout_data(data[start:end]):
            if kind == EVENT:
                seen.append(piece)
            else:
                assert isinstance(piece, bytes)
                shown[kind] += piece
    assert stream.at_end() == []
    return shown, seen, stream


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_gives_the_same_output_and_events(cuts: list[int]) -> None:
    data, expected_events = framed_run()
    shown, seen, stream = read(data, cuts)
    assert shown[STDOUT] == b"before\nafter\n"
    assert shown[STDERR] == b"warn\n" + BANNER + b"lager: a notice of the box's own\n" + RESUMED
    assert seen == expected_events
    # The box's notice is not the script's: the stderr count is what a reattach asks for.
    assert stream.received == {STDOUT: 13, STDERR: 5 + len(BANNER) + len(RESUMED)}
    assert stream.framed and stream.box_version == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_banners_left_out_exactly(cuts: list[int]) -> None:
    data, _ = framed_run()
    shown, seen, _ = read(data, cuts, show_banners=False)
    assert shown[STDERR] == b"warn\nlager: a notice of the box's own\n"
    assert isinstance(seen[1], PauseNotice) and seen[1].banner == BANNER.decode()


def test_an_older_box_is_read_plain_and_said_once() -> None:
    stream = RunStream(asked_events=True)
    assert stream.stdout_data(b"hello from an old box\n") == [(STDOUT, b"hello from an old box\n")]
    assert stream.stderr_data(b"err\n") == [(STDERR, b"err\n")]
    assert stream.received == {STDOUT: 22, STDERR: 4}
    note = stream.older_box_note("mybox")
    assert note is not None and "protocol 1" in note and "lager-box" in note


def test_stderr_first_leaves_the_form_open_and_a_refusal_says_nothing_of_versions() -> None:
    stream = RunStream(asked_events=True)
    assert stream.stdout_data(b"\x03\x00") == []  # could still be a hello: held
    assert stream.stderr_data(b"box reserved: held by A\n") == [
        (STDERR, b"box reserved: held by A\n")]
    assert stream.framed is None and stream.older_box_note("mybox") is None
    assert stream.at_end() == [(STDOUT, b"\x03\x00")]  # never a hello: the script's bytes
    assert stream.framed is False


def test_not_asking_never_decodes() -> None:
    data, _ = framed_run()
    stream = RunStream(asked_events=False)
    assert stream.stdout_data(data) == [(STDOUT, data)]
    assert stream.older_box_note("b") is None


@pytest.mark.parametrize("data", [b"\x09\x00\x00\x00\x01x", b"\x03\x00\x00\x00\x00",
                                  b"\x03\x7f\xff\xff\xff", b"\x03\x00\x00\x00\x02{}"])
def test_a_broken_stream_is_one_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(data)


def test_a_stream_cut_mid_record_says_so() -> None:
    data, _ = framed_run()
    stream = RunStream(asked_events=True)
    stream.stdout_data(data[:-3])
    with pytest.raises(ProtocolError, match="middle of a record"):
        stream.at_end()


def test_the_countdown_is_drawn_from_the_notice_and_ends_with_the_resume() -> None:
    import os
    import re
    import threading
    import time

    from client.terminal_out import RunOutput

    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    with open(write_end, "wb", buffering=0) as stderr, open(os.devnull, "wb") as stdout:
        out = RunOutput(stdout, stderr, countdown=True)
        try:
            out.event(PauseNotice(run_id="r", seq=1, file="t.py", line=1, timeout=90,
                                  remaining=90.0))
            drawn = b""
            until = time.monotonic() + 30
            while b"auto-resume in" not in drawn and time.monotonic() < until:
                time.sleep(0.05)
                try:
                    drawn += os.read(read_end, 4096)
                except BlockingIOError:
                    pass
            assert re.search(rb"\.\.\. auto-resume in (89|90)s \(Enter resumes now\)", drawn)
            out.event(ResumeNotice(run_id="r", seq=1, how="enter"))
            assert out._deadline is None
        finally:
            out.close()
            for thread in threading.enumerate():
                if thread.name in ("lager-output-1", "lager-output-2", "lager-countdown"):
                    thread.join(10)
    os.close(read_end)
