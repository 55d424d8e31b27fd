"""The agent reads a monitor's `output` and writes its window answer without the general codec
(box_agent/monitor_link.py): what it reads and writes must be exactly what the codec would, and
any other spelling, hostile or not, must go to the codec."""
from __future__ import annotations

import socket

from hypothesis import example, given, settings
from hypothesis import strategies as st

from box_agent.monitor_link import MonitorLink, quick_output
from lager.protocol.codec import ProtocolError
from lager.protocol.link import MonitorOutput, Window, decode_from_monitor

OFFSETS = st.integers(min_value=0, max_value=(1 << 60))


@settings(max_examples=200, deadline=None)
@given(OFFSETS, OFFSETS)
def test_the_window_answer_is_what_the_codec_writes(until: int, seen: int) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        MonitorLink(ours).send_window(until, seen)
        assert theirs.recv(1 << 16) == Window(until=until, seen=seen).encode()
    finally:
        ours.close()
        theirs.close()


@settings(max_examples=200, deadline=None)
@given(OFFSETS)
def test_the_monitors_output_reads_as_the_codec_reads_it(end: int) -> None:
    spelled = b'{"op":"output","end":%d}\n' % end  # monitor.c's tell()
    assert quick_output(spelled) == decode_from_monitor(spelled) == MonitorOutput(end=end)


def _mutations() -> st.SearchStrategy[bytes]:
    valid = st.builds(lambda n: b'{"op":"output","end":%d}\n' % n, OFFSETS)
    edits = st.sampled_from([b"", b" ", b"0", b"-", b"1e3", b".5", b"\xff", b'"', b"}", b"\n",
                             b"00", b"\xd9\xa3"])  # an Arabic-Indic digit, not an ASCII one
    spliced = st.builds(lambda v, at, e, cut: v[:at % (len(v) + 1)] + e + v[at % (len(v) + 1)
                                                                           + cut:],
                        valid, st.integers(0, 60), edits, st.integers(0, 3))
    return st.one_of(spliced, st.binary(max_size=64))


@settings(max_examples=500, deadline=None)
@given(_mutations())
@example(b'{"op":"output","end":007}\n')  # JSON has no leading zeros
@example(b'{"op":"output","end":12}')  # monitor.c ends each with a newline; json doesn't care
@example(b'{"op":"output","end":1.0}\n')
def test_any_other_spelling_goes_to_the_codec(data: bytes) -> None:
    quick = quick_output(data)
    if quick is None:
        return
    try:
        expected = decode_from_monitor(data)
    except ProtocolError:
        raise AssertionError(f"read {data!r}, which the codec refuses") from None
    assert quick == expected
