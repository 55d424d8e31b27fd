"""The box's channel table (box_agent/late_adjust.py): which messages a closed channel drops."""
from __future__ import annotations

from typing import Any

import asyncssh
import pytest

from box_agent.late_adjust import MSG_CHANNEL_WINDOW_ADJUST, _ChannelTable

MSG_CHANNEL_DATA = 94


class Channel:
    """Just what the table reads of an asyncssh channel, and what it passes on."""

    def __init__(self, state: str) -> None:
        self._recv_state = state
        self.got: list[int] = []

    def process_packet(self, pkttype: int, pktid: int, packet: Any) -> bool:
        self.got.append(pkttype)
        return True


def test_an_open_channel_is_itself() -> None:
    chan = Channel("eof")
    table = _ChannelTable({3: chan})
    assert table[3] is chan


def test_a_closing_channel_drops_an_adjust_and_passes_the_rest() -> None:
    chan = Channel("close_pending")
    table = _ChannelTable({3: chan})
    assert table[3].process_packet(MSG_CHANNEL_WINDOW_ADJUST, 0, None) is True
    table[3].process_packet(MSG_CHANNEL_DATA, 1, None)
    assert chan.got == [MSG_CHANNEL_DATA]


def test_a_let_go_channel_drops_an_adjust_and_refuses_the_rest() -> None:
    table = _ChannelTable({3: Channel("open")})
    del table[3]
    assert 3 not in table  # asyncssh's own test for a free number stays true
    assert table[3].process_packet(MSG_CHANNEL_WINDOW_ADJUST, 0, None) is True
    with pytest.raises(asyncssh.ProtocolError, match="Invalid channel number 3"):
        table[3].process_packet(MSG_CHANNEL_DATA, 1, None)


def test_a_number_never_used_is_refused_as_before() -> None:
    with pytest.raises(KeyError):
        _ChannelTable({})[7]


def test_only_the_newest_closed_numbers_are_kept() -> None:
    table = _ChannelTable({})
    for n in range(200):
        table[n] = Channel("open")
        del table[n]
    assert len(table.closed) == 64
    with pytest.raises(KeyError):
        table[0]
    assert table[199].process_packet(MSG_CHANNEL_WINDOW_ADJUST, 0, None) is True
