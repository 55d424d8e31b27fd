"""`lager boxes add|list|remove`: the boxes this laptop knows and their pinned host keys;
`lager boxes lock|unlock|status --box B`: the box's reservation, which the box keeps.
`lager boxes` lists them offline; `lager boxes --status` adds who holds each (asked in parallel).

The real lager's spellings work too: `boxes add --name N --ip IP [--user U]` and
`boxes delete --name N`.
"""
from __future__ import annotations

import copy
import json
import re
import sys
import threading
import time
from typing import TypeVar

import click

from lager.errors import LagerError, UsageError
from lager.protocol import DEFAULT_PORT, short_id
from lager.protocol.codec import Message
from lager.protocol.reservation import (
    Hold,
    Locked,
    LockRequest,
    ReservationStatus,
    StatusRequest,
    Unlocked,
    UnlockRequest,
    when,
)

from ..config import DEFAULT_CONNECT_TIMEOUT, ENV_CONNECT_TIMEOUT, parse_seconds
from ..context import LagerContext, box_option, pass_ctx
from ..fleet.config_commands import group_option

M = TypeVar("M", bound=Message)


# `lager boxes --status`: how long the "locked by" column waits for a box, all boxes at once.
STATUS_TIMEOUT = 5.0

_status_option = click.option(
    "--status", "with_status", is_flag=True,
    help="add a LOCKED BY column: ask every box who holds it, in parallel (a box that does not "
         f"answer within {STATUS_TIMEOUT:g}s shows ?)")


@click.group(invoke_without_command=True)
@_status_option
@click.pass_context
def boxes(ctx: click.Context, with_status: bool) -> None:
    """Known boxes and their pinned host keys (alone: list them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_, with_status=with_status)
    elif with_status:
        raise UsageError("--status goes alone or after list: `lager boxes --status`, "
                         "`lager boxes list --status`")


def _host_port(host: str | None, port: int | None) -> tuple[str | None, int | None]:
    """`--ip 10.0.0.7:2222` (or `[fe80::1]:2222`) as the address and port; a bare IPv6
    address keeps its colons. A port given twice must agree."""
    if not host:
        return host, port
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", host)
    if not match:
        return host.strip("[]"), port
    address, number = (match[1], match[2]) if match[1] else (match[3], match[4])
    given = int(number)
    if not 1 <= given <= 65535:
        raise UsageError(f"--host {host}: port {given} is not 1-65535")
    if port is not None and port != given:
        raise UsageError(f"--host {host} says port {given} but --port says {port}; give one")
    return address, given


def _name(name: str | None, name_opt: str | None) -> str:
    """NAME, or the real lager's --name NAME (the same, if both are given)."""
    if name and name_opt and name != name_opt:
        raise UsageError(f"two names: {name!r} and --name {name_opt!r}; give one")
    chosen = name or name_opt
    if not chosen:
        raise UsageError("give the box's NAME (or --name NAME)")
    return chosen


@boxes.command("add")
@click.argument("name", required=False)
@group_option
@click.option("--name", "name_opt", metavar="NAME", help="the box's name (the real lager's "
              "spelling of NAME)")
@click.option("--host", "--ip", "host", metavar="HOST[:PORT]",
              help="address or host name of the box, optionally with its port (--ip is the "
                   "real lager's spelling)")
@click.option("--ssh", "ssh", metavar="HOST",
              help="reach the box as ssh would: an ssh_config Host (ProxyJump, User, Port, "
                   "IdentityFile... read at each use), or [USER@]HOST[:PORT]")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help=f"SSH port (with --host; default {DEFAULT_PORT})")
@click.option("--user", default=None,
              help="SSH user name (with --host; default lager; the box decides by key, the "
                   "name goes in its audit log)")
@click.option("--identity", type=click.Path(dir_okay=False), default=None,
              help="private key to use (default: lager's own, created on first use)")
@click.option("--repin", is_flag=True, help="accept a changed host key for an existing box")
@click.option("--yes", is_flag=True, help="accepted for the real lager; nothing is asked")
@click.option("--connect-timeout", "connect_timeout", metavar="SECONDS", default=None,
              help=f"give up on a box that does not answer (default "
                   f"{DEFAULT_CONNECT_TIMEOUT:g}s; ${ENV_CONNECT_TIMEOUT} overrides it)")
@click.option("--json", "as_json", is_flag=True,
              help="print the box as `boxes list --json` does (progress goes to stderr)")
@pass_ctx
def add(obj: LagerContext, name: str | None, name_opt: str | None, host: str | None,
        ssh: str | None, port: int | None, user: str | None, identity: str | None,
        repin: bool, yes: bool, connect_timeout: str | None, groups: tuple[str, ...],
        as_json: bool) -> None:
    """Connect once to NAME, pin its host key, and check that our key is authorized."""
    from ..enroll import add_box
    from ..fleet.groups import check_group_name, set_box_groups

    name = _name(name, name_opt)
    if not host and not ssh:
        raise UsageError("give the box's address: --host HOST (or --ip IP), or an ssh_config "
                         "Host: --ssh HOST")
    timeout = parse_seconds(connect_timeout, "--connect-timeout") if connect_timeout else None
    host, port = _host_port(host, port)
    for group in groups:
        check_group_name(group)

    def say(line: str) -> None:
        click.echo(line, err=as_json)

    add_box(obj.config, name, host=host, ssh=ssh, port=port, user=user, identity=identity,
            connect_timeout=timeout, repin=repin, echo=say)
    if groups:
        set_box_groups(obj.config, name, list(groups))
    if as_json:
        click.echo(json.dumps(vars(obj.config.boxes()[name])))


@boxes.command("list")
@click.option("--json", "as_json", is_flag=True)
@_status_option
@pass_ctx
def list_(obj: LagerContext, as_json: bool = False, with_status: bool = False) -> None:
    """Show the known boxes (offline; --status asks each box who holds it)."""
    known = obj.config.boxes()
    locked = locked_by(obj, list(known)) if with_status else {}
    if as_json:
        rows = [vars(b) for b in known.values()]
        if with_status:
            rows = [{**row, "locked_by": locked[row["name"]]} for row in rows]
        click.echo(json.dumps(rows))
        return
    if not known:
        click.echo("no boxes yet: lager boxes add NAME --host HOST")
    elif with_status:  # the holder's words can be long: last, after the aligned columns
        where = {b.name: f"{b.user}@{b.host}:{b.port}" for b in known.values()}
        width = max(len("ADDRESS"), *(len(w) for w in where.values()))
        click.echo(f"{'NAME':<16} {'ADDRESS':<{width}}  LOCKED BY")
        for name in known:
            click.echo(f"{name:<16} {where[name]:<{width}}  {locked[name]}")
        return
    for box in known.values():
        click.echo(f"{box.name:<16} {box.user}@{box.host}:{box.port}"
                   + (f"  ssh {box.ssh}" if box.ssh else "")
                   + (f"  key {box.identity}" if box.identity else "")
                   + (f"  connect timeout {box.connect_timeout:g}s"
                      if box.connect_timeout else ""))


@boxes.command("remove")
@click.argument("name", required=False)
@click.option("--name", "name_opt", metavar="NAME", help="the box's name")
@click.option("--yes", is_flag=True, help="do not ask first (it asks only on a terminal)")
@click.option("--json", "as_json", is_flag=True,
              help='print {"removed": NAME, "unpinned": true|false}')
@pass_ctx
def remove(obj: LagerContext, name: str | None, name_opt: str | None, yes: bool,
           as_json: bool) -> None:
    """Forget NAME and its pinned host key (`delete` is the real lager's spelling)."""
    name = _name(name, name_opt)
    obj.config.box(name)  # an unknown box says so before any question
    if not yes and sys.stdin.isatty() and \
            not click.confirm(f"Delete box {name} and its pinned host key?", default=False):
        raise LagerError(f"{name} kept (--yes skips the question)")
    gone = obj.config.remove_box(name)
    from ..fleet.groups import forget_box

    forget_box(obj.config, name)
    if as_json:  # unpinned: false when another box at the same address keeps the pin
        click.echo(json.dumps({"removed": name,
                               "unpinned": obj.config.pinned_line(gone) is None}))
    else:
        click.echo(f"removed {name}")


boxes.add_command(remove, "delete")


# -- shared boxes: the box keeps the reservation; these only ask it (box_agent/reservations.py)

def _reservation(obj: LagerContext, request: Message, answer: type[M]) -> M:
    from lager import protocol

    return answer.decode(obj.request(protocol.SUB_RESERVATION, request.as_line()))


def _status_of(obj: LagerContext, name: str) -> ReservationStatus:
    """One box's reservation status, on a connection of its own (no keeper is left behind:
    `--status` asks every box, and most are not used next)."""
    from lager import protocol

    from ..context import exchange
    from ..ssh import BoxConnection

    found = obj.config.box(name)
    box = copy.copy(found)  # Box is a plain record (client/config.py), not a dataclass
    box.connect_timeout = min(found.connect_timeout or STATUS_TIMEOUT, STATUS_TIMEOUT)
    with BoxConnection(obj.config, box) as conn:
        out, err, code = exchange(conn, protocol.SUB_RESERVATION,
                                  StatusRequest().as_line(), None, timeout=STATUS_TIMEOUT)
    if code != 0:
        raise LagerError(err.strip() or f"status {code}")
    return ReservationStatus.decode(out)


def locked_by(obj: LagerContext, names: list[str]) -> dict[str, str]:
    """The LOCKED BY cell of each box, all asked at once: `-` when free, `?` for a box that
    failed or did not answer within STATUS_TIMEOUT (its reason goes to stderr with --debug)."""
    cells = dict.fromkeys(names, "?")

    def ask(name: str) -> None:
        try:
            cells[name] = _status_of(obj, name).locked_by()
        except Exception as exc:  # noqa: BLE001 - any failure of one box is only its cell
            if obj.debug:
                click.echo(f"lager: box {name}: {exc}", err=True)

    threads = [threading.Thread(target=ask, args=(name,), daemon=True, name=f"status-{name}")
               for name in names]
    for thread in threads:
        thread.start()
    until = time.monotonic() + STATUS_TIMEOUT + 1.0
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))
    # A box still being asked keeps its `?`: the daemon thread dies with the command.
    return {name: cells[name] for name in names}


@boxes.command("lock")
@box_option
@click.option("--reason", default="", metavar="TEXT", help="why, shown to whoever is refused")
@pass_ctx
def lock(obj: LagerContext, reason: str) -> None:
    """Reserve the box for your key until `lager boxes unlock` (it survives box restarts)."""
    from ..reservation_wait import label

    hold = _reservation(obj, LockRequest(label=label(), reason=reason), Locked).locked
    click.echo(f"locked box {obj.box().name} for {hold.who()} since {when(hold.since)}")


@boxes.command("unlock")
@box_option
@click.option("--force", is_flag=True,
              help="take away another key's lock (recorded in the box's audit)")
@pass_ctx
def unlock(obj: LagerContext, force: bool) -> None:
    """Release your lock on the box (or, with --force, anyone's)."""
    answer = _reservation(obj, UnlockRequest(force=force), Unlocked)
    click.echo(f"box {obj.box().name}: {answer.message}")


def _holding(hold: Hold) -> str:
    """What a hold is doing, as the status header says it: a paused run says so."""
    if hold.kind == "lock":
        return "locked"
    if hold.kind != "run":
        return "starting a run"
    run = f"run {short_id(hold.run_id)} ({hold.script})"
    return f'paused {run} at "{hold.paused}"' if hold.paused is not None else f"running {run}"


@boxes.command("status")
@box_option
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(obj: LagerContext, as_json: bool) -> None:
    """Who holds the box, since when and why; its runs and pauses; the queue."""
    from ..run_views import format_runs

    answer = _reservation(obj, StatusRequest(), ReservationStatus)
    if as_json:
        click.echo(answer.as_line())
        return
    name = obj.box().name
    if not answer.enabled:
        click.echo(f"box {name}: reservations are off (lager-box serve --reservations off)")
    elif not answer.holds:
        click.echo(f"box {name}: free")
    for hold in answer.holds:
        click.echo(f"box {name}: {_holding(hold)} by {hold.who()} since {when(hold.since)}"
                   + (f", reason: {hold.reason}" if hold.reason else ""))
    if answer.runs:
        click.echo(format_runs(answer.runs))
    for place, waiter in enumerate(answer.queue, 1):
        label = f" [{waiter.label}]" if waiter.label else ""
        # The identity beside the name: two keys both called lager:user@vm are two waiters.
        click.echo(f"queue {place}: {waiter.name} ({waiter.identity.removeprefix('key:')})"
                   f"{label} waiting since {when(waiter.since)}")
    for forced in answer.forced_unlocks:
        click.echo(f"forced unlock at {when(forced.at)} by {forced.by_name} "
                   f"({forced.by}) of {forced.lock.who()}'s lock")
