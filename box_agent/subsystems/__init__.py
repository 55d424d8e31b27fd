"""One handler per SSH subsystem; the server dispatches on the subsystem name."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from lager import protocol

from ..pause_watch import handle_pauses
from .common import Context, fail
from .console import handle_console
from .control import handle_continue, handle_kill, handle_list
from .files import handle_download
from .nets import handle_nets
from .reservation import handle_reservation
from .run import handle_attach, handle_run

Handler = Callable[[Context], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    protocol.SUB_RUN: handle_run,
    protocol.SUB_ATTACH: handle_attach,
    protocol.SUB_CONTINUE: handle_continue,
    protocol.SUB_CONSOLE: handle_console,
    protocol.SUB_KILL: handle_kill,
    protocol.SUB_LIST: handle_list,
    protocol.SUB_NETS: handle_nets,
    protocol.SUB_DOWNLOAD: handle_download,
    protocol.SUB_RESERVATION: handle_reservation,
    protocol.SUB_PAUSES: handle_pauses,
}
# The one list of subsystems: what the handlers serve.
SUBSYSTEMS = tuple(HANDLERS)

__all__ = ["HANDLERS", "SUBSYSTEMS", "Context", "fail"]
