"""The one exception hierarchy. Every error a user can see is a LagerError with an exit code;
the CLI prints its message as one line (a traceback only with --debug)."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~5 ms of a short command's start (issue 13)
if TYPE_CHECKING:
    from typing import Any


class LagerError(Exception):
    exit_code = 1


class UsageError(LagerError):
    exit_code = 2


class ConnectionFailed(LagerError):
    """Cannot reach or authenticate to a box: 255, as ssh does."""

    exit_code = 255


class HostKeyChanged(ConnectionFailed):
    pass


class AuthFailed(ConnectionFailed):
    pass


class UnknownBox(LagerError):
    pass


class RunNotFound(LagerError):
    pass


class AmbiguousRunId(LagerError):
    pass


class NotPaused(LagerError):
    pass


class RemoteError(LagerError):
    """The box refused a request and said why (the message is the box's one line)."""


class Reserved(RemoteError):
    """The box is reserved by another identity: its own exit code (75, EX_TEMPFAIL), so CI and
    the fleet tell "try later" from a failure."""

    exit_code = 75

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}  # who holds the box, for programs (the fleet)


def refusal(what: str, err: str, status: int) -> RemoteError:
    """A box's refusal (its stderr line and exit status) as the error to raise."""
    if status == Reserved.exit_code:
        return Reserved(err.strip() or "the box is reserved")
    return RemoteError(err.strip() or f"{what} failed with status {status}")


class NetError(LagerError):
    pass


class InvalidNetError(NetError):
    """No such net on this bench: the real lager's name (`from lager import InvalidNetError`)."""


class UnknownNet(InvalidNetError):
    """No net of that name."""


class WrongNetType(InvalidNetError):
    """The net exists, but it is another kind."""


class NoSuchNetType(InvalidNetError):
    """A NetType this box has no nets of (GPIO, UART, ...)."""


class SetupFunctionRequiredError(NetError):
    """The real lager raises this for muxed nets opened without a setup function; nets here
    need none, so it is only ever caught, never raised. Kept so scripts that import it run."""


class DeviceBusy(NetError):
    pass


class InstrumentFault(NetError):
    """Timeout, disconnect or a garbled reply from an instrument."""


class BenchConfigError(NetError):
    pass


class PauseTimeout(LagerError):
    """pause(on_timeout="fail") timed out: nobody resumed it in time. The one exception pause()
    raises, and only when asked to (`from lager import PauseTimeout`)."""


def usage_line(message: str, command_path: str | None) -> str:
    """Click's usage error as the one line both CLIs print (click's own form is four lines:
    the usage, a hint, a blank, the error)."""
    where = f" (see '{command_path} --help')" if command_path else ""
    return f"Error: {message.rstrip('.')}{where}"
