"""What lager shows when a command fails: one line and its exit code, a traceback only with
--debug. Without click, so that the click-free paths (client/script_fastpath.py) say exactly
what the click CLI says (client/cli.py's LagerGroup uses the same two functions)."""
from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable

from lager.errors import ConnectionFailed, LagerError

from . import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED


def as_lager_error(exc: Exception) -> LagerError:
    """A library or OS error that escaped the command, as the one line a user should see.

    Connection trouble is 255 as ssh has it; a local file problem or a bug in lager is 1.
    """
    lost: tuple[type[BaseException], ...] = (EOFError, ConnectionError, TimeoutError)
    paramiko = sys.modules.get("paramiko")
    if paramiko is not None:
        lost += (paramiko.SSHException,)
    if isinstance(exc, lost):
        return ConnectionFailed(f"lost the connection to the box: {exc or type(exc).__name__}")
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return LagerError(f"{exc.strerror or exc}{where}")
    return LagerError(f"internal error: {type(exc).__name__}: {exc} "
                      "(`lager --debug ...` shows the traceback)")


def stdout_gone() -> bool:
    """True when nobody reads our stdout any more (a pipe whose reader closed reports POLLERR),
    as opposed to a broken connection to the box."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def quiet_stdout() -> None:
    """`lager nets | head -2`: the reader had enough; no second error when Python flushes
    stdout at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def guarded(command: Callable[[], int], debug: bool = False) -> int:
    """Run a command as LagerGroup.invoke runs one: any error as one line (`Error: ...` on
    stderr) and its exit code, Ctrl-C as a quiet 130, a closed stdout as a quiet 141."""
    try:
        return command()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        if not stdout_gone():
            return _fail(as_lager_error(exc), debug)
        quiet_stdout()
        return EXIT_BROKEN_PIPE
    except LagerError as exc:
        return _fail(exc, debug)
    except Exception as exc:  # noqa: BLE001 - the contract is one line, never a traceback
        return _fail(as_lager_error(exc), debug)


def _fail(exc: LagerError, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write(f"Error: {exc}\n")
    return exc.exit_code
