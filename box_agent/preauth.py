"""Limits on connections that have not authenticated yet, after sshd's.

sshd's MaxStartups start:rate:full refuses a *new* connection with a probability that grows from
rate% at `start` unauthenticated connections to 100% at `full`. Under a flood of idle peers that
means a key holder who connects is refused too, and keeps being refused until the flood's login
grace time runs out. We keep sshd's numbers and its bound on pre-auth state, but choose the other
victim: the connection dropped is the oldest unauthenticated one of the source that holds the most
of them, never the newcomer. An idle flood then only ever loses its own slots, and a client that
completes its login in milliseconds always gets in. What this gives up: a legitimate client still
in its handshake can be the one dropped during a burst, which is the same price sshd's random
drop charges, paid by a different connection.

The accept loop is ours too, so that running out of file descriptors is handled here. Peers may
not take the last few descriptors (the agent needs them to read the box keys at a login, or to
start a run): near the limit the oldest pre-auth connection is dropped to make room, and when
there is none the newcomer is closed at once. At the limit itself the waiting peer is accepted on
a reserved descriptor and closed: a clean refusal instead of asyncio's traceback per attempt.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import random
import resource
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncssh

log = logging.getLogger("lager-box.preauth")

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ACCEPT_BATCH = 32  # per wakeup, so a flood on the listener cannot starve the other channels
_RETRY_AFTER_EVICTION = 0.002  # the dropped connection's fd is freed two loop turns later


@dataclass(frozen=True)
class Limits:
    """sshd's MaxStartups 10:30:100, MaxAuthTries 6, and a LoginGraceTime of 30 s."""

    start: int = 10
    rate: int = 30
    full: int = 100
    per_source: int = 30
    max_auth_tries: int = 6
    login_grace: float = 30.0

    def drop_probability(self, unauthenticated: int) -> float:
        if unauthenticated >= self.full:
            return 1.0
        if unauthenticated < self.start:
            return 0.0
        span = max(1, self.full - self.start)
        return (self.rate + (100 - self.rate) * (unauthenticated - self.start) / span) / 100


def parse_max_startups(text: str) -> tuple[int, int, int]:
    """sshd's syntax: `start:rate:full`, or one number (then no early drops below it)."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError("use START:RATE:FULL, for example 10:30:100") from None
    if len(values) == 1:
        values = [values[0], 100, values[0]]
    if len(values) != 3:
        raise ValueError("use START:RATE:FULL, for example 10:30:100")
    start, rate, full = values
    if not (1 <= start <= full and 0 <= rate <= 100):
        raise ValueError("need 1 <= START <= FULL and 0 <= RATE <= 100")
    return start, rate, full


def source_of(address: object) -> str:
    """The unit the per-source cap counts: an IPv4 address, or an IPv6 /64 (one host's net)."""
    host = address[0] if isinstance(address, tuple) and address else str(address)
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return str(host)
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


@dataclass
class _Window:
    start: float
    level: int
    shown: int = 0
    left_out: int = 0
    flush: asyncio.TimerHandle | None = None


class Throttle:
    """One log line per event up to `burst` in `window` seconds; past that, events are counted
    and a single summary line says how many were left out."""

    def __init__(self, logger: logging.Logger, window: float = 10.0, burst: int = 5) -> None:
        self.logger = logger
        self.window = window
        self.burst = burst
        self._windows: dict[str, _Window] = {}

    def event(self, level: int, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        win = self._windows.get(kind)
        if win is None or now - win.start >= self.window:
            self._summarize(kind)
            win = self._windows[kind] = _Window(now, level)
        if win.shown < self.burst:
            win.shown += 1
            self.logger.log(level, message, *args)
            return
        win.left_out += 1
        if win.flush is None:
            win.flush = asyncio.get_running_loop().call_later(
                win.start + self.window - now, self._summarize, kind)

    def _summarize(self, kind: str) -> None:
        win = self._windows.pop(kind, None)
        if win is None:
            return
        if win.flush is not None:
            win.flush.cancel()
        if win.left_out:
            self.logger.log(win.level, "%d more %s in the last %.0f s (not logged one by one)",
                            win.left_out, kind, self.window)


@dataclass(eq=False)
class Pending:
    """One connection that has not authenticated yet."""

    source: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    conn: asyncssh.SSHServerConnection | None = None  # set once asyncssh has taken the socket
    dropped: str | None = None  # the reason, once it has been dropped

    def drop(self, reason: str = "too many unauthenticated connections") -> None:
        """Disconnect now, or as soon as asyncssh has taken the socket (the same loop turn or
        the next: connections accepted in one batch get theirs a moment later)."""
        self.dropped = reason
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, reason)

    def attach(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        if self.dropped:  # not from inside asyncssh's connection_made: it still sends after us
            asyncio.get_running_loop().call_soon(self.drop, self.dropped)


class Gate:
    def __init__(self, limits: Limits, throttle: Throttle,
                 rng: random.Random | None = None) -> None:
        self.limits = limits
        self.throttle = throttle
        self.rng = rng or random.Random()
        self._pending: dict[Pending, None] = {}  # insertion order is age
        self._by_source: dict[str, dict[Pending, None]] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, source: str, peer: str) -> Pending:
        """Register a new connection, dropping an older one first when a limit says so."""
        mine = self._by_source.get(source)
        if mine is not None and len(mine) >= self.limits.per_source:
            self._drop_oldest(mine, "per-source cap")
        elif self.rng.random() < self.limits.drop_probability(len(self._pending)):
            self.drop_one("MaxStartups", newcomer=source)
        entry = Pending(source, peer)
        self._pending[entry] = None
        self._by_source.setdefault(source, {})[entry] = None
        return entry

    def drop_one(self, why: str, newcomer: str | None = None) -> bool:
        """Drop the oldest pre-auth connection of the source holding the most of them; the
        newcomer's source counts the newcomer too, so a tie costs the source that is arriving."""
        if not self._by_source:
            return False
        source = max(self._by_source, key=lambda s: len(self._by_source[s]) + (s == newcomer))
        self._drop_oldest(self._by_source[source], why)
        return True

    def _drop_oldest(self, group: dict[Pending, None], why: str) -> None:
        victim = next(iter(group))
        self.done(victim)
        self.dropped += 1
        self.throttle.event(logging.WARNING, "pre-auth connections dropped",
                            "dropped unauthenticated connection from %s after %.1f s (%s)",
                            victim.peer, time.monotonic() - victim.started, why)
        victim.drop()

    def done(self, entry: Pending) -> None:
        """The connection authenticated or went away; idempotent."""
        if entry in self._pending:
            del self._pending[entry]
            group = self._by_source.get(entry.source)
            if group is not None:
                group.pop(entry, None)
                if not group:
                    del self._by_source[entry.source]

    def drop_all(self, reason: str) -> None:
        for entry in list(self._pending):
            self.done(entry)
            entry.drop(reason)


class Listener:
    """The accept loop: hands each new socket to `on_accept`, and survives fd exhaustion."""

    def __init__(self, sock: socket.socket, on_accept: Callable[[socket.socket, object], None],
                 make_room: Callable[[], bool], throttle: Throttle) -> None:
        self.sock = sock
        self.on_accept = on_accept
        self.make_room = make_room
        self.throttle = throttle
        self.refused = 0
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
        self._ceiling = limit - min(64, max(16, limit // 8))
        self._loop = asyncio.get_running_loop()
        self._spare: int | None = None
        self._reserve()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._ready)
        self._closed = False

    def _reserve(self) -> None:
        try:
            self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._spare = None

    def _ready(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._exhausted(exc)
                else:
                    self.throttle.event(logging.WARNING, "accept errors", "accept failed: %s",
                                        exc.strerror or exc)
                return
            if self._near_limit() and not self._room_for(conn):
                continue
            try:
                self.on_accept(conn, address)
            except OSError as exc:  # setsockopt on a peer that already left, and the like
                conn.close()
                self.throttle.event(logging.WARNING, "accept errors",
                                    "dropped a new connection: %s", exc.strerror or exc)

    def _near_limit(self) -> bool:
        """Fewer than the headroom left? The headroom is for the agent's own work (reading the
        box keys at a login, a run's pipes): a flood of peers must not take the last ones.
        Counting /proc/self/fd costs ~50 us at 100 descriptors, less than a handshake."""
        try:
            return len(os.listdir("/proc/self/fd")) >= self._ceiling
        except FileNotFoundError:  # no /proc: only the hard limit (EMFILE) is seen
            return False
        except OSError:  # not even a descriptor to count them with
            return True

    def _room_for(self, conn: socket.socket) -> bool:
        if self.make_room():
            self.throttle.event(logging.WARNING, "fd exhaustion events",
                                "near the open-file limit: dropping the oldest "
                                "unauthenticated connection")
            return True
        conn.close()
        self.refused += 1
        self.throttle.event(logging.WARNING, "connections refused for lack of fds",
                            "near the open-file limit: refusing a new connection")
        return False

    def _someone_waiting(self) -> bool:
        """accept() reports EMFILE before it looks at the queue, so at the limit it fails even
        when no peer is waiting; poll() (which needs no descriptor) tells the two apart."""
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def _exhausted(self, exc: OSError) -> None:
        if not self._someone_waiting():
            return
        if self.make_room():
            # The dropped connection's descriptor is released once its transport closes.
            self._loop.remove_reader(self.sock.fileno())
            self._loop.call_later(_RETRY_AFTER_EVICTION, self._resume)
            self.throttle.event(logging.WARNING, "fd exhaustion events",
                                "at the open-file limit (%s): dropping the oldest "
                                "unauthenticated connection", exc.strerror)
            return
        # Nothing to drop: turn the waiting peer away cleanly on the reserved descriptor.
        self.refused += 1
        self.throttle.event(logging.WARNING, "connections refused for lack of fds",
                            "at the open-file limit (%s): refusing a new connection",
                            exc.strerror)
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                pass  # the peer left, or the fd went elsewhere: either way nothing is held
            self._reserve()
        if self._spare is None:
            # Not even the reserve could be had back: stop accepting for a moment.
            self._loop.remove_reader(self.sock.fileno())
            self._loop.call_later(0.1, self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._ready)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            if self._spare is not None:
                os.close(self._spare)
                self._spare = None
