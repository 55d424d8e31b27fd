"""The kind registry (lager/bench/kinds) is the one place a kind is declared: what the CLI,
the fast path and the box derive from it must hold together. A new kind that breaks one of
these rules fails here, in the unit tier, before any end-to-end run."""
from __future__ import annotations

import importlib

import pytest

from client.commands.instruments import command_for, command_names
from lager.bench import kinds
from lager.bench.kinds.spec import Kind
from lager.bench.net import NetType

KINDS = list(kinds.KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_kind_holds_together(kind: Kind) -> None:
    assert NetType(kind.net_type).value == kind.net_type  # a real lager net type
    assert kinds.by_type(kind.net_type) is kind
    names = [v.name for v in kind.verbs]
    assert len(names) == len(set(names)), f"{kind.name}: a verb declared twice"
    assert kind.verb(kind.default_verb) is not None
    for verb in kind.verbs:
        assert set(verb.options) <= set(kind.options), f"{kind.name} {verb.name}"
        assert verb.name == verb.name.lower() and " " not in verb.name
    for driver, target in kind.drivers.items():
        module, _, attr = target.partition(":")
        assert hasattr(importlib.import_module(module), attr), f"{kind.name}: {driver}"
    for name in (kind.name, *kind.aliases):
        assert kinds.by_command(name) is kind
        command = command_for(name)
        assert command is not None and command.name == kind.name


def test_command_names_are_unique() -> None:
    names = command_names()
    assert len(names) == len(set(names))
    assert {"supply", "battery", "adc", "load", "eload", "nets"} <= set(names)
