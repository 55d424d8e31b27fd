"""A standalone keeper's table of the box's paused runs, kept from the `pauses` subsystem, so
the keeper numbers a bare `--continue` (`ID#N`, ISSUE-NOTES 9) with no round trip to the box:
one round trip in all at 50 ms RTT, where asking the box's `list` first costs two (issue 13).

The keeper (client/mux.py) opens the watch on its own connection at login and after every
re-login (client/keeper_restart.py); a thread reads it. The box sends the paused runs, then
every change in the order it made them (lager.protocol.pauses). The table gives a number only
when the typed id matches exactly one run paused in it, the watch is up and its snapshot is in;
otherwise the keeper asks the box's list, as before (an agent without the subsystem refuses it,
a watcher the box dropped for not reading re-opens after a pause).

Staleness, as client/own_pause.py's model: the table may lag the box, never lead it. The number
it gives was the run's current pause at some moment; if the pause was resumed since (Enter, a
timeout, another client) and its line is still on the way, `TYPED#N` gets "already resumed"
(exit 0) from the box, which never resumes pause N + 1 for it; the `list` pin has the same
window between its answer and the continue. A run missing from the table (its pause line not
in yet) is numbered from the list. The id goes as typed: the box resolves it as it would the
bare one, so a prefix that also names a run that is not paused is still refused as ambiguous.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from lager import protocol
from lager.protocol.codec import ProtocolError
from lager.protocol.events import PauseNotice, ResumeNotice
from lager.protocol.pauses import MAX_WATCH_LINE, PauseSnapshot, decode_watch_record

log = logging.getLogger("lager.keeper")

OPEN_TIMEOUT = 10.0
# After the box dropped the watch (or it broke) with a snapshot read: wait, then open it again.
REOPEN_AFTER = 0.5
MAX_REOPEN_AFTER = 10.0


class PauseTable:
    """{run id: current pause number} for one authenticated connection (a paramiko transport)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._lock = threading.Lock()
        self._paused: dict[str, int] = {}
        self._ready = False  # the watch is up and its snapshot was read
        self._stop = threading.Event()
        self._chan: Any = None
        self.ended = threading.Event()  # set once it has stopped watching for good

    def start(self) -> PauseTable:
        threading.Thread(target=self._watch, daemon=True, name="lager-keeper-pauses").start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._ready = False
            chan = self._chan
        if chan is not None:
            chan.close()

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._ready

    def pin(self, line: str) -> str | None:
        """`TYPED#N` for a bare id that names exactly one run paused (at N) in the table."""
        typed = line.strip()
        if not typed or protocol.PAUSE_MARK in typed:
            return None
        with self._lock:
            if not self._ready or not self._transport.is_active():
                return None
            matches = [seq for run_id, seq in self._paused.items()
                       if protocol.id_matches(typed, run_id)]
        if len(matches) != 1:
            return None
        return f"{typed}{protocol.PAUSE_MARK}{matches[0]}"

    def _watch(self) -> None:
        try:
            self._watch_while_up()
        finally:
            self.ended.set()

    def _watch_while_up(self) -> None:
        wait = REOPEN_AFTER
        while not self._stop.is_set() and self._transport.is_active():
            snapshot_read = self._follow()
            with self._lock:
                self._ready, self._chan = False, None
                self._paused.clear()
            if not snapshot_read:
                return  # refused (an agent without the subsystem): the list it is
            if self._stop.wait(wait):
                return
            wait = min(wait * 2, MAX_REOPEN_AFTER)

    def _follow(self) -> bool:
        """Open the watch and apply its lines until it ends; whether a snapshot was read."""
        try:
            chan = self._transport.open_session(timeout=OPEN_TIMEOUT)
            with self._lock:
                self._chan = chan
            chan.invoke_subsystem(protocol.SUB_PAUSES)
            chan.shutdown_write()  # the box takes no input here
        except Exception as exc:  # noqa: BLE001 - paramiko's or a socket's: the list it is
            log.info("cannot watch the box's pauses: %s", exc)
            return False
        snapshot_read = False
        pending = b""
        try:
            while not self._stop.is_set():
                data = chan.recv(65536)
                if not data:
                    return snapshot_read
                pending += data
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_WATCH_LINE:
                    return False  # not the box we know: stop watching
                for raw in lines:
                    snapshot_read |= self._apply(decode_watch_record(raw))
        except ProtocolError as exc:
            log.info("the box's pauses watch sent a bad line: %s", exc)
            return False
        except OSError:
            return snapshot_read
        finally:
            chan.close()
        return snapshot_read

    def _apply(self, record: PauseSnapshot | PauseNotice | ResumeNotice) -> bool:
        with self._lock:
            if isinstance(record, PauseSnapshot):
                self._paused = {n.run_id: n.seq for n in record.paused}
                self._ready = True
                return True
            if isinstance(record, PauseNotice):
                self._paused[record.run_id] = record.seq
            elif self._paused.get(record.run_id) == record.seq:
                del self._paused[record.run_id]
        return False
