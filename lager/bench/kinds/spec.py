"""How a kind of net is declared, once: its verbs (the CLI's words and the box's actions), the
type of each verb's value, its options, its state, its drivers and its Net API class.

The CLI (client/commands/instruments.py) builds its commands from these declarations, the box
(box_agent/bench_commands.py) checks and runs requests with them, and Net.get finds the driver
and the API class through them.

Import-light on purpose (issue 13): `lager supply NET ...` reads a kind on its fast path, so
this module and each kind's declaration (kinds/<kind>_spec.py) load no instrument library,
none of typing, dataclasses or inspect, and not the Net classes (lager.bench.net and its
config: enum, pathlib, tempfile); ~18 ms of a 75 ms first call, measured. Hence plain classes
with __slots__ here, and the Net class and drivers named as "module:Class", imported on use.
"""
from __future__ import annotations

import importlib
import math

from ...errors import UsageError

# Not typing.TYPE_CHECKING: importing typing is the cost this module avoids.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from .safe import SafeSetting

    # What a verb does on the box: (the open net, the checked value, the checked options) ->
    # extra fields for the answer (or None). The answer is always the net's state plus these.
    Action = Callable[[Any, Any, dict[str, float]], "dict[str, Any] | None"]
    Shown = Callable[[dict[str, Any]], str]

NUMBER = "number"
WORD = "word"
MAX_WORD = 64


class _Frozen:
    """Declarations are made once and shared by the CLI and the box: never changed after."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only ({name})")

    def _init(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self, 'name', '?')!r})"


class Verb(_Frozen):
    __slots__ = ("choices", "confirm", "help", "name", "options", "required", "run", "show",
                 "takes", "unit")
    name: str
    help: str
    run: Action | None  # None: nothing to do but answer with the state
    takes: str | None  # None, NUMBER or WORD
    required: bool  # a value must be given; otherwise an omitted value is a read
    choices: tuple[str, ...]  # the WORDs it accepts (any case); empty: any short word
    unit: str
    options: tuple[str, ...]  # which of the kind's numeric --options go with it
    confirm: str | None  # asked on a terminal before acting, unless --yes
    show: Shown | None  # the human form of its answer; else the kind's one line

    def __init__(self, name: str, help: str, run: Action | None = None,
                 takes: str | None = None, required: bool = False,
                 choices: tuple[str, ...] = (), unit: str = "", options: tuple[str, ...] = (),
                 confirm: str | None = None, show: Shown | None = None) -> None:
        self._init(name=name, help=help, run=run, takes=takes, required=required,
                   choices=choices, unit=unit, options=options, confirm=confirm, show=show)

    def check_value(self, raw: Any) -> float | str | None:
        """The value a request or a command line gave, checked against this verb's type."""
        if self.takes is None:
            if raw is not None:
                raise UsageError(f"{self.name} takes no value")
            return None
        if raw is None:
            if self.required:
                raise UsageError(f"{self.name} needs a value")
            return None
        if self.takes == NUMBER:
            return number(raw, self.name)
        return self._word(raw)

    def _word(self, raw: Any) -> str:
        text = raw if isinstance(raw, str) else None
        if text is None or not text.strip() or len(text) > MAX_WORD or \
                any(ord(c) < 32 for c in text):
            raise UsageError(f"{self.name} takes a short word, not {str(raw)[:40]!r}")
        text = text.strip()
        if not self.choices:
            return text
        for choice in self.choices:
            if choice.lower() == text.lower():
                return choice
        raise UsageError(f"{self.name} {text!r} is not one of: {', '.join(self.choices)}")

    def check_options(self, raw: Any, kind: Kind) -> dict[str, float]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise UsageError("options must be a mapping of names to numbers")
        checked: dict[str, float] = {}
        for name, value in raw.items():
            if value is None:
                continue
            if name not in self.options:
                takers = [v.name for v in kind.verbs if name in v.options]
                where = f"goes with {' or '.join(takers)}" if takers else "is not an option"
                raise UsageError(f"--{str(name)[:40]} {where}, not {self.name}")
            checked[name] = number(value, f"--{name}")
        return checked


def call(method: str) -> Any:
    """A verb's action that calls the net's no-argument `method` (`enable`, `clear_ovp`)."""
    return lambda net, _value, _opts: getattr(net, method)()


def is_number(token: str) -> bool:
    """A command-line token that is a number (`-1`, `-0.5`, `1e-3`): a VALUE, even when it
    starts with `-`, where click would take it for an unknown short option."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def number(raw: Any, what: str) -> float:
    """A finite number from a request or a command line, or a one-line usage error."""
    if isinstance(raw, bool):
        raise UsageError(f"{what} value {raw!r} is not a number")
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{what} value {str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{what} value {str(raw)[:40]!r} is not a finite number")
    return value


class Kind(_Frozen):
    __slots__ = ("aliases", "default_verb", "drivers", "line", "name", "net_api", "net_type",
                 "options", "safe", "snapshot", "summary", "verbs")
    name: str  # the CLI command and the nets request's "command"
    net_type: str  # the NetType member (lager.bench.net.NetType)
    summary: str
    verbs: tuple[Verb, ...]
    default_verb: str
    net_api: str  # "module:Class" of the Net API class a script gets from Net.get
    drivers: Mapping[str, str]  # bench file `driver:` -> "module:Class" (imported on use)
    snapshot: Callable[[Any], dict[str, Any]]  # the state every answer carries
    line: Shown  # one human line for an answer
    options: Mapping[str, str]  # --name -> help
    aliases: tuple[str, ...]  # other CLI spellings (the real lager's)
    safe: tuple[SafeSetting, ...]  # what a bench file's `safe:` may set (kinds/safe.py)

    def __init__(self, name: str, net_type: str, summary: str, verbs: tuple[Verb, ...],
                 default_verb: str, net_api: str, drivers: Mapping[str, str],
                 snapshot: Callable[[Any], dict[str, Any]], line: Shown,
                 options: Mapping[str, str] | None = None, aliases: tuple[str, ...] = (),
                 safe: tuple[SafeSetting, ...] = ()) -> None:
        self._init(name=name, net_type=net_type, summary=summary, verbs=verbs,
                   default_verb=default_verb, net_api=net_api, drivers=drivers,
                   snapshot=snapshot, line=line, options=options or {}, aliases=aliases,
                   safe=safe)

    def verb(self, name: str) -> Verb | None:
        return next((v for v in self.verbs if v.name == name), None)

    def request(self, net: str, verb_name: str | None, value: Any,
                options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The nets request for `lager KIND NET [VERB] [VALUE] [--OPTION N]`, checked (a
        one-line UsageError otherwise). The click command and the fast path both build it
        here, so the two cannot send different requests for one command line."""
        verb = self.verb(verb_name or self.default_verb)
        if verb is None:
            names = ", ".join(v.name for v in self.verbs)
            raise UsageError(f"{self.name}: no verb {str(verb_name)[:40]!r} (verbs: {names})")
        request: dict[str, Any] = {"command": self.name, "net": net, "action": verb.name}
        checked = verb.check_value(value)
        if verb.takes == WORD:
            request["word"] = checked
        elif checked is not None:
            request["value"] = checked
        given = {k: v for k, v in (options or {}).items() if v is not None}
        if given:
            request["options"] = verb.check_options(given, self)
        return request

    @property
    def net_class(self) -> type:
        """The Net API class a script gets from Net.get (imported here, on the box's side)."""
        return _resolve(self.net_api)

    def driver_class(self, driver: str) -> type | None:
        target = self.drivers.get(driver)
        return None if target is None else _resolve(target)


def _resolve(target: str) -> type:
    """`module:Class` -> the class."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
