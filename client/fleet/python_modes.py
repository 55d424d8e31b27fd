"""`lager python ... --box SET`: run a script on every box, or manage the fleet's runs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from lager.errors import LagerError, UsageError

from ..commands.python import (
    _parse_env,
    _parse_reconnect_for,
    _parse_timeout,
    _passenv,
    _stop_on_disconnect,
)
from ..context import LagerContext
from . import commands, records
from .cli import is_fleet_id, stdin_is_tty
from .targets import Fleet, Target

Targets = Callable[..., Any]


def dispatch(ctx: click.Context, obj: LagerContext, kw: dict[str, Any], targets: Targets) -> int:
    if kw["ports"]:
        raise UsageError(f"-p/--port {kw['ports'][0]}: this box offers no port forwarding")
    modes = ("continue_id", "console_id", "reattach_id", "kill_id", "list_runs", "kill_all_runs")
    chosen = [m for m in modes if kw[m]]
    if len(chosen) > 1 or (chosen and kw["script"]):
        raise UsageError("give a SCRIPT, or one of --continue, --console, --reattach, --kill, "
                         "--kill-all, --list")
    if kw["any_owner"] and not (kw["kill_all_runs"] or kw["continue_id"] == "all"):
        raise UsageError("--any-owner goes with --continue all or --kill-all")
    if kw.get("wait") is not None and not kw["script"]:
        raise UsageError("--wait goes with a SCRIPT")
    if kw.get("reconnect_for") is not None:
        if not kw["script"] or kw["detach"]:
            raise UsageError("--reconnect-for goes with a SCRIPT (not --detach)")
        _parse_reconnect_for(kw["reconnect_for"])  # the fleet's boxes read it from the env
    forks = kw["forks"]
    if kw["console_id"] or kw["reattach_id"]:
        raise UsageError("--console and --reattach take one run: give BOX:ID (no --box needed)")
    if kw["continue_id"]:
        return _continue(obj, kw["continue_id"], kw["any_owner"], forks, targets)
    if kw["kill_id"]:
        if not is_fleet_id(kw["kill_id"]):
            raise UsageError("with a set, --kill takes a fleet id (f-…), or BOX:ID alone")
        fleet = _fleet_of(obj, kw["kill_id"], targets)
        return commands.kill_runs(obj.config, fleet.targets,
                                  lambda r: r.get("fleet") == kw["kill_id"], forks,
                                  kw["signal_name"])
    if kw["kill_all_runs"]:
        fleet = targets()
        mine = None if kw["any_owner"] else _my_fingerprint(obj, fleet.targets)
        if not kw["yes"] and stdin_is_tty() and not click.confirm(
                f"Stop every run {'' if mine is None else 'of yours '}on {fleet.folded}?",
                default=False):
            raise LagerError("nothing stopped (--yes skips the question)")
        return commands.kill_runs(obj.config, fleet.targets, lambda r: mine is None or (
            r.get("started_by") or {}).get("fingerprint") == mine, forks, kw["signal_name"])
    if kw["list_runs"]:
        fleet = targets()
        argv = ["python", "--list", *(["--json"] if kw["as_json"] else [])]
        gather = True if kw["gather"] is None else kw["gather"]  # --list: gathered
        return commands.short_command(obj.config, fleet.targets, argv, forks, gather)
    if not kw["script"]:
        raise UsageError("nothing to do: give a SCRIPT to run, or --list (see --help)")
    return _run(ctx, obj, kw, targets())


def _my_fingerprint(obj: LagerContext, targets: list[Target]) -> str:
    from ..ssh import fingerprint, load_identity

    return fingerprint(load_identity(obj.config, targets[0].box).asbytes())


def _fleet_of(obj: LagerContext, fleet_id: str, targets: Targets) -> Fleet:
    """The boxes of a fleet: --box SET when given, else what this laptop recorded."""
    given = targets(required=False)
    if given is not None:
        return given  # type: ignore[no-any-return]
    expression, boxes = records.load(obj.config, fleet_id)
    return Fleet(expression, [Target(b.name, b, i, "") for i, b in enumerate(boxes)])


def _continue(obj: LagerContext, value: str, any_owner: bool, forks: int,
              targets: Targets) -> int:
    if is_fleet_id(value):
        fleet = _fleet_of(obj, value, targets)
        return commands.continue_runs(obj.config, fleet.targets,
                                      lambda r: r.get("fleet") == value, forks, value)
    if value == "all":
        fleet = targets()
        mine = None if any_owner else _my_fingerprint(obj, fleet.targets)
        return commands.continue_runs(obj.config, fleet.targets, lambda r: mine is None or (
            r.get("started_by") or {}).get("fingerprint") == mine, forks,
            "every paused run" + ("" if mine is None else " of yours"))
    raise UsageError("with a set, --continue takes a fleet id (f-…) or `all`; one run is "
                     "BOX:ID (no --box needed)")


def _run(ctx: click.Context, obj: LagerContext, kw: dict[str, Any], fleet: Fleet) -> int:
    from .. import reservation_wait
    from ..upload import build_upload
    from .boxrun import FleetRunRequest
    from .fanout import FleetOptions, fleet_env_ok, run_fleet
    from .records import new_fleet_id

    environment = {**_passenv(kw["passenv"]), **_parse_env(kw["env"])}
    fleet_env_ok(environment)
    if kw["downloads"]:
        raise UsageError("--download takes one box; with a set, write results to stdout or "
                         "use --output-dir")
    if kw["junit_xml"]:
        from .junit import check_writable

        check_writable(kw["junit_xml"])
    request = FleetRunRequest(
        upload=build_upload(kw["script"], kw["add_files"]), args=list(kw["args"]),
        env=environment, timeout=_parse_timeout(kw["timeout"]), detach=kw["detach"],
        stop_on_disconnect=_stop_on_disconnect(ctx, kw["stop_on_disconnect"], kw["detach"]),
        pause_on_failure=kw["pause_on_failure"], safe_state=kw["safe_state"],
        # Shared boxes: each box's reservation taken as one box takes it (CI or --wait
        # queues each box in its own queue; a laptop is refused at once: a `reserved` row).
        label=reservation_wait.label(), wait=reservation_wait.wait_seconds(kw.get("wait")),
        fleet=new_fleet_id(obj.config))
    options = FleetOptions(forks=kw["forks"], gather=bool(kw["gather"]),
                           output_dir=kw["output_dir"], junit_xml=kw["junit_xml"],
                           as_json=kw["as_json"], script=request.upload.display_name)
    return run_fleet(obj, fleet, request, options)
