"""`lager`: the developer-side CLI. One module per command group under client/commands."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from lager.errors import LagerError, usage_line

from . import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED
from .context import LagerContext
from .failure import as_lager_error
from .failure import stdout_gone as _stdout_gone


class LagerGroup(click.Group):
    """Turns any error into one line and its exit code; a traceback only with --debug.

    The instrument commands (one per kind of net, from lager/bench/kinds) are built only when
    one is asked for, or for --help: `lager python ...` never imports the kinds registry.
    """

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in _GROUPS:
            found = _GROUPS[cmd_name]()
            self.add_command(found, cmd_name)
        if found is None:
            from .commands import instruments

            found = instruments.command_for(cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        from .commands import instruments

        return sorted({*super().list_commands(ctx), *_GROUPS, *instruments.command_names()})

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Ctrl-C outside a run's own loop (while connecting, uploading, or waiting on a
            # short request): leave quietly, as a shell command interrupted by SIGINT does.
            ctx.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError as exc:
            if not _stdout_gone():
                self._fail(ctx, as_lager_error(exc))
            # `lager nets | head -2`: the reader had enough. Quiet, with the code of a tool
            # that SIGPIPE ended, and no second error when Python flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_BROKEN_PIPE)
        except LagerError as exc:
            self._fail(ctx, exc)
        except Exception as exc:  # noqa: BLE001 - the contract is one line, never a traceback
            self._fail(ctx, as_lager_error(exc))

    @staticmethod
    def _fail(ctx: click.Context, exc: LagerError) -> NoReturn:
        obj = ctx.find_object(LagerContext)
        if obj is not None and obj.debug:
            import traceback

            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(exc.exit_code)


@click.group(cls=LagerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="LAGER_DEBUG",
              help="show tracebacks for errors (also $LAGER_DEBUG=1)")
@click.option("--box", envvar="LAGER_BOX", help="the box to use (default: $LAGER_BOX)")
@click.option("-F", "ssh_config", metavar="FILE", type=click.Path(dir_okay=False),
              help="the ssh_config to read (default ~/.ssh/config; also $LAGER_SSH_CONFIG)")
@click.pass_context
def cli(ctx: click.Context, debug: bool, box: str | None, ssh_config: str | None) -> None:
    """Run bench scripts on a lager box over SSH."""
    if ssh_config:
        # Through the environment, so the connection keeper it leaves behind reads it too.
        os.environ["LAGER_SSH_CONFIG"] = os.path.abspath(ssh_config)
    from . import ssh  # no paramiko import: that happens only when a box is reached

    obj = ctx.ensure_object(LagerContext)
    obj.debug = debug
    ssh.set_debug(debug)
    if box and not obj.box_name:
        obj.box_name = box


def _python() -> click.Command:
    from .commands import python

    return python.python


def _boxes() -> click.Command:
    from .commands import boxes
    from .fleet import config_commands  # `lager boxes import` (issue 18)

    boxes.boxes.add_command(config_commands.import_)
    return boxes.boxes


def _groups() -> click.Command:
    from .fleet import config_commands

    return config_commands.groups


# Each command group is imported when it is asked for (or for --help), as the instrument
# commands are: `lager python test.py` loaded `boxes` and the fleet's config commands with
# their reservation messages, about a fifth of the CLI's start before a run begins (issue 13).
_GROUPS: dict[str, Callable[[], click.Command]] = {"python": _python, "boxes": _boxes,
                                                   "groups": _groups}


def run_group(group: click.Group, argv: list[str] | None = None) -> int:
    """Run a click group as lager does: not click's standalone mode (it turns Ctrl-C into
    "Aborted!" and exit 1), and click's own usage errors as one line, exit 2."""
    try:
        code = group.main(args=argv, prog_name="lager", standalone_mode=False)
    except click.Abort:  # Ctrl-C (or EOF) while click itself was parsing
        return EXIT_INTERRUPTED
    except click.UsageError as exc:  # bad input on the command line: one line, exit 2
        click.echo(usage_line(exc.format_message(), exc.ctx.command_path if exc.ctx else None),
                   err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run_group(cli))
