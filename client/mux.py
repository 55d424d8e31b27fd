"""A per-box connection keeper for short requests, like OpenSSH's ControlMaster/ControlPersist.

`lager python --continue` is mostly Python start-up plus importing paramiko and its crypto
(~0.1 s) plus a key exchange. The first short request to a box (continue, list, kill,
instrument commands) goes direct and leaves this process behind: it holds one authenticated
paramiko transport and answers later requests over a Unix socket in the config dir, so they
import no paramiko and do no handshake. It exits after IDLE_SECONDS without requests, or when
its connection drops. LAGER_MUX=0 turns it off.

A request is sent once. The client goes direct instead only when the keeper surely did not
forward it (no keeper, it would not take the request, or it failed before asking the box for the
subsystem) or when sending it twice does no harm (client/keeper_retry.py: list, nets reads, and
a `continue` pinned to its pause number). A `kill` or an instrument write that the keeper may
have forwarded but did not answer within the reply deadline fails with 255 and says so.

Security: the socket lives in a 0700 directory of the user's config dir and the keeper also
checks the peer's uid (SO_PEERCRED). Its name hashes the box address, identity, pinned host
key and route (jump hosts, ssh_config settings), so re-pinning a box (or changing its key or
its route) never reuses a keeper made for the old one. A `--box` resolved through ssh_config
finds its keeper through config.py's cached resolution, so this path never imports paramiko.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from lager import protocol
from lager.errors import ConnectionFailed

from .builtin_sha256 import sha256
from .config import Box, Config, parse_seconds

TYPE_CHECKING = False  # typing costs ~5 ms of a short command's start (issue 13)
if TYPE_CHECKING:
    from typing import Any

    from lager.protocol.keeper import KeeperReply

    from .pause_table import PauseTable

IDLE_SECONDS = 300.0
MAX_REQUEST = 1024 * 1024
CONNECT_TIMEOUT = 2.0
# How often the keeper looks whether its connection is still up while nobody asks anything
# (a dead one is re-made at once: client/keeper_restart.py).
ACCEPT_POLL = 0.5
# How long a client waits for the keeper's answer (LAGER_MUX_TIMEOUT overrides), and how long
# the keeper waits for the box's: the keeper gives up first, so it can still say what happened.
REPLY_DEADLINE = 30.0
KEEPER_EXCHANGE_TIMEOUT = 25.0


def socket_path(config: Config, box: Box) -> Path:
    pinned = config.pinned_line(box) or ""
    # The whole route counts: the same box through other jump hosts, keys or ssh_config
    # settings gets its own keeper.
    route = json.dumps(box.to_dict() | {"name": ""}, sort_keys=True)
    ident = f"{box.host}|{box.port}|{box.user}|{config.identity_path(box)}|{pinned}|{route}"
    digest = sha256(ident.encode()).hexdigest()[:16]
    return config.root / "mux" / f"{digest}.sock"


def enabled() -> bool:
    return os.environ.get("LAGER_MUX", "1") != "0"


def reply_deadline() -> float:
    raw = os.environ.get("LAGER_MUX_TIMEOUT")
    return parse_seconds(raw, "LAGER_MUX_TIMEOUT") if raw else REPLY_DEADLINE


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _unsure(box_name: str, subsystem: str, why: str) -> ConnectionFailed:
    return ConnectionFailed(
        f"box {box_name}: {why}; the {subsystem!r} request may have reached the box, so it was "
        "not sent again: check with `lager python --list`")


class Outcome:
    """What one request() through the keeper came to (a plain class: this path loads neither
    dataclasses nor typing)."""

    __slots__ = ("answer", "notice", "pinned")

    def __init__(self, answer: tuple[str, str, int] | None = None, notice: str | None = None,
                 pinned: str | None = None) -> None:
        # The box's (out, err, status); None: go direct.
        self.answer = answer
        # Why it goes direct after the keeper had it: one line for the caller to show once the
        # direct answer is in (a direct failure is its own one line, without this).
        self.notice = notice
        # What the keeper numbered the request's `pin` as (KeeperRequest.pin), when it did.
        self.pinned = pinned


def request(path: Path, box_name: str, subsystem: str, line: str | None,
            env: dict[str, str] | None, pin: str | None = None) -> Outcome:
    """The box's answer through the keeper, or no answer when the caller should go direct.

    No answer only when the request surely never reached the box (no keeper, the keeper did
    not take it, or it failed before opening the subsystem), or when it is safe to send twice.
    Otherwise an unanswered request raises ConnectionFailed (exit 255) instead of being
    re-sent: the keeper may already have forwarded it.
    """
    if not path.exists():
        return Outcome()
    # Loaded only here: a first call (no keeper yet) never needs the message classes.
    from lager.protocol.codec import ProtocolError
    from lager.protocol.keeper import KeeperReply, KeeperRequest

    from .keeper_retry import resend_safe as safe_to_resend

    resend_safe = safe_to_resend(subsystem, line)
    deadline = reply_deadline()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        try:
            sock.connect(str(path))
            sock.sendall(KeeperRequest(subsystem=subsystem, line=line, env=env, pin=pin,
                                       v=protocol.PROTOCOL_VERSION).encode())
            # Until this EOF the keeper acts on nothing: a request cut short is never sent.
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return Outcome()
        sock.settimeout(deadline)
        reply: KeeperReply | None
        try:
            reply = KeeperReply.decode(_recv_all(sock) or b"null")
        except TimeoutError:
            if resend_safe:
                return Outcome()
            raise _unsure(box_name, subsystem,
                          f"no answer from the connection keeper within {deadline:g}s") \
                from None
        except (OSError, ProtocolError):
            reply = None
    finally:
        sock.close()
    pinned = reply.pinned if reply is not None and pin is not None else None
    if pinned is not None and subsystem == protocol.SUB_CONTINUE:
        # The keeper sent `ID#N`: a second arrival does nothing more.
        resend_safe = safe_to_resend(subsystem, pinned)
    if reply is not None and reply.status >= 0:
        return Outcome((reply.out, reply.err, reply.status), pinned=pinned)
    if reply is not None and reply.delivered is False:
        # Never sent, so going direct is safe.
        return Outcome(notice=f"the connection keeper could not reach box {box_name} "
                              f"({reply.error or 'no connection'}); connected directly",
                       pinned=pinned)
    why = reply.error if reply is not None else None
    if resend_safe:
        return Outcome(notice=f"the connection keeper lost its answer from box {box_name} "
                              f"({why or 'it went away'}); asked directly", pinned=pinned)
    raise _unsure(box_name, subsystem, f"the connection keeper lost its answer "
                  f"({why or 'it went away'})")


def spawn(config: Config, box: Box) -> None:
    """Leave a keeper behind for the next request (never fails the current command)."""
    import subprocess

    try:
        subprocess.Popen([sys.executable, "-m", "client.mux", box.name],
                         env={**os.environ, "LAGER_CONFIG_DIR": str(config.root)},
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError:
        pass


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


class Keeper:
    def __init__(self, config: Config, box: Box) -> None:
        from .ssh import BoxConnection

        self.conn = BoxConnection(config, box)
        self.config, self.box = config, box
        self.relogin: Any = None  # a keeper_restart.Relogin while the box's agent restarts
        self.path = socket_path(config, box)
        self.last_used = time.monotonic()
        self.active = 0
        self.lock = threading.Lock()
        self.pauses: PauseTable | None = None  # the box's paused runs, kept from `pauses`

    def _serve_one(self, client: socket.socket) -> None:
        with client:
            creds = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                      struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                return
            client.settimeout(CONNECT_TIMEOUT)
            raw = b""
            try:
                while len(raw) <= MAX_REQUEST and (chunk := client.recv(65536)):
                    raw += chunk
            except OSError:
                return  # a request cut short is never forwarded
            reply = self._forward(raw)
            try:
                client.sendall(reply.encode())
            except OSError:
                pass  # the client gave up waiting; it never re-sends what may have gone out

    def _forward(self, raw: bytes) -> KeeperReply:
        """The box's answer, or an error that says whether the request went out at all.

        A `pin` with a `list` is answered here when this keeper knows the pause (no round trip);
        a `pin` with a bare `continue` numbers it first (here, or from the box's list) and
        sends `ID#N`, in the same exchange: the reply's `pinned` says what was sent."""
        from lager.protocol.keeper import KeeperReply, KeeperRequest

        from .keeper_channels import exchange

        sent = False

        def mark_sent() -> None:
            nonlocal sent
            sent = True

        v = protocol.PROTOCOL_VERSION
        numbered: str | None = None
        try:
            req = KeeperRequest.decode(raw)
            if req.v > v:
                # A newer lager found a keeper an older one left: it goes direct (and starts
                # a keeper of its own version once this one has gone idle).
                return KeeperReply(error=f"this connection keeper speaks protocol {v}, the "
                                   f"client {req.v}", delivered=False, v=v)
            line = req.line
            if req.pin is not None and req.subsystem == protocol.SUB_LIST:
                numbered = self._local_pin(req.pin)
                if numbered is not None:
                    return KeeperReply(status=0, pinned=numbered, v=v)
            elif req.pin is not None and req.subsystem == protocol.SUB_CONTINUE and line:
                from .keeper_retry import pinned

                if not pinned(line):
                    numbered = self._local_pin(line) or self._pin_from_list(line)
                    line = numbered or line
            out, err, status = exchange(self.conn, req.subsystem, line, req.env,
                                        timeout=KEEPER_EXCHANGE_TIMEOUT, on_sent=mark_sent)
        except Exception as exc:  # noqa: BLE001 - reported to the client, which decides
            return KeeperReply(error=str(exc) or type(exc).__name__, delivered=sent, v=v,
                               pinned=numbered)
        return KeeperReply(out=out, err=err, status=status, v=v, pinned=numbered)

    def _local_pin(self, line: str) -> str | None:
        """`TYPED#N` from what this keeper knows without asking the box (client/pause_table.py)."""
        table = self.pauses
        return table.pin(line) if table is not None else None

    def _pin_from_list(self, line: str) -> str | None:
        """`FULLID#N` from the box's list (one round trip), or None when it cannot say."""
        from .keeper_channels import exchange
        from .keeper_retry import number_from_list

        try:
            out, _, status = exchange(self.conn, protocol.SUB_LIST, None, None,
                                      timeout=KEEPER_EXCHANGE_TIMEOUT)
        except Exception:  # noqa: BLE001 - the continue then goes bare, and says what it meets
            return None
        return number_from_list(line, out) if status == 0 else None

    def _handle(self, client: socket.socket) -> None:
        with self.lock:
            self.active += 1
        try:
            self._serve_one(client)
        finally:
            with self.lock:
                self.active -= 1
                self.last_used = time.monotonic()

    def serve(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        if _answers(self.path):
            self.conn.close()  # another keeper won the race
            return
        tmp = self.path.with_suffix(f".{os.getpid()}")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp))
        os.chmod(tmp, 0o600)
        server.listen(16)
        server.settimeout(ACCEPT_POLL)
        os.replace(tmp, self.path)  # atomic: a request never sees a half-made socket
        inode = os.stat(self.path).st_ino
        from .keeper_channels import prime
        from .keeper_stream import StreamServer

        prime(self.conn)  # a channel opened ahead: the first request is one round trip too
        self._watch_pauses()
        streams = StreamServer(self.path, lambda: self.conn).start()  # consoles (issue 13)
        try:
            while self._connected():
                with self.lock:
                    idle = self.active == 0 and \
                        time.monotonic() - self.last_used > IDLE_SECONDS
                if idle:
                    break
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._handle, args=(client,), daemon=True).start()
        finally:
            try:
                if os.stat(self.path).st_ino == inode:  # not a newer keeper's socket
                    self.path.unlink()
            except OSError:
                pass
            server.close()
            self._finish_in_flight()  # an answer lost here could not be told from one unsent
            streams.stop()
            if self.pauses is not None:
                self.pauses.stop()
            self.conn.close()

    def _connected(self) -> bool:
        """Up, or logging in again after the box's agent restarted (in the background: a
        request meanwhile finds the old connection dead, fails unsent and goes direct).
        False once the box did not come back (client/keeper_restart.py): the keeper goes."""
        from .keeper_restart import Relogin

        if self.conn.transport.is_active():
            return True
        if self.relogin is None:
            self.relogin = Relogin(self.config, self.box)
        fresh = self.relogin.result()
        if fresh is None:
            return self.relogin.trying()
        self.conn.close()
        self.conn, self.relogin = fresh, None
        from .keeper_channels import prime

        prime(fresh)
        self._watch_pauses()
        return True

    def _watch_pauses(self) -> None:
        """Keep the box's paused runs from its `pauses` subsystem, on the current connection."""
        from .pause_table import PauseTable

        if self.pauses is not None:
            self.pauses.stop()
        self.pauses = PauseTable(self.conn.transport).start()

    def _finish_in_flight(self) -> None:
        from .keeper_restart import FINISH_IN_FLIGHT

        deadline = time.monotonic() + FINISH_IN_FLIGHT
        while time.monotonic() < deadline:
            with self.lock:
                if self.active == 0:
                    return
            time.sleep(0.01)  # short requests; polled as client/run_keeper.py's stop() does


def main() -> None:
    from lager.errors import LagerError

    config = Config()
    try:
        box = config.box(sys.argv[1])
        if _answers(socket_path(config, box)):
            return  # a keeper (or an attached run) serves already: no login for nothing
        keeper = Keeper(config, box)
    except LagerError:
        sys.exit(1)
    keeper.serve()


if __name__ == "__main__":
    main()
