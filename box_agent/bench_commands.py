"""The instrument commands other terminals run while a script is paused (`nets` subsystem).

They run in the agent's process, through the same lager.bench API and claims as scripts, so
an instrument a script holds answers busy here too, and a free one just works. What a command
may do, and the type of its value, is the kind's declaration (lager/bench/kinds); this module
only checks a request against it and runs it.

Request: {"command": KIND, "net": NAME, "action": VERB, "value": NUMBER | null,
          "word": WORD | null, "options": {"ovp": NUMBER, ...} | null}
(a word travels apart from "value" because the nets subsystem admits only numbers there).
Answer: the net's state, plus what the verb adds (`models`), plus "net".
"""
from __future__ import annotations

from typing import Any

from lager.bench import claims, kinds
from lager.bench.kinds.spec import WORD
from lager.bench.net import Net, bench
from lager.errors import LagerError


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


def changes(request: dict[str, Any]) -> bool:
    """Whether a request would change the bench, for the box's reservation: a verb without a
    value that only answers, or a verb whose value was left out (a read), does not. A request
    that names no known verb is left to `execute` to refuse."""
    command = request.get("command")
    kind = kinds.by_command(command) if isinstance(command, str) else None
    if kind is None:
        return False
    verb = kind.verb(request.get("action") or kind.default_verb)
    if verb is None or verb.run is None:
        return False
    if verb.takes is None:
        return verb.name not in _READING_VERBS
    return request.get("value") is not None or request.get("word") is not None or \
        bool(request.get("options"))


def execute(request: dict[str, Any]) -> Any:
    command = request.get("command")
    if command == "nets":
        return list_nets()
    kind = kinds.by_command(command) if isinstance(command, str) else None
    if kind is None:
        raise LagerError(f"unknown instrument command {str(command)[:40]!r}")
    action = request.get("action") or kind.default_verb
    verb = kind.verb(action)
    if verb is None:
        raise LagerError(f"lager {kind.name} has no action {str(action)[:40]!r}; "
                         f"use one of: {', '.join(v.name for v in kind.verbs)}")
    raw = request.get("word") if verb.takes == WORD else request.get("value")
    if verb.takes != WORD and request.get("word") is not None:
        raise LagerError(f"lager {kind.name} {verb.name} takes no word")
    value = verb.check_value(raw)
    options = verb.check_options(request.get("options"), kind)
    name = str(request.get("net", ""))
    with Net.get(name, type=kind.net_type) as net:
        extra = verb.run(net, value, options) if verb.run is not None else None
        return {"net": name, **kind.snapshot(net), **(extra or {})}
