"""A window adjust that arrives for a channel the box has closed is ignored, as sshd ignores it.

paramiko sends a channel's WINDOW_ADJUST from the thread that reads the channel, and its EOF and
CLOSE from its transport thread. While a key exchange is in progress both wait for it to end,
and whichever wakes first goes first: now and then the adjust follows the CLOSE. asyncssh
takes that for a protocol error and drops the whole connection ("Invalid channel number N
received", or "Channel not open"), with every other channel on it: a keeper's, or the run
that serves the other terminals. A box that rekeys (box_agent/rekey_limit.py) lost about one
connection in ten that way when a run ended during a key exchange. OpenSSH's sshd logs "window
adjust for non-open channel" and goes on; so does the box now, for that message only.

`tolerate(conn)` swaps the connection's channel table for one that hands such an adjust to a
stand-in that drops it. Every other message reaches the channel, or fails, as before.
"""
from __future__ import annotations

from collections import deque
from typing import Any

MSG_CHANNEL_WINDOW_ADJUST = 93
_OPEN_STATES = frozenset({"open", "eof_pending", "eof"})
_REMEMBERED = 64  # closed channel numbers kept (asyncssh numbers them up, never reusing one)


class _ClosedChannel:
    """Stands in for a channel that no longer takes messages: a window adjust is dropped, any
    other message goes to the channel, or is refused as asyncssh refuses it."""

    def __init__(self, channel: Any, number: int) -> None:
        self.channel = channel  # None once asyncssh has let it go
        self.number = number

    def log_received_packet(self, *args: Any) -> None:
        if self.channel is not None:
            self.channel.log_received_packet(*args)

    def process_packet(self, pkttype: int, pktid: int, packet: Any) -> Any:
        if pkttype == MSG_CHANNEL_WINDOW_ADJUST:
            return True  # handled: nothing to send on a closed channel
        if self.channel is not None:
            return self.channel.process_packet(pkttype, pktid, packet)
        from asyncssh import ProtocolError

        raise ProtocolError(f"Invalid channel number {self.number} received")


class _ChannelTable(dict):  # type: ignore[type-arg]  # asyncssh's own dict, same keys and values
    def __init__(self, channels: dict[int, Any]) -> None:
        super().__init__(channels)
        self.closed: deque[int] = deque(maxlen=_REMEMBERED)

    def __getitem__(self, number: int) -> Any:
        channel = super().__getitem__(number)
        if getattr(channel, "_recv_state", "open") in _OPEN_STATES:
            return channel
        return _ClosedChannel(channel, number)

    def __missing__(self, number: int) -> Any:
        if number in self.closed:
            return _ClosedChannel(None, number)
        raise KeyError(number)

    def __delitem__(self, number: int) -> None:
        super().__delitem__(number)
        self.closed.append(number)


def tolerate(conn: Any) -> None:
    """Give this asyncssh connection sshd's tolerance of late window adjusts."""
    channels = getattr(conn, "_channels", None)
    if type(channels) is dict:  # an asyncssh this was not written against: left as it is
        conn._channels = _ChannelTable(channels)
