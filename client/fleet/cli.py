"""The fleet's command line: the same click commands and options as one box, plus the fleet's
own (--forks, --gather, --output-dir, --junit-xml, --connect-timeout, --inventory), for a
`--box` in set syntax (client/entry.py routes here; client/fleet/route.py decides)."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from lager import protocol
from lager.errors import UsageError

from ..cli import LagerGroup, run_group
from ..cli import cli as main_cli
from ..config import ENV_CONNECT_TIMEOUT, parse_seconds
from ..context import LagerContext, box_option

F = Callable[..., Any]


def fleet_options(gather_default: bool | None) -> list[click.Parameter]:
    """None: `lager python` decides per mode (gathered for --list, not for a script)."""
    return [
        click.Option(["--forks"], type=click.IntRange(1, 4096), default=32, show_default=True,
                     help="at most this many boxes connecting at once (a started run holds "
                          "none)"),
        click.Option(["--gather/--no-gather", "gather"], default=gather_default,
                     show_default=gather_default is not None,
                     help="print identical output once under its folded set (clush -b)"),
        click.Option(["--output-dir"], metavar="DIR",
                     help="write BOX.stdout, BOX.stderr and BOX.json there"),
        click.Option(["--junit-xml"], metavar="FILE", help="write a JUnit XML report"),
        click.Option(["--connect-timeout"], metavar="SECONDS",
                     help="give up on a box that has not connected, shaken hands and "
                          "authenticated in this time (default 10)"),
        click.Option(["--inventory"], metavar="FILE",
                     help="an Ansible inventory for boxes and @groups (also $LAGER_INVENTORY)"),
    ]


def _apply_connect_timeout(value: str | None) -> None:
    if value:
        parse_seconds(value, "--connect-timeout")
        # Through the env, as the per-command override the connection code already reads.
        os.environ[ENV_CONNECT_TIMEOUT] = value


def _obj(ctx: click.Context) -> LagerContext:
    obj = ctx.find_object(LagerContext)
    assert obj is not None
    return obj


def _targets(obj: LagerContext, inventory: str | None, required: bool = True) -> Any:
    from .targets import resolve

    if not obj.box_name:
        if required:
            raise UsageError("no boxes given: use --box SET (e.g. bench[01-05] or @line1)")
        return None
    return resolve(obj.config, obj.box_name, inventory)


def _python_callback(ctx: click.Context, **kw: Any) -> None:
    from . import python_modes

    obj = _obj(ctx)
    _apply_connect_timeout(kw.pop("connect_timeout"))
    raise SystemExit(python_modes.dispatch(ctx, obj, kw, lambda required=True: _targets(
        obj, kw.get("inventory"), required)))


def python_command() -> click.Command:
    from ..commands.python import ScriptCommand, python

    return ScriptCommand("python", params=[*python.params, *fleet_options(None)],
                         callback=click.pass_context(_python_callback),
                         context_settings={"ignore_unknown_options": True}, help=python.help)


def short_command(name: str) -> click.Command:
    """`lager nets` or `lager KIND ...` over a set: the rest of the line as one box has it."""

    def callback(ctx: click.Context, rest: tuple[str, ...], forks: int, gather: bool,
                 output_dir: str | None, junit_xml: str | None, connect_timeout: str | None,
                 inventory: str | None) -> None:
        from .commands import short_command as run_short

        if output_dir or junit_xml:
            raise UsageError("--output-dir and --junit-xml go with `lager python SCRIPT`")
        obj = _obj(ctx)
        _apply_connect_timeout(connect_timeout)
        fleet = _targets(obj, inventory)
        raise SystemExit(run_short(obj.config, fleet.targets, [name, *rest], forks, gather))

    params: list[click.Parameter] = [*fleet_options(True),
                                     click.Argument(["rest"], nargs=-1, type=click.UNPROCESSED)]
    cmd = click.Command(name, params=params, callback=click.pass_context(callback),
                        context_settings={"ignore_unknown_options": True},
                        help=f"`lager {name}` on every box of --box SET.")
    return box_option(cmd)  # type: ignore[no-any-return]


class FleetGroup(LagerGroup):
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "python":
            return python_command()
        found = super().get_command(ctx, cmd_name)
        if found is None or cmd_name in ("boxes", "groups"):
            return found
        return short_command(cmd_name)


def main(argv: list[str]) -> int:
    group = FleetGroup(name="lager", params=main_cli.params, callback=main_cli.callback,
                       context_settings=main_cli.context_settings, help=main_cli.help)
    return run_group(group, argv)


def is_fleet_id(value: str | None) -> bool:
    return bool(value) and protocol.valid_fleet_id(value or "")


def stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()
