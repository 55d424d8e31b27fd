"""`Net.get(name, type=NetType.X)`: the script's handle on one net of the bench.

Which kinds of net this bench serves, their API classes and drivers, is the registry's
(lager/bench/kinds). NetType is the real lager's list of net types: a script may name any of
them, and one this box has none of fails in one line when it is used, not when it is imported.
"""
from __future__ import annotations

import atexit
import enum
import inspect
import math
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import NetError, NoSuchNetType, UnknownNet, WrongNetType
from . import local_nets, saved_nets
from .config import NetSpec, bench_location, load_bench, use_bench_location

if TYPE_CHECKING:
    from .protocols import Driver

_bench: dict[str, NetSpec] | None = None
_bench_seen: tuple[str, tuple[int, int, int] | None] | None = None
_bench_lock = threading.Lock()

Hook = Callable[..., Any]


class NetType(enum.Enum):
    """The real lager's net types; `role` is its role string (`power-supply`, `eload`...)."""

    Analog = "Analog"
    Logic = "Logic"
    Waveform = "Waveform"
    Battery = "Battery"
    ELoad = "ELoad"
    PowerSupply = "PowerSupply"
    GPIO = "GPIO"
    ADC = "ADC"
    DAC = "DAC"
    Thermocouple = "Thermocouple"
    Rotation = "Rotation"
    Wifi = "Wifi"
    Actuate = "Actuate"
    PowerSupply2Q = "PowerSupply2Q"
    Debug = "Debug"
    Arm = "Arm"
    Usb = "Usb"
    WattMeter = "WattMeter"
    UART = "UART"
    Webcam = "Webcam"
    SPI = "SPI"
    I2C = "I2C"
    EnergyAnalyzer = "EnergyAnalyzer"
    Router = "Router"

    @property
    def role(self) -> str:
        return _ROLES.get(self.name, self.name.lower())

    @property
    def article(self) -> str:
        return "an" if self.value[0] in "AEIOU" else "a"

    @classmethod
    def parse(cls, value: NetType | str) -> NetType:
        """A member, its name (`PowerSupply`) or its role string (`power-supply`)."""
        if isinstance(value, NetType):
            return value
        text = str(value)
        for member in cls:
            if text in (member.name, member.role):
                return member
        raise NetError(f"unknown net type {value!r}; use a NetType member such as "
                       "NetType.PowerSupply")

    @classmethod
    def from_role(cls, role: str) -> NetType:
        return cls.parse(role)


_ROLES = {"PowerSupply": "power-supply", "PowerSupply2Q": "power-supply-2q",
          "WattMeter": "watt-meter", "EnergyAnalyzer": "energy-analyzer"}


def use_bench(path: str | os.PathLike[str]) -> dict[str, NetSpec]:
    """This process's bench, given explicitly (the agent's own instrument commands); a script
    finds its bench through LAGER_BENCH_CONFIG, which the agent sets."""
    global _bench, _bench_seen
    location = os.fspath(path)
    specs = load_bench(location)
    use_bench_location(location)
    with _bench_lock:
        _bench = specs
        _bench_seen = (location, saved_nets.signature(saved_nets.path_for(location)))
    return specs


def bench() -> dict[str, NetSpec]:
    """The bench's nets; read again when the saved nets file changes (another run, or the
    agent's process, sees a net a script saved at its next Net.get)."""
    global _bench, _bench_seen
    with _bench_lock:
        location = bench_location()
        seen = (location, saved_nets.signature(saved_nets.path_for(location)))
        if _bench is None or seen != _bench_seen:
            _bench, _bench_seen = load_bench(location), seen
        return _bench


class Net:
    """Base of every net: a claim on its instrument until close() (or the process ends)."""

    def __init__(self, spec: NetSpec, driver: Driver) -> None:
        self.spec = spec
        self.name = spec.name
        self.type = NetType.parse(spec.kind)
        self.channel = spec.channel
        self._driver = driver
        self._closed = False
        self._teardown: Hook | None = None

    def _own_channel(self, channel: int | None) -> None:
        """The real lager's device methods take a channel; a net here is one channel, so
        only its own (or none) is accepted."""
        if channel is not None and channel != (self.channel or 1):
            raise NetError(f"{self.name}: channel {channel!r} is not this net's (it is channel "
                           f"{self.channel or 1})")

    @staticmethod
    def get(name: str, type: NetType | str | None = None, *,  # `type`: the real API's name
            setup_function: Hook | None = None, teardown_function: Hook | None = None) -> Any:
        """Open the net `name`; with `type`, it must be that kind. `setup_function` runs on the
        net once it is open; `teardown_function` when it is closed, or at the process's exit."""
        from . import kinds
        from .session import open_session

        wanted = NetType.parse(type) if type is not None else None
        if wanted is not None and kinds.by_type(wanted.name) is None:
            served = ", ".join(k.net_type for k in kinds.KINDS)
            raise NoSuchNetType(f"this box has no {wanted.name} nets, so no {name!r} "
                                f"(it has {served} nets)")
        specs = bench()
        spec = specs.get(name)
        if spec is None:
            why = saved_nets.why_not(name, bench_location())
            raise UnknownNet(why or f"no net {name!r} on this bench; nets: "
                             f"{', '.join(sorted(specs))}")
        found = NetType.parse(spec.kind)
        if wanted is not None and wanted is not found:
            raise WrongNetType(f"{name} is {found.article} {found.value} net, "
                               f"not {wanted.article} {wanted.value}")
        kind = kinds.by_type(found.name)
        driver_cls = kind.driver_class(spec.instrument.driver) if kind else None
        if kind is None or driver_cls is None:
            raise NetError(f"{name}: driver {spec.instrument.driver!r} cannot serve "
                           f"{found.article} {found.value} net")
        session = open_session(spec.instrument, name)
        net: Net = kind.net_class(spec, driver_cls(session, spec.channel, name))
        if teardown_function is not None:
            net._teardown = teardown_function
            _at_exit[id(net)] = net
        if setup_function is not None:
            try:
                _call_hook(setup_function, net)
            except BaseException:
                net.close()
                raise
        return net

    # The real lager's "Manage Net Configuration" (lager/bench/local_nets.py).
    @staticmethod
    def list_saved() -> list[dict[str, Any]]:
        """The box's nets as the real lager lists them: name, role, instrument, channel,
        address (and `type`, and `source`: `bench-file` or `saved`)."""
        return local_nets.local_nets()

    @staticmethod
    def get_local_nets() -> list[dict[str, Any]]:
        return local_nets.local_nets()

    @staticmethod
    def list_all_from_env() -> list[dict[str, Any]]:
        return local_nets.list_all_from_env()

    @staticmethod
    def save_local_net(data: dict[str, Any]) -> None:
        """Save a net (name, role, instrument, channel, address) on the box for every run."""
        local_nets.save_local_net(data)

    @staticmethod
    def save_local_nets(nets: list[dict[str, Any]]) -> None:
        local_nets.save_local_nets(nets)

    @staticmethod
    def delete_local_net(name: str, role: str | None = None) -> bool:
        return local_nets.delete_local_net(name, role)

    @staticmethod
    def delete_all_local_nets() -> bool:
        return local_nets.delete_all_local_nets()

    @staticmethod
    def rename_local_net(old_name: str, new_name: str) -> bool:
        return local_nets.rename_local_net(old_name, new_name)

    @staticmethod
    def filter_nets(all_nets: list[dict[str, Any]], name: str,
                    role: str | None = None) -> list[dict[str, Any]]:
        return local_nets.filter_nets(all_nets, name, role)

    def enable(self) -> None:
        """A simple net (ADC) has nothing to switch on; the kinds with an output override."""

    def disable(self, teardown: bool = True) -> None:
        """A simple net has nothing to switch off (the teardown function runs at close)."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _at_exit.pop(id(self), None)
        try:
            if self._teardown is not None:
                _call_hook(self._teardown, self)
        finally:
            from .session import close_session

            close_session(self.spec.instrument, self.name)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{self.type.value} net {self.name} on {self.spec.instrument.name}>"


def _call_hook(hook: Hook, net: Net) -> None:
    """The real lager calls hooks as f(net, device); one that takes only the net gets that."""
    try:
        params = list(inspect.signature(hook).parameters.values())
    except (TypeError, ValueError):  # a builtin or C function: give it the net
        hook(net)
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) >= 2:
        hook(net, net._driver)
    elif positional:
        hook(net)
    else:
        hook()


_at_exit: dict[int, Net] = {}


@atexit.register
def _teardown_at_exit() -> None:
    """Nets the script never closed: run their teardown functions as the process ends."""
    for net in list(_at_exit.values()):
        try:
            net.close()
        except Exception as exc:  # noqa: BLE001 - at exit there is no caller to raise to
            sys.stderr.write(f"lager: teardown of {net.name} failed: "
                             f"{type(exc).__name__}: {exc}\n")


def in_range(net: str, what: str, value: float, low: float, high: float | None,
             unit: str) -> float:
    """A value a script gave, refused in one line when it is out of range or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise NetError(f"{net}: {what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise NetError(f"{net}: {what} {value!r} is not a finite number")
    if not (number >= low and (high is None or number <= high)):
        limit = f"{low:g} to {high:g}" if high is not None else f"at least {low:g}"
        raise NetError(f"{net}: {what} {number:g} {unit} is out of range ({limit} {unit})")
    return number


def say(text: str) -> None:
    """What the real lager's get-or-set methods print when they read: one line on stdout."""
    print(text, flush=True)
