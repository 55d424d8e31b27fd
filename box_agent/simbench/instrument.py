"""An IEEE 488.2 instrument: error/event queue, status bytes, common commands, dispatch.

Every message unit either executes or queues an error, and only queries answer: an unknown or
refused query queues its error and sends nothing back, as a real instrument does.
"""
from __future__ import annotations

import functools
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .models import DeviceSpec
from .scpi import CommandTable, Handler, Limits, Params, ScpiError, parse_unit, split_units

if TYPE_CHECKING:
    from .physics import Bench

ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME, ESR_PON = 1, 4, 8, 16, 32, 128
STB_EAV, STB_QUES, STB_MAV, STB_ESB, STB_MSS, STB_OPER = 4, 8, 16, 32, 64, 128
Sfx = tuple[int | None, ...]
Where = Callable[[Params, Sfx], tuple[int | None, int]]


def answer(value: Callable[[], str]) -> Handler:
    """A query that takes no parameters and answers value()."""

    def getter(p: Params, _s: Sfx) -> str:
        p.expect(0)
        return value()

    return getter


def action(run: Callable[[], object] = lambda: None) -> Handler:
    """A command that takes no parameters."""

    def setter(p: Params, _s: Sfx) -> None:
        p.expect(0)
        run()

    return setter


def _esr_bit(code: int) -> int:
    if -199 <= code <= -100:
        return ESR_CME
    if -299 <= code <= -200:
        return ESR_EXE
    if -499 <= code <= -400:
        return ESR_QYE
    return ESR_DDE  # -3xx and the instrument's own positive codes


class Instrument:
    """Base of each simulated model; subclasses register their command set in `register()`."""

    #: the highest numeric header suffix (`SOURce2`, `ISUMmary2`) the instrument has
    suffix_max = 1

    def __init__(self, spec: DeviceSpec, bench: Bench) -> None:
        self.spec = spec
        self.name = spec.name
        self.bench = bench
        self.values: dict[tuple[str, int | None], Any] = {}
        self.errors: deque[ScpiError] = deque()
        self.esr = ESR_PON  # the power-on event, until *ESR? or *CLS reads it away
        self.ese = 0
        self.sre = 0
        self.status_enable: dict[str, int] = {}
        self.status_event: dict[str, int] = {}
        self.table = CommandTable()
        self._path = ""
        self.common: dict[str, Handler] = {}
        self._register_common()
        self._register_status()
        self.register()
        self.reset()

    # ------------------------------------------------------------ state from the YAML

    def get(self, name: str, channel: int | None = None) -> Any:
        return self.values[(name, channel)]

    def put(self, name: str, value: Any, channel: int | None = None) -> None:
        self.values[(name, channel)] = self.spec.prop(name, channel).check(value)

    def reply(self, name: str, channel: int | None = None, value: Any = None) -> str:
        spec = self.spec.prop(name, channel)
        return spec.reply.format(self.get(name, channel) if value is None else value)

    def reset(self) -> None:
        """*RST: every property back to the default the YAML gives it."""
        for key, spec in self.spec.props.items():
            self.values[key] = spec.default
        self.on_reset()

    def on_reset(self) -> None:
        """Model state beyond the YAML properties (trips, buffers) goes back to power-on."""

    # ------------------------------------------------------------ physics hooks

    def tick(self) -> None:
        """Bring time-dependent state (a discharging battery) up to now."""

    def settle(self) -> None:
        """Re-evaluate what follows from the state: CC/CV mode, protection trips."""

    def status_condition(self, register: str, index: int | None = None) -> int:
        """A status register's condition; `index` is an ISUMmary<n> suffix when given."""
        return 0

    def terminal_volts(self, sub: str | None) -> float:
        """The voltage at one of this instrument's output terminals (0 for a meter)."""
        return 0.0

    # ------------------------------------------------------------ error/event queue

    def push_error(self, error: ScpiError) -> None:
        self.esr |= _esr_bit(error.code)
        if len(self.errors) >= self.spec.queue_length:
            # SCPI-1999 21.8.1: the newest entry is replaced by "Queue overflow".
            self.errors[-1] = ScpiError(-350)
            return
        self.errors.append(error)

    def error_entry(self, error: ScpiError) -> str:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime()) + \
            f".{int(time.time() * 1000) % 1000:03d}"
        return self.spec.error_entry.format(code=error.code, text=error.text, time=stamp)

    def pop_error(self) -> str:
        return self.error_entry(self.errors.popleft()) if self.errors else self.spec.error_empty

    # ------------------------------------------------------------ dispatch

    def handle(self, message: str) -> str | None:
        """One program message (units split by ';'); the response message, or None."""
        self.tick()
        self._path = ""
        replies: list[str] = []
        for raw in split_units(message):
            try:
                unit = parse_unit(raw)
                if unit is None:
                    continue
                answer = self._execute(unit.header, unit.query, unit.common, unit.absolute,
                                       unit.params)
            except ScpiError as error:
                self.push_error(error)
                continue
            except (ArithmeticError, ValueError, LookupError, TypeError) as exc:
                # A bug in a model must not take the bench down or pass unseen: the message
                # is refused like any other, with the cause in the entry and on stderr.
                print(f"simbench: {self.name}: {raw.strip()[:80]!r}: {exc!r}", file=sys.stderr)
                self.push_error(ScpiError(-300, f"internal: {type(exc).__name__}"))
                continue
            if answer is not None:
                replies.append(answer)
        self.settle()
        self._latch_events()
        return ";".join(replies) if replies else None

    def _execute(self, header: str, query: bool, common: bool, absolute: bool,
                 params: str) -> str | None:
        if common:
            handler = self.common.get(header + ("?" if query else ""))
            if handler is None:
                raise ScpiError(-420 if query and header in self.common else -113)
            return handler(Params.parse(params), ())
        found = None
        if not absolute and self._path:  # IEEE 488.2 A.1.1: relative to the last path
            found = self.table.find(f"{self._path}:{header}")
            resolved = f"{self._path}:{header}"
        if found is None:
            found = self.table.find(header)
            resolved = header
        if found is None:
            raise ScpiError(-113)
        command, suffixes = found
        if not self.suffixes_ok(command.pattern, suffixes):
            raise ScpiError(-114)
        self._path = resolved.rsplit(":", 1)[0] if ":" in resolved else ""
        handler = command.getter if query else command.setter
        if handler is None:
            # A command-only header asked as a query has nothing to answer.
            raise ScpiError(-420 if query else -113)
        answer = handler(Params.parse(params), suffixes)
        if query and answer is None:
            raise ScpiError(-420)
        return answer if query else None

    def suffixes_ok(self, pattern: str, suffixes: Sfx) -> bool:
        """Each numeric suffix (`SOURce2`) names a channel: 1 to suffix_max."""
        return all(n is None or 1 <= n <= self.suffix_max for n in suffixes)

    # ------------------------------------------------------------ registration helpers

    def register(self) -> None:
        """Subclasses add their command set here."""

    def add(self, pattern: str, set: Handler | None = None,
            query: Handler | None = None) -> None:
        self.table.add(pattern, set, query)

    def add_prop(self, pattern: str, name: str, unit: str = "", where: Where | None = None,
                 on_set: Callable[[int | None], None] | None = None,
                 guard: Callable[[int | None, float], None] | None = None) -> None:
        """A numeric setting backed by a YAML property: set, query, and query MIN|MAX|DEF.

        `where` finds the channel (from a suffix, a `CH<n>` parameter or the selection) and
        the index of the value parameter after it.
        """

        def locate(p: Params, sfx: Sfx) -> tuple[int | None, int]:
            return where(p, sfx) if where else (None, 0)

        def setter(p: Params, sfx: Sfx) -> None:
            ch, i = locate(p, sfx)
            p.expect(i + 1)
            value = p.number(i, self.spec.prop(name, ch).limits(unit))
            if guard:
                guard(ch, value)
            self.put(name, value, ch)
            if on_set:
                on_set(ch)

        def getter(p: Params, sfx: Sfx) -> str:
            ch, i = locate(p, sfx)
            p.expect(i, i + 1)
            if not p.has(i):
                return self.reply(name, ch)
            spec = self.spec.prop(name, ch)
            bound = {"MIN": spec.low, "MINIMUM": spec.low, "MAX": spec.high,
                     "MAXIMUM": spec.high, "DEF": spec.default, "DEFAULT": spec.default}
            value = bound.get(p.raw(i).upper())
            if value is None:
                raise ScpiError(-224, f"{p.raw(i)} is not MIN, MAX or DEF")
            return self.reply(name, ch, spec.kind(value))

        self.add(pattern, setter, getter)

    def add_bool(self, pattern: str, name: str, where: Where | None = None) -> None:
        """An ON|OFF|1|0 setting backed by a YAML property (stored as 0/1 or "ON"/"OFF")."""

        def setter(p: Params, sfx: Sfx) -> None:
            ch, i = where(p, sfx) if where else (None, 0)
            p.expect(i + 1)
            on = p.boolean(i)
            words = self.spec.prop(name, ch).kind is str
            self.put(name, ("ON" if on else "OFF") if words else int(on), ch)

        def getter(p: Params, sfx: Sfx) -> str:
            ch, i = where(p, sfx) if where else (None, 0)
            p.expect(i)
            return self.reply(name, ch)

        self.add(pattern, setter, getter)

    # ------------------------------------------------------------ IEEE 488.2 and SCPI-1999

    def _register_common(self) -> None:
        def none(p: Params) -> None:
            p.expect(0)

        def idn(p: Params, _s: Sfx) -> str:
            none(p)
            return self.spec.dialogues.get("*IDN?", "SIMBENCH,UNKNOWN,0,0")

        def rst(p: Params, _s: Sfx) -> None:
            none(p)
            self.reset()

        def cls(p: Params, _s: Sfx) -> None:
            none(p)
            self.errors.clear()
            self.esr = 0
            self.status_event.clear()

        def esr(p: Params, _s: Sfx) -> str:
            none(p)
            value, self.esr = self.esr, 0
            return str(value)

        def opc(p: Params, _s: Sfx) -> None:
            none(p)
            self.esr |= ESR_OPC  # every operation here completes before the next message

        def register_pair(name: str, attr: str) -> None:
            def setter(p: Params, _s: Sfx) -> None:
                p.expect(1)
                setattr(self, attr, p.integer(0, _BYTE))

            def getter(p: Params, _s: Sfx) -> str:
                none(p)
                return str(getattr(self, attr))

            self.common[name] = setter
            self.common[name + "?"] = getter

        self.common.update({
            "IDN?": idn, "RST": rst, "CLS": cls, "ESR?": esr, "OPC": opc,
            "OPC?": answer(lambda: "1"), "WAI": action(), "TST?": answer(lambda: "0"),
            "STB?": answer(lambda: str(self.stb())), "TRG": action(),
        })
        register_pair("ESE", "ese")
        register_pair("SRE", "sre")
        for query, reply in self.spec.dialogues.items():
            header = query.rstrip("?").lstrip(":*").upper()
            if not query.endswith("?") or header in ("IDN",):
                continue
            fixed = answer(functools.partial(str, reply))
            if query.startswith("*"):
                self.common[header + "?"] = fixed
            else:  # a fixed reply the YAML gives, e.g. :SYST:LFR?
                self.add(header, query=fixed)

    def stb(self) -> int:
        value = STB_EAV if self.errors else 0
        if self.status_event.get("QUES", 0) & self.status_enable.get("QUES", 0):
            value |= STB_QUES
        if self.status_event.get("OPER", 0) & self.status_enable.get("OPER", 0):
            value |= STB_OPER
        if self.esr & self.ese:
            value |= STB_ESB
        if value & self.sre & ~STB_MSS:
            value |= STB_MSS
        return value

    def _latch_events(self) -> None:
        for register in ("QUES", "OPER", "QUES:INST:ISUM", "OPER:INST:ISUM", "MEAS:INST:ISUM"):
            condition = self.status_condition(register)
            if condition:
                self.status_event[register] = self.status_event.get(register, 0) | condition

    def _register_status(self) -> None:
        def no_params(p: Params) -> None:
            p.expect(0)

        def err_next(p: Params, _s: Sfx) -> str:
            no_params(p)
            return self.pop_error()

        def err_count(p: Params, _s: Sfx) -> str:
            no_params(p)
            return str(len(self.errors))

        def err_all(p: Params, _s: Sfx) -> str:
            no_params(p)
            entries = [self.pop_error() for _ in range(len(self.errors))]
            return ",".join(entries) or self.spec.error_empty

        def clear(p: Params, _s: Sfx) -> None:
            no_params(p)
            self.errors.clear()

        def preset(p: Params, _s: Sfx) -> None:
            no_params(p)
            self.status_enable.clear()

        self.add("SYSTem:ERRor[:NEXT]", query=err_next)
        self.add("SYSTem:ERRor:COUNt", query=err_count)
        self.add("SYSTem:ERRor:ALL", query=err_all)
        self.add("SYSTem:ERRor:CLEar", set=clear)
        self.add("SYSTem:CLEar", set=clear)
        self.add("SYSTem:VERSion", query=answer(lambda: "1999.0"))
        self.add("STATus:PRESet", set=preset)
        for register, pattern in (("QUES", "STATus:QUEStionable"), ("OPER", "STATus:OPERation"),
                                  ("QUES:INST:ISUM", "STATus:QUEStionable:INSTrument:ISUMmary#"),
                                  ("OPER:INST:ISUM", "STATus:OPERation:INSTrument:ISUMmary#"),
                                  ("MEAS:INST:ISUM", "STATus:MEASurement:INSTrument:ISUMmary#")):
            self._status_register(register, pattern)

    def _status_register(self, register: str, pattern: str) -> None:
        def condition(p: Params, sfx: Sfx) -> str:
            p.expect(0)
            return str(self.status_condition(register, sfx[0] if sfx else None))

        def event(p: Params, _s: Sfx) -> str:
            p.expect(0)
            return str(self.status_event.pop(register, 0))

        def enable_set(p: Params, _s: Sfx) -> None:
            p.expect(1)
            self.status_enable[register] = p.integer(0, _WORD)

        def enable_get(p: Params, _s: Sfx) -> str:
            p.expect(0)
            return str(self.status_enable.get(register, 0))

        self.add(f"{pattern}:CONDition", query=condition)
        self.add(f"{pattern}[:EVENt]", query=event)
        self.add(f"{pattern}:ENABle", set=enable_set, query=enable_get)


_BYTE = Limits(0, 255, 0)
_WORD = Limits(0, 65535, 0)
