"""One pyvisa session per instrument per process, shared by every net on that instrument."""
from __future__ import annotations

import threading
from typing import Any

from ..errors import InstrumentFault
from . import claims
from .config import InstrumentSpec

_lock = threading.Lock()
_sessions: dict[str, InstrumentSession] = {}
_rm: Any = None


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

            try:
                res = _resource_manager().open_resource(
                    self.spec.resource, read_termination="\n", write_termination="\n",
                    timeout=self.spec.timeout_ms)
            except (pyvisa.Error, OSError) as exc:
                raise InstrumentFault(f"{net}: cannot open {self.spec.resource}: "
                                      f"{_reason(exc)}") from None
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

    def _exchange(self, net: str, command: str, query: bool) -> str | None:
        import pyvisa

        with self.io_lock:
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
            try:
                self._res.close()
            except Exception:  # noqa: BLE001 - closing a broken session may fail any way
                pass
            self._res = None

    def close(self) -> None:
        with self.io_lock:
            self._drop()


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
