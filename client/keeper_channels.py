"""A keeper's request in one round trip (issue 13, slow links).

The plain way (client/context.py's exchange) costs three round trips before the answer is in:
open a channel, ask for the subsystem and wait for yes, then send the request line. A keeper (a
standalone one, client/mux.py, or a run serving as one, client/run_keeper.py) knows more
requests will come, so it keeps one session channel opened ahead, and on a request sends the
subsystem request (no reply wanted), the line and EOF together: one flight out, the answer back.
The quick client (client/quick_channel.py) starts its channels the same way.

What a failure means is unchanged: anything that fails before `on_sent` runs surely sent
nothing (the client may go direct); after it, the request may have reached the box. A spare the
box has closed is never used: it is checked before anything is sent.
A request with environment variables takes the plain way (each variable is a request of its own).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lager import protocol
from lager.errors import ConnectionFailed

from .context import answer
from .context import exchange as plain_exchange

if TYPE_CHECKING:
    from .ssh import BoxConnection

# How long opening a spare may take; as client/ssh.py's channel opening.
OPEN_TIMEOUT = 10.0

_lock = threading.Lock()
_spares: dict[int, Any] = {}  # id(transport) -> a session channel opened ahead on it
_opening: dict[int, threading.Event] = {}  # id(transport) -> set once its spare is open


def _open(transport: Any) -> Any:
    return transport.open_session(window_size=protocol.WINDOW,
                                  max_packet_size=protocol.MAX_PACKET, timeout=OPEN_TIMEOUT)


def _take(transport: Any) -> Any:
    """The spare for this transport; one being opened is waited for (it is already one
    round trip under way, a new one would be a whole one)."""
    with _lock:
        opening = _opening.get(id(transport))
    if opening is not None:
        opening.wait(OPEN_TIMEOUT)
    with _lock:
        chan = _spares.pop(id(transport), None)
    if chan is not None and (chan.closed or chan.transport is not transport
                             or not transport.is_active()):
        chan.close()
        return None
    return chan


def _refill(transport: Any, opened: threading.Event) -> None:
    """Open the next spare (in the background: the answer is already on its way back)."""
    chan = None
    try:
        chan = _open(transport)
    except Exception:  # noqa: BLE001 - the connection is going; the next request will say so
        pass
    with _lock:
        old = _spares.get(id(transport))
        if chan is not None and (old is None or old.closed):
            _spares[id(transport)] = chan
            chan = None
        if _opening.get(id(transport)) is opened:
            del _opening[id(transport)]
    opened.set()
    if chan is not None:
        chan.close()  # a spare was there already


def prime(conn: BoxConnection) -> None:
    """Open a spare now, in the background, so the first request is one round trip too."""
    try:
        transport = conn.transport
    except ConnectionFailed:
        return
    prime_transport(transport)


def _request_subsystem(chan: Any, subsystem: str) -> None:
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message

    # paramiko's invoke_subsystem always waits for the reply; the box never refuses a
    # subsystem by reply (client/ssh.py), it answers on the channel with a status.
    msg = Message()
    msg.add_byte(cMSG_CHANNEL_REQUEST)
    msg.add_int(chan.remote_chanid)
    msg.add_string("subsystem")
    msg.add_boolean(False)
    msg.add_string(subsystem)
    chan.transport._send_user_message(msg)


def exchange(conn: BoxConnection, subsystem: str, line: str | None,
             env: dict[str, str] | None, timeout: float | None = None,
             on_sent: Callable[[], None] | None = None) -> tuple[str, str, int]:
    """As client/context.py's exchange, in one round trip over a channel opened ahead."""
    if env:
        return plain_exchange(conn, subsystem, line, env, timeout=timeout, on_sent=on_sent)
    transport = conn.transport  # the run's connection may raise here: nothing was sent
    chan = _take(transport)
    # The next spare opens alongside this request: a request right after this one's answer
    # finds it ready.
    prime_transport(transport)
    try:
        if chan is None:
            chan = _open(transport)
    except Exception as exc:  # noqa: BLE001 - paramiko's or a socket's: nothing was sent
        raise ConnectionFailed(f"box {conn.box.name}: cannot open {subsystem!r}: "
                               f"{exc}") from None
    if on_sent is not None:
        on_sent()
    try:
        _request_subsystem(chan, subsystem)
    except BaseException:
        chan.close()
        raise
    return answer(chan, conn.box.name, subsystem, line, timeout)


def open_stream(conn: BoxConnection, subsystem: str, pty: tuple[str, int, int] | None
                ) -> tuple[Any, bool]:
    """A keeper's console channel (client/keeper_stream.py) and whether the box refused its
    terminal: over the spare opened ahead (no open round trip), the terminal asked for and its
    answer waited for (a `restrict` key refuses it, and the client's own way then says so),
    the subsystem asked for without waiting, as `exchange` does: one round trip, not three."""
    from paramiko.ssh_exception import SSHException

    transport = conn.transport  # the run's connection may raise here: nothing was sent
    chan = _take(transport)
    prime_transport(transport)
    if chan is None:
        chan = conn.open(subsystem, pty=pty)
        return chan, bool(pty) and bool(getattr(conn, "pty_refused", False))
    try:
        if pty:
            term, cols, rows = pty
            try:
                chan.get_pty(term=term, width=cols, height=rows)
            except SSHException:
                if not transport.is_active():
                    raise
                chan.close()
                return chan, True
        _request_subsystem(chan, subsystem)
    except (SSHException, OSError, EOFError) as exc:
        chan.close()
        raise ConnectionFailed(f"box {conn.box.name}: cannot open {subsystem!r}: "
                               f"{exc}") from None
    return chan, False


def prime_transport(transport: Any) -> None:
    if not transport.is_active():
        return
    with _lock:
        if id(transport) in _opening:
            return  # one is being opened
        opened = _opening[id(transport)] = threading.Event()
    threading.Thread(target=_refill, args=(transport, opened), daemon=True,
                     name="lager-keeper-spare").start()
