"""The kind registry (lager/bench/kinds) is the one place a kind is declared: what the CLI,
the fast path and the box derive from it must hold together. A new kind that breaks one of
these rules fails here, in the unit tier, before any end-to-end run."""
from __future__ import annotations

import importlib
import subprocess
import sys

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


def test_the_declarations_load_none_of_the_heavy_modules() -> None:
    """Every kind's declaration, read as the CLI's fast path reads it, in a fresh interpreter:
    none of typing, dataclasses, inspect, enum (the Net classes' modules) nor an instrument
    library comes with it (issue 13); the Net classes still load when asked for."""
    probe = ("import sys\nfrom lager.bench import kinds\n"
             "for k in kinds.KINDS:\n    kinds.by_command(k.name).request('n', None, None)\n"
             "print(sorted(m for m in ('typing', 'dataclasses', 'inspect', 'enum', 'pyvisa',"
             " 'yaml', 'lager.bench.net', 'lager.bench.kinds.supply') if m in sys.modules))\n"
             "kinds.KINDS[0].net_class\nprint('lager.bench.net' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_the_net_side_reads_the_one_declaration(kind: Kind) -> None:
    """The Net class is the one the declaration names, and its module's renderers are the
    declaration's own (one definition: `lager supply` and `psu.state()` print one block)."""
    net_module = importlib.import_module(kind.net_class.__module__)
    spec_module = importlib.import_module(f"{net_module.__name__}_spec")
    assert spec_module.KIND is kind
    if hasattr(spec_module, "block"):
        assert net_module.block is spec_module.block
    with pytest.raises(AttributeError, match="read-only"):
        kind.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="read-only"):
        kind.verbs[0].run = None  # type: ignore[misc]
