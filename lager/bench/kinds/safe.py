"""Safe states (issue 15): what a net is put in when a run ends in any way but a clean exit.

The bench file declares one per net:

```yaml
nets:
  supply2: {kind: PowerSupply, instrument: dp821, channel: 1, safe: off}
  supply3: {kind: PowerSupply, instrument: dp821, channel: 2,
            safe: {voltage: 0, enabled: false}}
  adc1: {kind: ADC, instrument: daq6510, channel: 101, safe: none}
```
`off` is `{enabled: false}`; `none` says there is nothing to do (an input). Each kind declares
which settings it has (`Kind.safe`), so a typo in the bench file fails when it is loaded, not
when a run has just crashed. Turning an output off goes first and turning one on goes last,
so set points never change on a live output.
"""
from __future__ import annotations

import math

from ...errors import BenchConfigError

# Not typing.TYPE_CHECKING: the kinds' declarations (kinds/*_spec.py) hold SafeSettings, and
# `lager supply ...` loads them on its fast path, where typing is a cost (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .spec import Kind

    # A declared safe state: (setting, value) pairs in the order they are applied; empty: `none`.
    SafeState = tuple[tuple[str, Any], ...]

ENABLED = "enabled"
# YAML 1.1 (PyYAML) reads a bare `off` as False, and `on` as True; both spellings are taken.
_OFF_WORDS = ("off", "false", "no")
_ON_WORDS = ("on", "true", "yes")
NONE_WORD = "none"


class SafeSetting:
    """One setting a bench file's `safe:` may give a kind's net (a plain class: see above)."""

    __slots__ = ("apply", "name", "unit")

    def __init__(self, name: str, apply: Callable[[Any, Any], None], unit: str = "") -> None:
        self.name = name  # the bench file's key
        self.apply = apply  # (the open net, the value)
        self.unit = unit  # a number in this unit; "" for a switch (enabled)

    def check(self, raw: Any, where: str) -> Any:
        if not self.unit:
            flag = _switch(raw)
            if flag is None:
                raise BenchConfigError(f"{where}: safe {self.name} must be true or false, "
                                       f"not {raw!r}")
            return flag
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or \
                not math.isfinite(raw) or raw < 0:
            raise BenchConfigError(f"{where}: safe {self.name} must be a number >= 0 "
                                   f"({self.unit}), not {raw!r}")
        return float(raw)

    def describe(self, value: Any) -> str:
        if not self.unit:
            return "on" if value else "off"
        return f"{value:g} {self.unit}"


def switch(on: str, off: str) -> Callable[[Any, Any], None]:
    """An `enabled` setting: call the net's method for on or for off."""
    return lambda net, value: getattr(net, on if value else off)()


def _switch(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _OFF_WORDS + _ON_WORDS:
        return raw.strip().lower() in _ON_WORDS
    return None


def parse_safe(kind: Kind, raw: Any, where: str) -> SafeState:
    """A net's `safe:` from the bench file, checked against what its kind can do."""
    settings = {s.name: s for s in kind.safe}
    if raw is None or (isinstance(raw, str) and raw.strip().lower() == NONE_WORD):
        return ()
    if _switch(raw) is False:
        if ENABLED not in settings:
            raise BenchConfigError(f"{where}: a {kind.net_type} net has no output to turn "
                                   f"off; declare `safe: none`")
        return ((ENABLED, False),)
    if not isinstance(raw, dict) or not raw:
        known = ", ".join(settings) or "none"
        raise BenchConfigError(f"{where}: safe must be off, none, or a mapping of settings "
                               f"({known}), not {raw!r}")
    checked: dict[str, Any] = {}
    for name, value in raw.items():
        setting = settings.get(str(name))
        if setting is None:
            known = ", ".join(settings) or "none"
            raise BenchConfigError(f"{where}: a {kind.net_type} net has no safe setting "
                                   f"{name!r} (it has: {known})")
        checked[setting.name] = setting.check(value, where)
    return tuple(sorted(checked.items(), key=_order))


def _order(item: tuple[str, Any]) -> int:
    name, value = item
    if name == ENABLED:
        return 2 if value else 0  # off before anything else; on after everything
    return 1


def apply_safe(kind: Kind, net: Any, state: SafeState) -> None:
    settings = {s.name: s for s in kind.safe}
    for name, value in state:
        settings[name].apply(net, value)


def apply_nets(nets: dict[str, str]) -> tuple[list[str], list[str]]:
    """Put each net (name -> the resource it was claimed on) in its declared safe state, each
    claimed for the moment as any user claims it: a net another process holds is left alone.
    Returns what was done (`supply2 off`) and what was not, with why. Nets of another bench
    file (a resource that is not this bench's) and `safe: none` nets are passed over."""
    from ...errors import DeviceBusy, LagerError
    from .. import kinds
    from ..net import Net, bench

    done: list[str] = []
    failed: list[str] = []
    try:
        specs = bench()
    except LagerError as exc:
        return done, [f"not applied: {exc}"]
    for name in sorted(nets):
        spec = specs.get(name)
        kind = kinds.by_type(spec.kind) if spec is not None else None
        if spec is None or kind is None or spec.instrument.resource != nets[name]:
            continue
        if spec.safe is None:
            failed.append(f"{name} not applied: the bench file declares no safe state")
            continue
        if not spec.safe:
            continue  # `safe: none`: an input, nothing to do
        try:
            with Net.get(name, type=spec.kind) as net:
                apply_safe(kind, net, spec.safe)
        except DeviceBusy as exc:
            # `busy: claimed by another process: run 1a2b…9f (x.py, pid 7)`, without the remedy
            holder = str(exc).split(" is busy: ", 1)[-1].split("; read it through", 1)[0]
            failed.append(f"{name} not applied: busy: {holder}")
            continue
        except LagerError as exc:
            failed.append(f"{name} not applied: {exc}")
            continue
        done.append(f"{name} {describe_safe(kind, spec.safe)}")
    return done, failed


def describe_safe(kind: Kind, state: SafeState) -> str:
    """`off`, `off (0 V)`, `(0 V, 0.5 A)`, or `nothing to do`."""
    if not state:
        return "nothing to do"
    settings = {s.name: s for s in kind.safe}
    switch_word = next((settings[n].describe(v) for n, v in state if n == ENABLED), "")
    rest = [settings[n].describe(v) for n, v in state if n != ENABLED]
    return " ".join(filter(None, [switch_word, f"({', '.join(rest)})" if rest else ""]))
