"""The click context object: config, the resolved box, and the one way to talk to it."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from lager.errors import ConnectionFailed, refusal

from . import lean_imports
from .config import Box, Config

# inspect (~8 ms) only once a dataclass without a docstring is made (client/lean_imports.py).
lean_imports.dataclasses()
from dataclasses import dataclass, field  # noqa: E402

if TYPE_CHECKING:
    import click

    from .ssh import BoxConnection

F = TypeVar("F", bound=Callable[..., Any])


# A dataclass, not a record (client/records.py): the fleet derives its own from it.
@dataclass
class LagerContext:
    """What every command is given: the config, the box asked for (resolved once), --debug.
    (A docstring of its own: dataclasses would otherwise load inspect to write one.)"""

    config: Config = field(default_factory=Config)
    box_name: str | None = None
    debug: bool = False
    _box: Box | None = None

    def box(self) -> Box:
        if self._box is None:
            self._box = self.config.box(self.box_name)
        return self._box

    def connect(self) -> BoxConnection:
        from .ssh import BoxConnection

        return BoxConnection(self.config, self.box())

    def request(self, subsystem: str, line: str | None = None,
                env: dict[str, str] | None = None) -> str:
        """One short request/answer subsystem call; a refusal raises with the box's reason.

        Through the box's connection keeper when there is one (client/mux.py), else direct,
        leaving a keeper behind for the next request. The keeper's answer decides whether
        going direct is allowed: a request it may have forwarded is sent again only when a
        second arrival does nothing more (client/keeper_retry.py: a continue is numbered).
        """

        from . import keeper_retry

        def direct(sent: str | None, _patient: bool) -> tuple[str, str, int]:
            with self.connect() as conn:
                return exchange(conn, subsystem, sent, env)

        settled = keeper_retry.keeper_or_direct(self.config, self.box(), subsystem, line, env,
                                                direct)
        assert settled is not None  # this direct way never declines
        out, err, status = settled
        if status != 0:
            raise refusal(subsystem, err, status)
        return out

    def request_json(self, subsystem: str, line: str | None = None) -> Any:
        return json.loads(self.request(subsystem, line))


def exchange(conn: BoxConnection, subsystem: str, line: str | None,
             env: dict[str, str] | None, timeout: float | None = None,
             on_sent: Callable[[], None] | None = None) -> tuple[str, str, int]:
    """Send one request, read the whole answer. A channel that closes without an exit status
    means the connection died under it: ConnectionFailed, never a made-up status."""
    return answer(conn.open(subsystem, env=env, on_invoke=on_sent), conn.box.name, subsystem,
                  line, timeout)


def answer(chan: Any, box_name: str, subsystem: str, line: str | None,
           timeout: float | None) -> tuple[str, str, int]:
    """On a channel with its subsystem asked for: send the request line, read the whole answer,
    close the channel."""
    try:
        chan.settimeout(timeout)
        if line is not None:
            chan.sendall((line + "\n").encode())
        chan.shutdown_write()
        out, err = read_all(chan)
        status = chan.recv_exit_status()
    finally:
        chan.close()
    if status < 0:
        raise ConnectionFailed(f"lost the connection to box {box_name} before it "
                               f"answered the {subsystem!r} request")
    return out, err, status


def read_all(chan: Any) -> tuple[str, str]:
    from .chan_io import read_to_end

    out, err = read_to_end(chan.recv), read_to_end(chan.recv_stderr)
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# click is imported where a command is declared, never for the context itself: a run's start
# (client/script_fastpath.py) uses this module without click (issue 13).

def pass_ctx(f: F) -> F:
    import click

    return click.pass_obj(f)  # type: ignore[return-value]


def _set_box(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.ensure_object(LagerContext).box_name = value
    return value


def box_option(f: F) -> F:
    """`--box NAME`, else $LAGER_BOX; resolved once into the context object."""
    import click

    return click.option("--box", envvar="LAGER_BOX", expose_value=False, callback=_set_box,
                        is_eager=True, help="the box to use (default: $LAGER_BOX)")(f)
