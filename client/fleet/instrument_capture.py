"""An instrument command over a set in a form the fast path does not take (an option such as
`--ovp`, a question asked on a terminal): the single-box click command itself parses, checks
and asks, once, against a recorder that keeps the request it would send; the fleet then sends
that same request to every box and shows each answer as one box would."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..context import LagerContext
from ..fastpath import Call


class _Captured(Exception):
    """The command reached its request: stop it there (nothing was sent)."""


@dataclass
class _Recorder(LagerContext):
    captured: tuple[str, str | None] | None = None

    def request_json(self, subsystem: str, line: str | None = None) -> Any:
        self.captured = (subsystem, line)
        raise _Captured


def capture(argv: list[str]) -> Call | None:
    """The request `lager KIND NET ...` would send, and how to show its answer; None for a
    command that is not an instrument's."""
    from lager.bench import kinds

    from ..commands import instruments
    from ..instrument_views import show_answer

    kind = kinds.by_command(argv[0])
    command = instruments.command_for(argv[0])
    if kind is None or command is None:
        return None
    recorder = _Recorder()
    ctx = command.make_context(argv[0], list(argv[1:]), obj=recorder)
    try:
        with ctx:
            command.invoke(ctx)
    except _Captured:
        pass
    if recorder.captured is None:
        return None
    params = ctx.params
    verb = kind.verb(params.get("verb_name") or kind.default_verb)
    if verb is None or params.get("net") is None:
        return None
    reading = params.get("value") is None and \
        not any(params.get(name) is not None for name in kind.options)
    subsystem, line = recorder.captured
    return Call(subsystem, line, None,
                lambda out: [show_answer(kind, verb, reading, json.loads(out))])
