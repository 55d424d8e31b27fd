"""`lager python`: run a script on the box, and manage runs and their breakpoints.

The command line (ISSUE-NOTES 12): lager's own options are lager's anywhere on the line (the
spec writes `lager python test.py --box mybox --env ...`); `--` ends them and all after it goes
to the script; an option that is not lager's is the script's after the script, and a usage error
(exit 2) before it, so `-x test.py` never runs test.py with `-x` lost.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import PurePosixPath
from typing import Any

import click

from lager import protocol
from lager.errors import LagerError, RemoteError, UsageError

from ..context import LagerContext, box_option
from ..run_views import format_runs
from .option_scan import option_arities, option_arity

MODES = ("continue_id", "console_id", "reattach_id", "kill_id", "list_runs", "kill_all")
_MODE_FLAGS = "--continue, --console, --reattach, --kill, --kill-all, --list"


class ScriptCommand(click.Command):
    """Refuses an option that is not lager's before the script; click does the rest."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = option_arities(self, ctx)
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--" or not token.startswith("-") or token == "-":
                break  # the script (or `--`): what follows may be the script's
            i += 1 + option_arity(token, takes_value, ctx)
        return super().parse_args(ctx, args)


def _parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--env {item!r} must be NAME=VALUE")
        _check_name(name, f"--env {item!r}")
        env[name] = value
    return env


def _check_name(name: str, where: str) -> None:
    if not protocol.valid_env_name(name):
        raise UsageError(f"{where}: {name!r} is not a valid variable name")


def _passenv(names: tuple[str, ...]) -> dict[str, str]:
    """--passenv VAR: this shell's value of VAR, for the script."""
    env: dict[str, str] = {}
    for name in names:
        _check_name(name, f"--passenv {name}")
        if name not in os.environ:
            raise UsageError(f"--passenv {name}: {name} is not set in this shell")
        env[name] = os.environ[name]
    return env


def _parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"--timeout {value!r} is not a number of seconds") from None
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise UsageError(f"--timeout {value!r} must be 0 (unlimited) or more seconds")
    return seconds


def _check_downloads(paths: tuple[str, ...]) -> None:
    """Before the run starts: a path the box would refuse after it is a usage error now, not a
    run whose code is lost to the refusal."""
    for path in paths:
        shown = repr(path[:100])
        if not path.strip() or "\x00" in path:
            raise UsageError(f"--download {shown}: give a file or dir in the run's working dir")
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts:
            raise UsageError(f"--download {shown}: must be relative to the run's working dir, "
                             "without '..'")


def _parse_reconnect_for(value: str) -> None:
    """--reconnect-for: how long a lost link is retried before lager gives up (the run goes
    on). Through the env, as LAGER_RECONNECT_FOR, so the fleet's boxes read it too."""
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"--reconnect-for {value!r} is not a number of seconds") from None
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise UsageError(f"--reconnect-for {value!r} must be 0 (do not reconnect) or more "
                         "seconds")
    os.environ["LAGER_RECONNECT_FOR"] = f"{seconds:g}"
    from .. import follow

    follow.RECONNECT_FOR = seconds


def _stop_on_disconnect(ctx: click.Context, flag: bool, detach: bool) -> bool:
    """On by default under CI=true, so a cancelled job takes its run with it; never for a
    detached run (its client leaves at once), and asking for both is a usage error."""
    source = ctx.get_parameter_source("stop_on_disconnect")
    if source is not None and source is not click.core.ParameterSource.DEFAULT:
        if flag and detach:
            raise UsageError("--stop-on-disconnect and --detach contradict each other")
        return flag and not detach
    from ..script_run import stops_on_disconnect_by_default

    return stops_on_disconnect_by_default(detach)


@click.command(cls=ScriptCommand, context_settings={"ignore_unknown_options": True})
@click.argument("script", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@box_option
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="set in the script")
@click.option("--passenv", "passenv", multiple=True, metavar="NAME",
              help="pass this shell's value of NAME to the script")
@click.option("--timeout", default="0", show_default=True,
              help="total runtime limit in seconds (0 = unlimited; the box caps it at 300)")
@click.option("-d", "--detach", is_flag=True,
              help="start the run and return; it goes on on the box")
@click.option("--stop-on-disconnect/--no-stop-on-disconnect", "stop_on_disconnect",
              default=False, help="stop the run if this client's connection is lost "
                                  "(default: on when CI=true)")
@click.option("--download", "downloads", multiple=True, metavar="PATH",
              help="once the run ends, fetch PATH (a file or dir in its working dir)")
@click.option("--reconnect-for", "reconnect_for", metavar="SECONDS", default=None,
              help="after a lost link, try to reconnect this long before giving up (the run "
                   "goes on; default $LAGER_RECONNECT_FOR, else 600; 0: do not)")
@click.option("--allow-overwrite", "allow_overwrite", is_flag=True,
              help="let --download replace files that already exist here (without it they "
                   "are kept, and a clash seen before the run starts refuses it)")
@click.option("--add-file", "add_files", multiple=True, metavar="FILE",
              help="upload an extra file beside the script")
@click.option("--pause-on-failure", is_flag=True,
              help="pause where an unhandled exception was raised, before any cleanup runs")
@click.option("--safe-state", "safe_state", type=click.Choice(protocol.SAFE_STATE_CHOICES),
              default=protocol.SAFE_STATE_ON_FAILURE, show_default=True,
              help="when the box puts the run's nets in their safe state: after any end but a "
                   "clean exit, or always")
@click.option("--wait", "wait", metavar="SECONDS", default=None,
              help="if another key holds the box, queue for it up to SECONDS (default under "
                   "CI=true: $LAGER_LOCK_WAIT, else 1800); without it a laptop is refused at "
                   "once (exit 75)")
@click.option("-p", "--port", "ports", multiple=True, metavar="PORT",
              help="port forwarding (the real lager's); this box offers none: refused")
@click.option("--continue", "continue_id", metavar="ID", help="resume a paused run")
@click.option("--console", "console_id", metavar="ID", help="Python console in a paused run")
@click.option("--reattach", "reattach_id", metavar="ID", help="follow a run's output again")
@click.option("--kill", "kill_id", metavar="ID", help="stop a run (SIGINT, then harder)")
@click.option("--kill-all", "kill_all_runs", is_flag=True,
              help="stop every run of yours on the box (asks first on a terminal)")
@click.option("--any-owner", is_flag=True, help="with --kill-all: everyone's runs, not yours")
@click.option("--yes", is_flag=True, help="with --kill-all: do not ask")
@click.option("--signal", "signal_name", metavar="NAME",
              help="with --kill or --kill-all: send this signal instead")
@click.option("--list", "list_runs", is_flag=True, help="show the runs on the box")
@click.option("--json", "as_json", is_flag=True, help="with --list or --kill-all: JSON")
@click.pass_context
def python(ctx: click.Context, script: str | None, args: tuple[str, ...], env: tuple[str, ...],
           passenv: tuple[str, ...], timeout: str, detach: bool, stop_on_disconnect: bool,
           downloads: tuple[str, ...], reconnect_for: str | None, allow_overwrite: bool,
           add_files: tuple[str, ...], pause_on_failure: bool,
           safe_state: str, wait: str | None, ports: tuple[str, ...], continue_id: str | None,
           console_id: str | None, reattach_id: str | None, kill_id: str | None,
           kill_all_runs: bool, any_owner: bool, yes: bool, signal_name: str | None,
           list_runs: bool, as_json: bool) -> None:
    """Run SCRIPT (a file, or a directory with main.py) on the box, streaming its output.

    Options before SCRIPT and after it are lager's; `--` ends them, and everything after it
    goes to the script, as do options lager does not know once SCRIPT is given.
    """
    obj = ctx.find_object(LagerContext)
    assert obj is not None
    if ports:
        raise UsageError(f"-p/--port {ports[0]}: this box offers no port forwarding (lager "
                         "runs over SSH; forward with `ssh -L` to the box instead)")
    chosen = [m for m, v in zip(MODES, (continue_id, console_id, reattach_id, kill_id,
                                        list_runs, kill_all_runs), strict=True) if v]
    if len(chosen) > 1 or (chosen and script):
        raise UsageError(f"give a SCRIPT, or one of {_MODE_FLAGS}")
    if signal_name and not (kill_id or kill_all_runs):
        raise UsageError("--signal goes with --kill or --kill-all")
    if downloads and not (script or reattach_id):
        raise UsageError("--download goes with a SCRIPT or --reattach")
    if downloads and detach:
        raise UsageError("--download waits for the run's end; it cannot go with --detach")
    _check_downloads(downloads)
    if reconnect_for is not None:
        if not (script or reattach_id) or detach:
            raise UsageError("--reconnect-for goes with a SCRIPT (not --detach) or --reattach")
        _parse_reconnect_for(reconnect_for)
    if allow_overwrite and not downloads:
        raise UsageError("--allow-overwrite goes with --download")
    if downloads and not allow_overwrite:
        from ..download import existing

        clash = existing(list(downloads))
        if clash:  # before the run starts: the file here is not lost, nor the run's time
            raise UsageError(f"--download {clash[0]}: {clash[0]} already exists here; "
                             "--allow-overwrite replaces it")
    if wait is not None and not script:
        raise UsageError("--wait goes with a SCRIPT")
    if (any_owner or yes) and not kill_all_runs:
        raise UsageError(f"{'--any-owner' if any_owner else '--yes'} goes with --kill-all")
    if continue_id is not None:
        click.echo(obj.request(protocol.SUB_CONTINUE, _id_arg(continue_id)).rstrip("\n"))
    elif console_id is not None:
        from ..console_client import open_console

        raise SystemExit(open_console(obj, _id_arg(console_id)))
    elif kill_id is not None:
        line = _id_arg(kill_id) + (f" {signal_name}" if signal_name else "")
        click.echo(obj.request(protocol.SUB_KILL, line).rstrip("\n"))
    elif kill_all_runs:
        raise SystemExit(_kill_all(obj, signal_name, any_owner, yes, as_json))
    elif list_runs:
        rows = obj.request_json(protocol.SUB_LIST)
        click.echo(json.dumps(rows) if as_json else format_runs(rows))
    elif reattach_id is not None:
        from ..run_client import reattach

        raise SystemExit(reattach(obj, _id_arg(reattach_id), list(downloads),
                                  overwrite=allow_overwrite))
    elif script:
        from ..script_run import run

        environment = {**_passenv(passenv), **_parse_env(env)}
        raise SystemExit(run(obj, script, list(args), env=environment,
                             timeout=_parse_timeout(timeout), detach=detach,
                             stop_on_disconnect=_stop_on_disconnect(ctx, stop_on_disconnect,
                                                                    detach),
                             pause_on_failure=pause_on_failure, safe_state=safe_state,
                             downloads=downloads, overwrite=allow_overwrite,
                             add_files=add_files, wait=wait))
    else:
        raise UsageError("nothing to do: give a SCRIPT to run, or --list (see --help)")


def _id_arg(value: str) -> str:
    value = value.strip()
    if not value or "\n" in value:
        raise UsageError("give the run id from the banner (or a unique prefix of it)")
    return value


def _my_fingerprint(obj: LagerContext) -> str:
    """The SHA256 fingerprint of the key this client authenticates with, as --list shows it."""
    from ..ssh import fingerprint, load_identity

    return fingerprint(load_identity(obj.config, obj.box()).asbytes())


def _kill_all(obj: LagerContext, signal_name: str | None, any_owner: bool, yes: bool,
              as_json: bool) -> int:
    """Stop every unfinished run that this client's key started (all of them with
    --any-owner), each with the usual stop sequence, or the --signal given.

    The box does not filter runs by owner, so the runs are picked here, from --list's
    started_by.fingerprint against our own key's fingerprint (ISSUE-NOTES 18).
    """
    running = [r for r in obj.request_json(protocol.SUB_LIST)
               if r.get("state") not in ("exited", "lost")]
    mine = None if any_owner else _my_fingerprint(obj)
    targets = [r for r in running
               if mine is None or (r.get("started_by") or {}).get("fingerprint") == mine]
    others = len(running) - len(targets)
    note = (f" ({others} run{'s' if others != 1 else ''} of other keys left alone; "
            "--any-owner stops them too)") if others else ""
    if not targets:
        click.echo(json.dumps([]) if as_json else
                   f"no runs {'' if any_owner else 'of yours '}to stop on box {obj.box().name}"
                   + note)
        return 0
    if not yes and sys.stdin.isatty():
        for row in targets:
            click.echo(f"  {row['short_id']}  {row['script']}  ({row['state']})")
        if not click.confirm(f"Stop these {len(targets)} run(s) on box {obj.box().name}?",
                             default=False):
            raise LagerError("nothing stopped (--yes skips the question)")
    results: list[dict[str, Any]] = []
    failed = False
    for row in targets:
        line = row["id"] + (f" {signal_name}" if signal_name else "")
        try:
            answer, ok = obj.request(protocol.SUB_KILL, line).strip(), True
        except RemoteError as exc:  # it may have ended since the list: said, not fatal
            answer, ok = str(exc), "already exited" in str(exc)
            failed = failed or not ok
        results.append({"id": row["id"], "short_id": row["short_id"],
                        "script": row["script"], "ok": ok, "answer": answer})
    if as_json:
        click.echo(json.dumps(results))
    else:
        for item in results:
            click.echo(item["answer"], err=not item["ok"])
        if note:
            click.echo(note.strip(" ()"), err=True)
    return 1 if failed else 0
