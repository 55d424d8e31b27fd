"""`lager`: the developer-side CLI. One module per command group under client/commands."""
from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from lager.errors import LagerError

from .context import LagerContext


class LagerGroup(click.Group):
    """Turns a LagerError into one line and its exit code; a traceback only with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LagerError as exc:
            obj = ctx.find_object(LagerContext)
            if obj is not None and obj.debug:
                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=LagerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show tracebacks for errors")
@click.option("--box", envvar="LAGER_BOX", help="the box to use (default: $LAGER_BOX)")
@click.pass_context
def cli(ctx: click.Context, debug: bool, box: str | None) -> None:
    """Run bench scripts on a lager box over SSH."""
    obj = ctx.ensure_object(LagerContext)
    obj.debug = debug
    if box and not obj.box_name:
        obj.box_name = box


def _register() -> None:
    from .commands import boxes, instruments, python

    cli.add_command(boxes.boxes)
    cli.add_command(python.python)
    for command in instruments.COMMANDS:
        cli.add_command(command)


_register()


def main() -> None:
    try:
        cli(prog_name="lager")
    except KeyboardInterrupt:
        sys.exit(130)
