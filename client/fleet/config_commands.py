"""`lager groups` and `lager boxes import --inventory FILE`."""
from __future__ import annotations

import json
from collections.abc import Callable

import click

from lager.errors import LagerError, UsageError

from ..context import LagerContext, pass_ctx
from . import groups as lager_groups
from .inventory import inventory_file
from .inventory import read as read_inventory
from .targets import fold

group_option = click.option("--group", "groups", multiple=True, metavar="GROUP",
                            help="put the box in this group (repeat for more; adding a known "
                                 "box again sets its groups)")


@click.command("groups")
@click.option("--inventory", metavar="FILE", help="also the groups of this Ansible inventory")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def groups(obj: LagerContext, inventory: str | None, as_json: bool) -> None:
    """List each group with its folded set of boxes."""
    from .targets import all_groups

    path = inventory_file(inventory)
    defined = all_groups(obj.config, read_inventory(path) if path else None)
    if as_json:
        click.echo(json.dumps({g: sorted(m) for g, m in sorted(defined.items())}))
        return
    if not defined:
        click.echo("no groups yet: lager boxes add NAME --host HOST --group GROUP")
    for name, members in sorted(defined.items()):
        click.echo(f"@{name:<15} {fold(members)}")


def _prefixed(name: str) -> Callable[[str], None]:
    return lambda line: click.echo(f"{name}: {line}")


@click.command("import")
@click.option("--inventory", metavar="FILE", required=True,
              help="the Ansible inventory to snapshot into lager's config")
@pass_ctx
def import_(obj: LagerContext, inventory: str) -> None:
    """Add every inventory host as a lager box (pinning its host key) and its groups."""
    from ..enroll import add_box

    inv = read_inventory(inventory)
    known = obj.config.boxes()
    ours = lager_groups.load(obj.config)
    clash = sorted(set(ours) & set(inv.groups))
    if clash:
        raise UsageError(f"group @{clash[0]} is already one of lager's; rename one first")
    failed = 0
    for name, box in inv.boxes.items():
        if name in known:
            click.echo(f"{name}: already a lager box; lager's config wins, left as it is")
        else:
            try:
                add_box(obj.config, name, host=box.host, port=box.port, user=box.user,
                        echo=_prefixed(name))
            except LagerError as exc:
                click.echo(f"{name}: not imported: {exc}", err=True)
                failed += 1
                continue
        member_of = [g for g, m in inv.groups.items() if name in m]
        current = [g for g, m in lager_groups.load(obj.config).items() if name in m]
        lager_groups.set_box_groups(obj.config, name, sorted({*current, *member_of}))
    if failed:
        raise LagerError(f"{failed} of {len(inv.boxes)} boxes not imported (see above)")
