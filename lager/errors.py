"""The one exception hierarchy. Every error a user can see is a LagerError with an exit code;
the CLI prints its message as one line (a traceback only with --debug)."""
from __future__ import annotations


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


class NetError(LagerError):
    pass


class UnknownNet(NetError):
    pass


class WrongNetType(NetError):
    pass


class DeviceBusy(NetError):
    pass


class InstrumentFault(NetError):
    """Timeout, disconnect or a garbled reply from an instrument."""


class BenchConfigError(NetError):
    pass
