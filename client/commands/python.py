"""`lager python`: run a script on the box, and manage runs and their breakpoints."""
from __future__ import annotations

import json
import math

import click

from lager import protocol
from lager.errors import UsageError

from ..context import LagerContext, box_option, pass_ctx
from ..run_views import format_runs

MODES = ("continue_id", "console_id", "reattach_id", "kill_id", "list_runs")


def _parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--env {item!r} must be NAME=VALUE")
        if not name or not (name[0].isalpha() or name[0] == "_") or \
                not all(c.isalnum() or c == "_" for c in name):
            raise UsageError(f"--env {item!r}: {name!r} is not a valid variable name")
        env[name] = value
    return env


def _parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"--timeout {value!r} is not a number of seconds") from None
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise UsageError(f"--timeout {value!r} must be 0 (unlimited) or more seconds")
    return seconds


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("script", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@box_option
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="set in the script")
@click.option("--timeout", default="0", show_default=True,
              help="total runtime limit in seconds (0 = unlimited; the box caps it at 300)")
@click.option("--detach", is_flag=True, help="start the run and return; it goes on on the box")
@click.option("--add-file", "add_files", multiple=True, metavar="FILE",
              help="upload an extra file beside the script")
@click.option("--continue", "continue_id", metavar="ID", help="resume a paused run")
@click.option("--console", "console_id", metavar="ID", help="Python console in a paused run")
@click.option("--reattach", "reattach_id", metavar="ID", help="follow a run's output again")
@click.option("--kill", "kill_id", metavar="ID", help="stop a run (SIGINT, then harder)")
@click.option("--signal", "signal_name", metavar="NAME", help="with --kill: send this signal")
@click.option("--list", "list_runs", is_flag=True, help="show the runs on the box")
@click.option("--json", "as_json", is_flag=True, help="with --list: rows as JSON")
@pass_ctx
def python(obj: LagerContext, script: str | None, args: tuple[str, ...], env: tuple[str, ...],
           timeout: str, detach: bool, add_files: tuple[str, ...], continue_id: str | None,
           console_id: str | None, reattach_id: str | None, kill_id: str | None,
           signal_name: str | None, list_runs: bool, as_json: bool) -> None:
    """Run SCRIPT (a file, or a directory with main.py) on the box, streaming its output."""
    chosen = [m for m, v in zip(MODES, (continue_id, console_id, reattach_id, kill_id,
                                        list_runs), strict=False) if v]
    if len(chosen) > 1 or (chosen and script):
        raise UsageError("give a SCRIPT, or one of --continue, --console, --reattach, "
                         "--kill, --list")
    if signal_name and not kill_id:
        raise UsageError("--signal goes with --kill")
    if continue_id is not None:
        click.echo(obj.request(protocol.SUB_CONTINUE, _id_arg(continue_id)).rstrip("\n"))
    elif console_id is not None:
        from ..console_client import open_console

        raise SystemExit(open_console(obj, _id_arg(console_id)))
    elif kill_id is not None:
        line = _id_arg(kill_id) + (f" {signal_name}" if signal_name else "")
        click.echo(obj.request(protocol.SUB_KILL, line).rstrip("\n"))
    elif list_runs:
        rows = obj.request_json(protocol.SUB_LIST)
        click.echo(json.dumps(rows) if as_json else format_runs(rows))
    elif reattach_id is not None:
        from ..run_client import reattach

        raise SystemExit(reattach(obj, _id_arg(reattach_id)))
    elif script:
        from ..run_client import RunRequest, run_script
        from ..upload import build_upload

        request = RunRequest(upload=build_upload(script, add_files), args=list(args),
                             env=_parse_env(env), timeout=_parse_timeout(timeout),
                             detach=detach)
        raise SystemExit(run_script(obj, request))
    else:
        raise UsageError("nothing to do: give a SCRIPT to run, or --list (see --help)")


def _id_arg(value: str) -> str:
    value = value.strip()
    if not value or "\n" in value:
        raise UsageError("give the run id from the banner (or a unique prefix of it)")
    return value
