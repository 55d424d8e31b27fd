"""The C monitor checks each link message field by field, as lager/protocol/link.py types it.

C cannot import the message classes, so box_agent/monitor/*.c write each message's fields a
second time, as `struct field_spec` tables (key, JSON type bits, required). This test reads
those tables from the C source and holds each to the message class it copies: a field added,
dropped, retyped or made optional on one side only fails here, in the unit tier, instead of
as a message one monitor takes and the other refuses.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from box_agent.monitor import loop
from lager.protocol import link
from lager.protocol.codec import Message, message_fields

SOURCES = Path(loop.__file__).parent

def _json_types() -> dict[str, int]:
    """monitor.h's `enum json_type` (J_NULL = 1, J_STR = 2...): the bits the tables use."""
    enum = re.search(r"enum json_type \{(.*?)\}", (SOURCES / "monitor.h").read_text(), re.S)
    assert enum is not None, "monitor.h has no enum json_type"
    return {name: int(value) for name, value in re.findall(r"(J_\w+)\s*=\s*(\d+)", enum[1])}


_BITS = _json_types()
_TABLE = re.compile(r"static const struct field_spec (\w+)\[\] = \{(.*?)\};", re.S)
_ENTRY = re.compile(r'\{"(\w+)",\s*([A-Z_| ]+?),\s*([01])\}')
# What each annotation (as written, under `from __future__ import annotations`) lets through.
_TYPES = {"int": _BITS["J_INT"], "str": _BITS["J_STR"], "float": _BITS["J_NUM"],
          "bool": _BITS["J_BOOL"], "dict[str, Any]": _BITS["J_OBJ"]}

# Each table the C monitor checks a message with, and the message it copies.
COPIES: dict[str, type[Message]] = {
    "PAUSE_FIELDS": link.PauseMsg, "RESUMED_FIELDS": link.ResumedMsg,
    "RESUME_FIELDS": link.ResumeMsg, "CONSOLE_FIELDS": link.ConsoleMsg,
    "PLACED_FIELDS": link.BannerPlaced, "SIGNAL_FIELDS": link.SignalScript,
    "WINDOW_FIELDS": link.Window, "TO_SCRIPT_FIELDS": link.ToScript,
}


def c_tables() -> dict[str, list[tuple[str, int, bool]]]:
    """Every field_spec table in the monitor's C source: (key, type bits, required)."""
    found: dict[str, list[tuple[str, int, bool]]] = {}
    for source in sorted(SOURCES.glob("*.c")):
        for name, body in _TABLE.findall(source.read_text()):
            found[name] = [(key, sum(_BITS[b.strip()] for b in bits.split("|")), flag == "1")
                           for key, bits, flag in _ENTRY.findall(body)]
    return found


def python_fields(cls: type[Message]) -> list[tuple[str, int, bool]]:
    fields = []
    for f in message_fields(cls):
        text = str(f.annotation)
        bits = 0
        for part in text.split(" | ") if not text.startswith("dict[") else [text]:
            bits |= _BITS["J_NULL"] if part == "None" else _TYPES[part]
        fields.append((f.name, bits, f.required))
    return fields


def test_every_table_is_known() -> None:
    """A new table is a new copy: name the message it copies in COPIES."""
    assert set(c_tables()) == set(COPIES)


@pytest.mark.parametrize("table", sorted(COPIES))
def test_the_c_table_is_the_message(table: str) -> None:
    assert c_tables()[table] == python_fields(COPIES[table])


def test_a_drift_would_be_seen() -> None:
    """The reading itself: a table with one field retyped differs from its message."""
    tables = c_tables()
    retyped = [(key, _BITS["J_STR"] if key == "seq" else bits, req)
               for key, bits, req in tables["PAUSE_FIELDS"]]
    assert retyped != python_fields(link.PauseMsg)
    assert len(tables["PAUSE_FIELDS"]) == len(message_fields(link.PauseMsg)) >= 9
