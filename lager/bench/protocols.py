"""What every driver and every state share. Each kind's own protocol (the ABC its vendor
drivers implement) and state dataclass live in its kind module, lager/bench/kinds/."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import InstrumentSession


class State:
    """Mixin for a kind's frozen state dataclass: attributes for code, `state['voltage']`
    for scripts written against the real lager (whose state is a dict), and as_dict() for
    the wire. Drivers return states; they never print."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    def __getitem__(self, key: str) -> Any:
        if key not in self.as_dict():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(self.as_dict())

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)


class Driver:
    def __init__(self, session: InstrumentSession, channel: int | None, net: str) -> None:
        self.session = session
        self.channel = channel
        self.net = net  # errors name the net the user asked for

    def _w(self, command: str) -> None:
        self.session.write(self.net, command)

    def _q(self, command: str) -> str:
        return self.session.query(self.net, command)

    def _f(self, command: str) -> float:
        return self.session.query_float(self.net, command)

    def _set(self, command: str) -> None:
        """A setting, then the instrument's error queue: a refusal is an error naming the net."""
        self.session.configure(self.net, command)
