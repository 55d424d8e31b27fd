"""One pyvisa session per instrument per process, shared by every net on that instrument."""
from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from ..errors import InstrumentFault, NetError
from . import claims
from .config import InstrumentSpec

_lock = threading.Lock()
_sessions: dict[str, InstrumentSession] = {}
_rm: Any = None
MAX_ERRORS = 32  # an instrument's queue holds fewer; more means it is not popping


def is_framed(resource: str) -> bool:
    """HiSLIP, VXI-11, USB-TMC and GPIB (::INSTR) mark a message's end; a serial port does not."""
    name = resource.upper()
    return name.endswith("::INSTR") and not name.startswith("ASRL")


def _resource_manager() -> Any:
    global _rm
    if _rm is None:
        import pyvisa

        _rm = pyvisa.ResourceManager("@py")
    return _rm


class InstrumentSession:
    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.users = 0
        self.io_lock = threading.Lock()  # one SCPI exchange at a time, whatever the thread
        self._res: Any = None

    def _open(self, net: str) -> Any:
        if self._res is None:
            import pyvisa

            # A raw SOCKET needs the newline to find the end of a reply; a framed transport
            # (HiSLIP, VXI-11, USB-TMC, GPIB) marks it with END, so none is set there.
            framing: dict[str, Any] = {} if is_framed(self.spec.resource) else \
                {"read_termination": "\n"}
            try:
                res = _resource_manager().open_resource(
                    self.spec.resource, write_termination="\n", timeout=self.spec.timeout_ms,
                    **framing)
            except (pyvisa.Error, OSError) as exc:
                raise InstrumentFault(f"{net}: cannot open {self.spec.resource}: "
                                      f"{_reason(exc)}") from None
            _no_delay(res)
            self._res = res
        return self._res

    def write(self, net: str, command: str) -> None:
        self._exchange(net, command, query=False)

    def query(self, net: str, command: str) -> str:
        return self._exchange(net, command, query=True) or ""

    def query_float(self, net: str, command: str) -> float:
        reply = self.query(net, command)
        try:
            return float(reply)
        except ValueError:
            raise InstrumentFault(f"{net}: garbled reply {reply[:60]!r} to {command!r} from "
                                  f"{self.spec.resource}") from None

    def configure(self, net: str, command: str, error_query: str = ":SYST:ERR?") -> None:
        """Send a setting, then read the instrument's error queue down to its "no error".

        A refused setting is an error naming the net, the command and the instrument's own
        words; the queue is read under the same lock, so no other thread's command lands
        between the setting and its check.
        """
        errors: list[str] = []
        with self.io_lock:
            self._exchange_locked(net, command, query=False)
            for _ in range(MAX_ERRORS):
                entry = self._exchange_locked(net, error_query, query=True) or ""
                code = entry.split(",", 1)[0].strip()
                try:
                    if int(code) == 0:
                        break
                except ValueError:
                    raise InstrumentFault(f"{net}: garbled reply {entry[:60]!r} to "
                                          f"{error_query!r} from {self.spec.resource}") from None
                errors.append(entry)
        if errors:
            raise NetError(f"{net}: {self.spec.name} refused {command!r}: {'; '.join(errors)}")

    def _exchange(self, net: str, command: str, query: bool) -> str | None:
        with self.io_lock:
            return self._exchange_locked(net, command, query)

    def _exchange_locked(self, net: str, command: str, query: bool) -> str | None:
        import pyvisa

        res = self._open(net)
        try:
            if query:
                return str(res.query(command)).strip()
            res.write(command)
            return None
        except (pyvisa.Error, OSError, UnicodeDecodeError) as exc:
            self._drop()
            raise InstrumentFault(f"{net}: {self.spec.resource} failed on {command!r}: "
                                  f"{_reason(exc)}") from None

    def _drop(self) -> None:
        """After a fault the connection's framing is unknown: reopen on next use."""
        if self._res is not None:
            import pyvisa

            res, self._res = self._res, None
            handle = None
            # Closing a connection that already failed may fail again; it is gone either way.
            with contextlib.suppress(pyvisa.Error, OSError):
                handle = res.session
                res.close()
            if handle is not None:
                _forget(res, handle)

    def close(self) -> None:
        with self.io_lock:
            self._drop()


def _forget(res: Any, handle: Any) -> None:
    """Drop what pyvisa keeps about a session after it is closed.

    pyvisa-py's close() leaves the session object in the library's table, and pyvisa keeps a
    last-status and an ignored-warnings entry per handle: about 2 KB per open, forever. The
    agent opens a session for each instrument command, so that was its steady growth
    (issue 10's soak). pyvisa-py's table goes last: while it holds the handle, no new session
    can be given the same number.
    """
    lib = res.visalib
    for table in ("_last_status_in_session", "_ignore_warning_in_session", "sessions"):
        getattr(lib, table, {}).pop(handle, None)
    res.session = None  # the handle is gone: its __del__ must not close it again


def _no_delay(res: Any) -> None:
    """Turn Nagle off on a raw SOCKET session.

    A setting followed by its SYST:ERR? check is a write then a query; with Nagle on, the
    query waits for the setting's ACK, which an instrument may delay by 40 ms. pyvisa-py leaves
    Nagle on for SOCKET sessions and refuses VI_ATTR_TCPIP_NODELAY there, so the option is set
    on its socket directly (HiSLIP and VXI-11 sessions set it themselves).
    """
    session = getattr(res.visalib, "sessions", {}).get(getattr(res, "session", None))
    sock = getattr(session, "interface", None)
    if isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reason(exc: BaseException) -> str:
    import pyvisa

    if isinstance(exc, pyvisa.errors.VisaIOError) and \
            exc.error_code == pyvisa.constants.StatusCode.error_timeout:
        return "timed out waiting for the instrument"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in str(exc):
        return "cannot reach the instrument: connection refused (is it on and connected?)"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def open_session(spec: InstrumentSpec, net: str) -> InstrumentSession:
    """Claim the instrument for this process and share its session among nets."""
    with _lock:
        claims.acquire(spec.resource, net, f"{spec.name} ({spec.driver} at {spec.resource})")
        session = _sessions.get(spec.resource)
        if session is None:
            session = _sessions[spec.resource] = InstrumentSession(spec)
        session.users += 1
        return session


def close_session(spec: InstrumentSpec, net: str) -> None:
    with _lock:
        session = _sessions.get(spec.resource)
        if session is not None:
            session.users -= 1
            if session.users <= 0:
                session.close()
                del _sessions[spec.resource]
        claims.release(spec.resource, net)
