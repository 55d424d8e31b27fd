"""The instrument commands other terminals run while a script is paused (`nets` subsystem).

They run in the agent's process, through the same lager.bench API and claims as scripts, so
an instrument a script holds answers busy here too, and a free one just works. What a command
may do, and the type of its value, is the kind's declaration (lager/bench/kinds); this module
only checks a request against it and runs it.

Request: lager.protocol.channel.InstrumentRequest (command KIND, net, action VERB, value or
word, options).
Answer: the net's state, plus what the verb adds (`models`), plus "net".
"""
from __future__ import annotations

from typing import Any

from lager.bench import claims, kinds
from lager.bench.kinds.spec import WORD
from lager.bench.net import Net, bench
from lager.errors import LagerError
from lager.protocol.channel import InstrumentRequest


def list_nets() -> list[dict[str, Any]]:
    rows = []
    for spec in bench().values():
        holder = claims.holder_now(spec.instrument.resource)
        rows.append({"name": spec.name, "kind": spec.kind, "instrument": spec.instrument.name,
                     "driver": spec.instrument.driver, "resource": spec.instrument.resource,
                     "channel": spec.channel, "held_by": holder})
    return rows


# Verbs that take no value and still only read (the rest of those act: enable, clear-ovp...).
_READING_VERBS = frozenset({"models"})


def changes(request: InstrumentRequest) -> bool:
    """Whether a request would change the bench, for the box's reservation: a verb without a
    value that only answers, or a verb whose value was left out (a read), does not. A request
    that names no known verb is left to `execute` to refuse."""
    command = request.command
    kind = kinds.by_command(command) if isinstance(command, str) else None
    if kind is None:
        return False
    verb = kind.verb(request.action or kind.default_verb)
    if verb is None or verb.run is None:
        return False
    if verb.takes is None:
        return verb.name not in _READING_VERBS
    return request.value is not None or request.word is not None or bool(request.options)


def execute(request: InstrumentRequest) -> Any:
    command = request.command
    if command == "nets":
        return list_nets()
    kind = kinds.by_command(command) if isinstance(command, str) else None
    if kind is None:
        raise LagerError(f"unknown instrument command {str(command)[:40]!r}")
    action = request.action or kind.default_verb
    verb = kind.verb(action)
    if verb is None:
        raise LagerError(f"lager {kind.name} has no action {str(action)[:40]!r}; "
                         f"use one of: {', '.join(v.name for v in kind.verbs)}")
    raw = request.word if verb.takes == WORD else request.value
    if verb.takes != WORD and request.word is not None:
        raise LagerError(f"lager {kind.name} {verb.name} takes no word")
    value = verb.check_value(raw)
    options = verb.check_options(request.options, kind)
    name = request.net or ""
    with Net.get(name, type=kind.net_type) as net:
        extra = verb.run(net, value, options) if verb.run is not None else None
        return {"net": name, **kind.snapshot(net), **(extra or {})}
