"""What every driver and every state share. Each kind's own protocol (the ABC its vendor
drivers implement) and state dataclass live in its kind module, lager/bench/kinds/."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import InstrumentSession


class State(dict):  # type: ignore[type-arg]
    """Base of a kind's frozen state dataclass: attributes for code, and a dict too, as the
    real lager's state is (`state['voltage']`, `isinstance(state, dict)`, json.dumps(state)),
    holding the same fields. as_dict() is a plain dict for the wire. Drivers return states;
    they never print."""

    def __post_init__(self) -> None:
        dict.update(self, asdict(self))  # type: ignore[call-overload]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]


class Driver:
    def __init__(self, session: InstrumentSession, channel: int | None, net: str) -> None:
        self.session = session
        self.channel = channel
        self.net = net  # errors name the net the user asked for

    def _q(self, command: str) -> str:
        return self.session.query(self.net, command)

    def _f(self, command: str) -> float:
        return self.session.query_float(self.net, command)

    def _set(self, command: str) -> None:
        """A setting, then the instrument's error queue: a refusal is an error naming the net."""
        self.session.configure(self.net, command)
