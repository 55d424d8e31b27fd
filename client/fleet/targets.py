"""`--box SET`: a ClusterShell node set over lager's groups and the inventory's, resolved to
boxes before anything starts (bad input is one line, exit 2, and no box is touched)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from lager.errors import LagerError, UsageError

from ..config import Box, Config
from . import groups as lager_groups
from .inventory import Inventory, inventory_file
from .inventory import read as read_inventory

# `@name` starts a group only at the start of a term: `user@host` (#12) is one box.
_GROUP_REF = re.compile(r"(?:^|[,&!^\s])@([A-Za-z0-9_.:-]+)")


@dataclass
class Target:
    name: str
    box: Box
    index: int  # LAGER_FLEET_INDEX: the box's place in the folded set, from 0
    group: str  # the first group naming it ("" if none): JUnit's lager.GROUP.BOX


@dataclass
class Fleet:
    expression: str
    targets: list[Target]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    @property
    def folded(self) -> str:
        return fold(self.names)


def fold(names: list[str]) -> str:
    from ClusterShell.NodeSet import NodeSet

    return str(NodeSet.fromlist(names)) if names else ""


def expand(text: str) -> list[str]:
    from ClusterShell.NodeSet import NodeSet

    return list(NodeSet(text))


def all_groups(config: Config, inventory: Inventory | None) -> dict[str, list[str]]:
    """Lager's groups and the inventory's; a group both define is an error, not a guess."""
    merged = lager_groups.load(config)
    if inventory is not None:
        both = sorted(set(merged) & set(inventory.groups))
        if both:
            raise UsageError(f"group @{both[0]} is defined both in lager's config and in "
                             f"{inventory.source}; rename one")
        merged.update(inventory.groups)
    return merged


def _resolver(defined: dict[str, list[str]]) -> object:
    from ClusterShell.NodeUtils import GroupResolver, GroupSource

    source = GroupSource("lager", {g: ",".join(m) for g, m in defined.items() if m})
    return GroupResolver(source)


def resolve(config: Config, expression: str, inventory_path: str | None = None) -> Fleet:
    from ClusterShell.NodeSet import NodeSet, NodeSetParseError
    from ClusterShell.NodeUtils import GroupResolverError

    path = inventory_file(inventory_path)
    inventory = read_inventory(path) if path else None
    defined = all_groups(config, inventory)
    if inventory is not None:  # Ansible's own @all and @ungrouped, which `lager groups` omits
        defined = {**inventory.implicit, **defined}
    for name in _GROUP_REF.findall(expression):
        if name not in defined:
            known = ", ".join(f"@{g}" for g in sorted(defined)) or "none yet"
            raise UsageError(f"unknown group @{name} in --box {expression!r} (known: {known}; "
                             "add boxes to a group with `lager boxes add NAME --group G`)")
        if not defined[name]:
            raise UsageError(f"group @{name} is empty")
    try:
        nodes = NodeSet(expression, resolver=_resolver(defined))
    except (NodeSetParseError, GroupResolverError, ValueError) as exc:
        raise UsageError(f"--box {expression!r} is not a box set: {exc}") from None
    names = list(nodes)
    if not names:
        raise UsageError(f"--box {expression!r} names no box")
    stored = config.boxes()
    membership: dict[str, str] = {}
    for group, members in sorted(defined.items()):
        for member in members:
            membership.setdefault(member, group)
    targets = []
    for index, name in enumerate(names):
        targets.append(Target(name, _box(config, name, stored, inventory), index,
                              membership.get(name, "")))
    return Fleet(expression, targets)


def _box(config: Config, name: str, stored: dict[str, Box], inventory: Inventory | None) -> Box:
    """Lager's config wins where both name a box; then the inventory; then ssh_config."""
    if name in stored:
        return config.box(name)
    if inventory is not None and name in inventory.boxes:
        return inventory.boxes[name]
    try:
        return config.box(name)
    except LagerError as exc:
        raise UsageError(str(exc)) from None
