"""SCPI-1999 / IEEE 488.2 parsing: program messages, headers with optional nodes, parameters.

A command is declared the way the manuals write it, e.g.
`[SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]`: a node in brackets is optional, the upper
case letters are the short form, and `#` marks a node that takes a numeric suffix (`SOUR2`).
Input is matched case-insensitively in long or short form, so `:MEASure:VOLTage?`, `:MEAS:VOLT?`
and `meas:volt?` find the same command.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

STANDARD_ERRORS: dict[int, str] = {
    -100: "Command error", -101: "Invalid character", -102: "Syntax error",
    -103: "Invalid separator", -104: "Data type error", -108: "Parameter not allowed",
    -109: "Missing parameter", -112: "Program mnemonic too long", -113: "Undefined header",
    -114: "Header suffix out of range", -121: "Invalid character in number",
    -123: "Exponent too large", -131: "Invalid suffix", -138: "Suffix not allowed",
    -141: "Invalid character data", -151: "Invalid string data", -200: "Execution error",
    -221: "Settings conflict", -222: "Data out of range", -224: "Illegal parameter value",
    -230: "Data corrupt or stale", -300: "Device-specific error", -350: "Queue overflow",
    -363: "Input buffer overrun",
    -410: "Query INTERRUPTED", -420: "Query UNTERMINATED",
}


class ScpiError(Exception):
    """One entry for the instrument's error/event queue."""

    def __init__(self, code: int, info: str = "", text: str | None = None) -> None:
        self.code = code
        base = text if text is not None else STANDARD_ERRORS.get(code, "Device-specific error")
        # SCPI-1999 21.8: device-dependent detail follows the standard text after a ';'.
        self.text = f"{base}; {info}" if info else base
        super().__init__(f"{code},{self.text}")


# ---------------------------------------------------------------- program messages

def _split_outside(text: str, sep: str) -> tuple[list[str], str, int]:
    """Split on sep outside quotes and parentheses; also the open quote and depth at the end."""
    parts, start, depth, quote = [], 0, 0, ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth <= 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts, quote, depth


def split_units(message: str) -> list[str]:
    """Split a program message on ';' outside quotes and channel-list parentheses."""
    if '"' not in message and "'" not in message and "(" not in message:
        return message.split(";")
    return _split_outside(message, ";")[0]


def split_params(text: str) -> list[str]:
    """Split a parameter list on ',' outside quotes and parentheses."""
    if not text:
        return []
    if '"' not in text and "'" not in text and "(" not in text:
        return [p.strip() for p in text.split(",")]
    params, quote, depth = _split_outside(text, ",")
    if quote:
        raise ScpiError(-151)
    if depth:
        raise ScpiError(-102, "unbalanced parentheses")
    return [p.strip() for p in params]


_HEADER = re.compile(r":?[A-Za-z][A-Za-z0-9_]*(?::[A-Za-z][A-Za-z0-9_]*)*\??")
_COMMON = re.compile(r"\*[A-Za-z]+\??")
_NODE = re.compile(r"([A-Z][A-Z_]*?)(\d*)")


@dataclass(frozen=True)
class Unit:
    """One program message unit: `header params`."""

    header: str  # upper case, without the leading ':' and the trailing '?'
    query: bool
    common: bool
    absolute: bool
    params: str


def parse_unit(raw: str) -> Unit | None:
    """None for an empty unit (a trailing ';' or a blank line); ScpiError for bad syntax."""
    text = raw.strip()
    if not text:
        return None
    cut = 0
    while cut < len(text) and not text[cut].isspace():
        cut += 1
    header, params = text[:cut], text[cut:].strip()
    if header.startswith("*"):
        if not _COMMON.fullmatch(header):
            raise ScpiError(-113 if header[1:2].isalpha() else -102)
        common = True
    elif _HEADER.fullmatch(header):
        common = False
    else:
        raise ScpiError(-102 if not header[:1].isalpha() and header[:1] != ":" else -113)
    query = header.endswith("?")
    name = header[:-1] if query else header
    absolute = name.startswith(":")
    return Unit(name.lstrip(":*").upper(), query, common, absolute, params)


# ---------------------------------------------------------------- headers and commands

@dataclass(frozen=True)
class Node:
    short: str
    long: str
    optional: bool
    suffix: bool

    def accepts(self, mnemonic: str) -> bool:
        return mnemonic == self.short or mnemonic == self.long


def mnemonic_forms(word: str) -> tuple[str, str]:
    """`VOLTage` -> ('VOLT', 'VOLTAGE'): the short form is the upper-case letters."""
    short = "".join(c for c in word if not c.islower())
    return short, word.upper()


def compile_pattern(pattern: str) -> tuple[Node, ...]:
    nodes = []
    for match in re.finditer(r"(\[)?:?([A-Za-z]+)(#)?(\])?", pattern):
        short, long = mnemonic_forms(match.group(2))
        nodes.append(Node(short, long, bool(match.group(1)), bool(match.group(3))))
    return tuple(nodes)


Handler = Callable[["Params", tuple[int | None, ...]], "str | None"]


@dataclass
class Command:
    pattern: str
    nodes: tuple[Node, ...]
    setter: Handler | None
    getter: Handler | None


def _match(nodes: Sequence[Node], given: Sequence[tuple[str, str]], i: int, j: int,
           suffixes: list[int | None]) -> list[int | None] | None:
    if i == len(nodes):
        return suffixes if j == len(given) else None
    node = nodes[i]
    if j < len(given):
        mnemonic, digits = given[j]
        if node.accepts(mnemonic) and (node.suffix or not digits):
            found = _match(nodes, given, i + 1, j + 1,
                           [*suffixes, int(digits)] if node.suffix and digits else
                           [*suffixes, None] if node.suffix else suffixes)
            if found is not None:
                return found
    if node.optional:
        return _match(nodes, given, i + 1, j, [*suffixes, None] if node.suffix else suffixes)
    return None


class CommandTable:
    """The instrument's command tree, with a cache of the headers it has seen."""

    CACHE_LIMIT = 2048

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self._cache: dict[str, tuple[Command, tuple[int | None, ...]] | None] = {}

    def add(self, pattern: str, set: Handler | None = None,
            query: Handler | None = None) -> None:
        self.commands.append(Command(pattern, compile_pattern(pattern), set, query))
        self._cache.clear()

    def find(self, header: str) -> tuple[Command, tuple[int | None, ...]] | None:
        try:
            return self._cache[header]
        except KeyError:
            pass
        given: list[tuple[str, str]] = []
        for part in header.split(":"):
            node = _NODE.fullmatch(part)
            if node is None:
                given = []
                break
            given.append((node.group(1), node.group(2)))
        found = None
        for command in self.commands if given else ():
            suffixes = _match(command.nodes, given, 0, 0, [])
            if suffixes is not None:
                found = (command, tuple(suffixes))
                break
        if len(self._cache) >= self.CACHE_LIMIT:  # garbage must not grow us without bound
            self._cache.clear()
        self._cache[header] = found
        return found


# ---------------------------------------------------------------- parameters

_NUMBER = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z%]*)")
_NONDECIMAL = {"#H": (16, "0123456789ABCDEF"), "#B": (2, "01"), "#Q": (8, "01234567")}
_PREFIXES = {"": 1.0, "M": 1e-3, "U": 1e-6, "N": 1e-9, "K": 1e3}
_CHANNELS = re.compile(r"\(@\s*([0-9:,\s]*)\)")


@dataclass(frozen=True)
class Limits:
    """A numeric parameter's range and the values MIN, MAX and DEF stand for."""

    low: float
    high: float
    default: float
    unit: str = ""


def is_char_data(token: str) -> bool:
    return bool(token) and token[0].isalpha() and token.replace("_", "").isalnum()


@dataclass
class Params:
    tokens: list[str]
    used: int = field(default=0)

    @classmethod
    def parse(cls, text: str) -> Params:
        return cls(split_params(text))

    def __len__(self) -> int:
        return len(self.tokens)

    def expect(self, low: int, high: int | None = None) -> None:
        high = low if high is None else high
        if len(self.tokens) < low or any(not t for t in self.tokens[:low]):
            raise ScpiError(-109)
        if len(self.tokens) > high:
            raise ScpiError(-108)

    def has(self, i: int) -> bool:
        return i < len(self.tokens) and bool(self.tokens[i])

    def raw(self, i: int) -> str:
        if not self.has(i):
            raise ScpiError(-109)
        return self.tokens[i]

    def number(self, i: int, limits: Limits | None = None) -> float:
        token = self.raw(i)
        word = token.upper()
        if limits is not None and word in ("MIN", "MINIMUM"):
            return limits.low
        if limits is not None and word in ("MAX", "MAXIMUM"):
            return limits.high
        if limits is not None and word in ("DEF", "DEFAULT"):
            return limits.default
        value = parse_number(token, limits.unit if limits else "")
        if limits is not None and not (limits.low <= value <= limits.high):
            raise ScpiError(-222, f"{value:g} not in {limits.low:g} to {limits.high:g}")
        return value

    def integer(self, i: int, limits: Limits | None = None) -> int:
        return round(self.number(i, limits))

    def boolean(self, i: int) -> bool:
        word = self.raw(i).upper()
        if word == "ON":
            return True
        if word == "OFF":
            return False
        if is_char_data(word):
            raise ScpiError(-224, f"{word} is not ON, OFF, 1 or 0")
        return round(parse_number(word, "")) != 0  # SCPI-1999 7.3: rounded, then 0 or not

    def choice(self, i: int, words: Sequence[str]) -> str:
        """One of the manual's mnemonics (short or long form); returns the long form."""
        token = self.raw(i)
        word = token.upper()
        for option in words:
            short, long = mnemonic_forms(option)
            if word in (short, long):
                return long
        if token[0] in "\"'":
            raise ScpiError(-104, "string data where a mnemonic is expected")
        if not is_char_data(word):
            raise ScpiError(-104 if _NUMBER.fullmatch(token) else -141)
        raise ScpiError(-224, f"{word} is not one of {', '.join(words)}")

    def string(self, i: int) -> str:
        token = self.raw(i)
        if token[0] in "\"'":
            if len(token) < 2 or token[-1] != token[0]:
                raise ScpiError(-151)
            return token[1:-1].replace(token[0] * 2, token[0])
        if is_char_data(token.replace(":", "")):
            return token  # instruments take an unquoted mnemonic here too
        raise ScpiError(-104, "expected a quoted string")

    def channels(self, i: int) -> list[int]:
        token = self.raw(i)
        match = _CHANNELS.fullmatch(token)
        if match is None:
            raise ScpiError(-104, "expected a channel list such as (@101:103)")
        result: list[int] = []
        for item in filter(None, (s.strip() for s in match.group(1).split(","))):
            ends = [e.strip() for e in item.split(":")]
            if len(ends) > 2 or not all(e.isdigit() for e in ends):
                raise ScpiError(-224, f"bad channel list entry {item!r}")
            first, last = int(ends[0]), int(ends[-1])
            step = 1 if last >= first else -1
            if abs(last - first) > 1000:
                raise ScpiError(-222, f"channel range {item} is too long")
            result.extend(range(first, last + step, step))
        if not result:
            raise ScpiError(-224, "empty channel list")
        return result


def parse_number(token: str, unit: str) -> float:
    head = token[:2].upper()
    if head in _NONDECIMAL:
        base, digits = _NONDECIMAL[head]
        body = token[2:].upper()
        if not body or any(c not in digits for c in body):
            raise ScpiError(-121)
        try:
            return float(int(body, base))
        except OverflowError:
            raise ScpiError(-123) from None
    match = _NUMBER.fullmatch(token)
    if match is None:
        if is_char_data(token.upper()):
            raise ScpiError(-224, f"{token.upper()} is not a number")
        if token[:1] in "\"'":
            raise ScpiError(-104, "string data where a number is expected")
        raise ScpiError(-121)
    try:
        value = float(match.group(1))
    except OverflowError:
        raise ScpiError(-123) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ScpiError(-123)
    suffix = match.group(2).upper()
    if suffix:
        if not unit:
            raise ScpiError(-138)
        if not suffix.endswith(unit) or suffix[: -len(unit)] not in _PREFIXES:
            raise ScpiError(-131, f"{suffix} is not a unit of {unit}")
        value *= _PREFIXES[suffix[: -len(unit)]]
    return value


def fmt(template: str, value: Any) -> str:
    """Format with a pyvisa-sim getter template such as '{:.3f}'."""
    return template.format(value)
